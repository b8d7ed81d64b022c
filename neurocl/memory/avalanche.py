"""Avalanche strategies as neurocl memories, on the same features and the very same experiences.

The strategy learns each experience of the stream's Avalanche benchmark with
its own training loop (its epochs, mini-batches, plugins and losses); the
driver calls `train_experience` instead of feeding batches to `observe`.
Predictions run the strategy's eval-time forward: the network's outputs, or
what the strategy makes of them (iCaRL's nearest exemplar mean, CoPE's
nearest prototype, StreamingLDA's discriminant), so that R equals what
Avalanche's own `eval` and accuracy-matrix metric would report.
"""

import inspect
import warnings

import torch
from torch import nn

from neurocl.errors import ConfigError, NeuroclError
from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores
from neurocl.runtime import resolve_device


def mlp(dim: int, hidden: int, outputs: int) -> nn.Module:
    """A linear head (hidden=0) or one hidden ReLU layer."""
    if hidden == 0:
        return nn.Linear(dim, outputs)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


# Plugins with no state, or whose state plugin_state() saves; any other plugin makes a strategy not resumable.
RESUMABLE_PLUGINS = ("EvaluationPlugin", "PeriodicEval", "Clock", "EWCPlugin", "LwFPlugin", "GEMPlugin",
                     "ReplayPlugin")
NOT_RESUMABLE_STRATEGIES = ("ICaRL",)  # its exemplar means and herding state are not saved


def sample_rows(dataset) -> list[int]:
    """The stream rows (`sample_idx`) of an Avalanche dataset, in its order."""
    return [int(i) for i in dataset.sample_idx]


def rows_dataset(benchmark, rows: list[int]):
    """The benchmark's training samples of `rows`, in that order (how stored samples come back after a resume)."""
    from avalanche.benchmarks.utils import concat_datasets

    full = concat_datasets([e.dataset for e in benchmark.train_stream])
    position = {row: i for i, row in enumerate(sample_rows(full))}
    return full.subset([position[row] for row in rows])


def plugin_state(plugin) -> dict:
    name = type(plugin).__name__
    if name == "EWCPlugin":
        return {kind: {exp: {n: p.data for n, p in params.items()} for exp, params in getattr(plugin, kind).items()}
                for kind in ("saved_params", "importances")}
    if name == "LwFPlugin":
        lwf = plugin.lwf
        return {"prev_model": None if lwf.prev_model is None else lwf.prev_model.state_dict(),
                "expcount": lwf.expcount, "prev_classes_by_task": {t: set(c) for t, c in lwf.prev_classes_by_task.items()}}
    if name == "GEMPlugin":
        return {"memory_x": dict(plugin.memory_x), "memory_y": dict(plugin.memory_y),
                "memory_tid": dict(plugin.memory_tid)}
    if name == "ReplayPlugin":  # an experience-balanced buffer: per experience, its rows and reservoir weights
        policy = plugin.storage_policy
        return {"num_exps": policy._num_exps, "groups": {
            k: {"max_size": g.max_size, "weights": g._buffer_weights.clone(), "rows": sample_rows(g.buffer)}
            for k, g in policy.buffer_groups.items()}}
    return {}


def load_plugin_state(plugin, state: dict, model):
    import copy
    from collections import defaultdict

    from avalanche.training.utils import ParamData

    name = type(plugin).__name__
    if name == "EWCPlugin":
        for kind in ("saved_params", "importances"):
            setattr(plugin, kind, defaultdict(dict, {exp: {n: ParamData(n, init_tensor=t) for n, t in params.items()}
                                                     for exp, params in state[kind].items()}))
    elif name == "LwFPlugin":
        lwf = plugin.lwf
        lwf.prev_model = None
        if state["prev_model"] is not None:
            lwf.prev_model = copy.deepcopy(model)
            lwf.prev_model.load_state_dict(state["prev_model"])
        lwf.expcount = state["expcount"]
        lwf.prev_classes_by_task = defaultdict(set, state["prev_classes_by_task"])
    elif name == "GEMPlugin":
        plugin.memory_x, plugin.memory_y, plugin.memory_tid = (dict(state[k]) for k in ("memory_x", "memory_y",
                                                                                         "memory_tid"))


def restore_samples(plugin, state: dict, benchmark):
    """Stored samples come back from the benchmark by row, once the next experience brings it."""
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

    if type(plugin).__name__ == "ReplayPlugin":
        policy = plugin.storage_policy
        policy._num_exps = state["num_exps"]
        policy.buffer_groups = {}
        for k, group in state["groups"].items():
            buffer = ReservoirSamplingBuffer(group["max_size"])
            buffer.buffer, buffer._buffer_weights = rows_dataset(benchmark, group["rows"]), group["weights"]
            policy.buffer_groups[k] = buffer


