"""Errors that name the problem and the fix, for users rather than developers."""


class NeuroclError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(NeuroclError, ValueError):
    """A configuration value is invalid."""

    def __init__(self, key: str, value, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"invalid {key}={value!r}: {problem}. Fix: {fix}")

    def __reduce__(self):
        # Exceptions pickle as cls(*args), i.e. with the message alone; a job run in another process
        # (submitit) must bring back this error, not a TypeError about missing arguments.
        return type(self), (self.key, self.value, self.problem, self.fix)


class RefusedRunDirectory(NeuroclError):
    """A run was refused its directory (in use, or holding another run): nothing there, its log included, is its own."""


class RefusedResume(RefusedRunDirectory, ConfigError):
    """The directory holds another run, or a checkpoint of another config."""


class DataError(NeuroclError):
    """Data files are missing, malformed or contain unusable values."""


def check_finite(tensor, what: str):
    """Raise DataError if `tensor` holds NaN or inf, saying where and how many."""
    import torch

    tensor = torch.as_tensor(tensor)
    if tensor.is_floating_point() and torch.isfinite(tensor.sum()):  # one pass; NaN and inf reach the sum
        return  # (a sum that overflows falls through to the full check)
    bad = ~torch.isfinite(tensor)
    if bad.any():
        rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten()
        raise DataError(
            f"{what} contain NaN or inf in {len(rows)} of {bad.shape[0]} rows "
            f"(first rows: {rows[:5].tolist()}). Fix: clean or drop those samples; "
            "if they come from an encoder, check its input scaling and weights."
        )
