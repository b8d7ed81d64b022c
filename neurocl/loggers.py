"""Loggers: how results reach people. They receive numbers; they compute nothing."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("neurocl")


def scalar_stats(stats: dict) -> dict:
    """The numbers of a stats dict, nested dicts flattened to dotted keys (lists and text left to results.json)."""
    out = {}
    for k, v in stats.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in scalar_stats(v).items()})
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            out[k] = v
    return out


@dataclass
class RunInfo:
    """What a logger knows of the run it reports on."""
    config: dict            # the resolved config
    output_dir: Path        # the run's directory: results.json and plots land here
    name: str               # e.g. "fashion_mnist-prototypes-seed0"
    group: str | None       # the sweep (multirun directory) this job belongs to; None for a single run
    job_type: str           # the memory's config name
    resume: dict | None     # what state_dict() returned in the checkpoint the run resumes from


class LoggerBase:
    """Every logger: called at the start, after each experience, with the summary, and at the end."""

    def start(self, run: RunInfo):
        pass

    def log_experience(self, t: int, row: np.ndarray, stats: dict, timing: dict):
        pass

    def log_summary(self, results: dict, output_dir: Path):
        pass

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this logger's record (kept in the checkpoint)."""
        return {}

    def close(self):
        pass


class Loggers(LoggerBase):
    """Several loggers at once (`logger=[console,wandb]`): each call goes to every one, in order."""

    def __init__(self, loggers: dict[str, LoggerBase]):
        self.loggers = loggers

    def start(self, run: RunInfo):
        for name, logger in self.loggers.items():
            logger.start(RunInfo(**{**vars(run), "resume": (run.resume or {}).get(name)}))

    def log_experience(self, t, row, stats, timing):
        for logger in self.loggers.values():
            logger.log_experience(t, row, stats, timing)

    def log_summary(self, results, output_dir):
        for logger in self.loggers.values():
            logger.log_summary(results, output_dir)

    def state_dict(self) -> dict:
        return {name: logger.state_dict() for name, logger in self.loggers.items()}

    def close(self):
        for logger in self.loggers.values():
            logger.close()


class ConsoleLogger(LoggerBase):
    def log_experience(self, t: int, row: np.ndarray, stats: dict, timing: dict):
        accs = " ".join(f"{a:.3f}" for a in row)
        log.info("after experience %d: R[%d] = [%s]  mean seen = %.4f  observe %.1fs  eval %.1fs  %s",
                 t, t, accs, row[: t + 1].mean(), timing["observe_s"], timing["eval_s"],
                 {k: round(v, 4) if isinstance(v, float) else v for k, v in scalar_stats(stats).items()})

    def log_summary(self, results: dict, output_dir: Path):
        lines = ["", "accuracy matrix R[t, k] (row: trained through t; column: tested on k)"]
        R = np.asarray(results["R"])
        lines.append("      " + " ".join(f"{k:>6d}" for k in range(R.shape[1])))
        lines += [f"  {t:>3d} " + " ".join(f"{a:6.3f}" for a in row) for t, row in enumerate(R)]
        lines.append("")
        width = max(len(k) for k in results["metrics"])
        lines += [f"  {k:<{width}}  {v:8.4f}" for k, v in results["metrics"].items()]
        stats = results["memory_stats"]
        lines.append(f"  {'memory_MB':<{width}}  {stats['memory_bytes'] / 2**20:8.3f}")
        for k, v in scalar_stats(stats).items():
            if k != "memory_bytes":
                lines.append(f"  {k:<{width}}  {v:>8.4g}")
        lines.append(f"  {'wall_s':<{width}}  {results['wall_s']:8.1f}")
        print("\n".join(lines))