def quiet_evaluator():
    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():  # "no loggers": on purpose, neurocl logs the results itself
        warnings.simplefilter("ignore", UserWarning)
        return EvaluationPlugin(loggers=[])


class AvalancheMemory(MemoryBase):
    """`strategy` is an Avalanche strategy class with its settings (a Hydra partial).

    `online_experience_size` splits each experience into a stream of
    experiences of that many samples, as online methods (CoPE) expect.
    The adapter supplies what depends on the run: the network (`hidden` units,
    `output_dim` outputs; null means one per class), or for iCaRL its feature
    extractor and classifier, or for StreamingLDA an identity backbone; the
    optimizer (a partial taking the parameters), the loss, the device and a
    silent evaluator.
    """

    def __init__(self, dim: int, num_classes: int, strategy, optimizer=None, hidden: int = 0,
                 output_dim: int | None = None, online_experience_size: int | None = None,
                 device: str = "cpu", evaluator=None):
        if not callable(strategy):
            raise ConfigError("memory.strategy", strategy, "must be an Avalanche strategy with _partial_: true",
                              "copy conf/memory/naive.yaml and change strategy._target_")
        if not isinstance(hidden, int) or hidden < 0:
            raise ConfigError("memory.hidden", hidden, "must be 0 (a linear head) or a positive width", "set memory.hidden=0")
        if online_experience_size is not None and (not isinstance(online_experience_size, int) or online_experience_size < 1):
            raise ConfigError("memory.online_experience_size", online_experience_size, "must be null or a positive integer",
                              "set memory.online_experience_size=10")
        self.dim, self.num_classes, self.device = dim, num_classes, resolve_device(device)
        self.online_experience_size = online_experience_size
        self.strategy_class = getattr(strategy, "func", strategy)
        accepted = inspect.signature(self.strategy_class.__init__).parameters
        self.model = mlp(dim, hidden, output_dim or num_classes)
        kwargs = {"device": self.device, "evaluator": evaluator or quiet_evaluator()}
        if "feature_extractor" in accepted:  # iCaRL: a trainable body and a classifier on it
            body = self.model[:-1] if hidden else nn.Identity()
            width = hidden or dim
            kwargs.update(feature_extractor=body, classifier=nn.Linear(width, num_classes))
            self.model = None
        if "slda_model" in accepted:
            kwargs.update(slda_model=nn.Identity(), input_size=dim, num_classes=num_classes,
                          criterion=nn.CrossEntropyLoss())
            self.model = None
        if "model" in accepted:
            kwargs["model"] = self.model
        if "criterion" in accepted and "criterion" not in kwargs:
            kwargs["criterion"] = nn.CrossEntropyLoss()
        if "n_classes" in accepted:
            kwargs["n_classes"] = num_classes
        if "optimizer" in accepted:
            if optimizer is None:
                raise ConfigError("memory.optimizer", None, f"{self.strategy_class.__name__} trains a network",
                                  "give an optimizer, e.g. memory.optimizer._target_=torch.optim.Adam")
            parameters = (self.model or nn.ModuleList([kwargs["feature_extractor"], kwargs["classifier"]])).parameters()
            kwargs["optimizer"] = optimizer(parameters)
        self.strategy = strategy(**kwargs)
        self.experiences_trained = 0
        self.pending_samples = self.saved_state = None  # after load_state_dict: restored at the next experience

    learns_whole_experiences = True

    def train_experience(self, experience) -> None:
        """Learn one experience of the stream's Avalanche benchmark with the strategy's own loop."""
        if self.pending_samples is not None:  # resumed: stored samples are rebuilt from this benchmark
            self._restore_samples(experience.benchmark)
        if self.online_experience_size is None:
            self.strategy.train(experience, num_workers=0)
        else:  # online methods (CoPE) see the experience as a stream of small experiences, one update each
            from avalanche.benchmarks.scenarios.online import split_online_stream

            for part in split_online_stream([experience], self.online_experience_size):
                self.strategy.train(part, num_workers=0)
        self.experiences_trained += 1

    def observe(self, features, labels, experience: int = 0, ids=None):
        raise NeuroclError(f"{self.strategy_class.__name__} learns whole Avalanche experiences, not loose batches. "
                           "Fix: drive it with neurocl.driver.run_stream, which calls train_experience.")

    @torch.no_grad()
    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        if not self.experiences_trained:  # an untrained memory answers nothing (iCaRL could not)
            return prediction_from_scores(torch.full((len(features), self.num_classes), float("-inf")))
        strategy = self.strategy
        strategy.model.eval()
        x = features.float().to(self.device)
        if hasattr(strategy, "fit") and hasattr(strategy, "Lambda"):  # StreamingLDA: discriminant on the features
            scores = strategy.predict(strategy.model(x))
        else:
            scores = strategy.model(x)
        for plugin in strategy.plugins:  # CoPE turns embeddings into its nearest-prototype answer at eval time
            if hasattr(plugin, "_get_nearest_neigbor_distr"):
                scores = plugin._get_nearest_neigbor_distr(scores)
        return prediction_from_scores(scores.float().cpu())

    SLDA_STATE = ("muK", "cK", "Sigma", "num_updates")

    @property
    def resumable(self) -> bool:
        """Strategies whose state is saved (tensors, or the stream rows of their stored samples) round-trip exactly;
        iCaRL and CoPE do not."""
        return all(type(p).__name__ in RESUMABLE_PLUGINS for p in self.strategy.plugins) \
            and type(self.strategy).__name__ not in NOT_RESUMABLE_STRATEGIES

    def state_dict(self) -> dict:
        """The network, the optimizer's state (momentum carries across experiences), the training clock,
        StreamingLDA's statistics, the regularisers' tensors (EWC, LwF, GEM) and the rows of stored samples
        (replay buffers, the cumulative dataset)."""
        s = self.strategy
        optimizer = getattr(s, "optimizer", None)
        cumulative = getattr(s, "dataset", None) if type(s).__name__ == "Cumulative" else None
        if self.pending_samples is not None:  # saved again before the next experience restored them
            return {**self.saved_state, "experiences_trained": self.experiences_trained}
        return {"model": s.model.state_dict(), "experiences_trained": self.experiences_trained,
                "slda": {name: getattr(s, name) for name in self.SLDA_STATE if hasattr(s, name)},
                "optimizer": optimizer.state_dict() if optimizer is not None and s.optimized_param_id else None,
                "clock": {k: v for k, v in vars(s.clock).items() if isinstance(v, int)},
                "plugins": [plugin_state(p) for p in s.plugins],
                "cumulative_rows": None if cumulative is None else sample_rows(cumulative)}

    def _restore_samples(self, benchmark):
        for plugin, plugin_saved in zip(self.strategy.plugins, self.pending_samples["plugins"]):
            restore_samples(plugin, plugin_saved, benchmark)
        if self.pending_samples["cumulative_rows"] is not None:
            self.strategy.dataset = rows_dataset(benchmark, self.pending_samples["cumulative_rows"])
        self.pending_samples = self.saved_state = None

    def load_state_dict(self, state: dict):
        from avalanche.models.dynamic_optimizers import update_optimizer

        s = self.strategy
        s.model.load_state_dict(state["model"])
        for name, value in state["slda"].items():
            setattr(s, name, value)
        if state["optimizer"] is not None:  # as after the strategy's first experience: parameters registered
            s.optimized_param_id = update_optimizer(s.optimizer, dict(s.model.named_parameters()), None,
                                                    reset_state=True)
            s.optimizer.load_state_dict(state["optimizer"])
        for key, value in state["clock"].items():
            setattr(s.clock, key, value)
        for plugin, plugin_saved in zip(s.plugins, state["plugins"]):
            load_plugin_state(plugin, plugin_saved, s.model)
        self.experiences_trained = state["experiences_trained"]
        self.pending_samples, self.saved_state = state, state

    def stats(self) -> dict:
        tensors = list(self.strategy.model.state_dict().values())
        for plugin in self.strategy.plugins:  # stored samples count as memory: replay/CoPE buffers, iCaRL/GEM exemplars
            buffer = getattr(getattr(plugin, "storage_policy", None), "buffer", None)
            if buffer is not None and len(buffer):
                tensors.append(torch.stack([buffer[i][0] for i in range(len(buffer))]))
            tensors += list(getattr(plugin, "x_memory", [])) + list(getattr(plugin, "memory_x", {}).values())
        for name in ("muK", "Sigma"):  # StreamingLDA's statistics
            if hasattr(self.strategy, name):
                tensors.append(getattr(self.strategy, name))
        return {"experiences_trained": self.experiences_trained,
                "memory_bytes": sum(t.nelement() * t.element_size() for t in tensors)}
