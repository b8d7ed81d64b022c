"""Loggers: how results reach people. They receive numbers; they compute nothing."""

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurocl.errors import ConfigError

log = logging.getLogger("neurocl")


def scalar_stats(stats: dict, sep: str = ".") -> dict:
    """The numbers of a stats dict, nested dicts flattened to `sep`-joined keys (lists and text left to results.json)."""
    out = {}
    for k, v in stats.items():
        if isinstance(v, dict):
            out.update({f"{k}{sep}{kk}": vv for kk, vv in scalar_stats(v, sep).items()})
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            out[k] = v.item() if isinstance(v, np.number) else v
    return out


def experience_scalars(t: int, row: np.ndarray, stats: dict, timing: dict) -> dict:
    """One experience as flat scalars, for loggers that plot curves: R[t, k] as R/k, the mean accuracy over the
    experiences seen so far, the memory's numeric statistics and the timings."""
    row = np.asarray(row, dtype=float)
    out = {"experience": t, "accuracy/seen_mean": float(row[: t + 1].mean())}
    out.update({f"R/{k}": float(a) for k, a in enumerate(row)})
    out.update({f"memory/{k}": v for k, v in scalar_stats(stats, "/").items()})
    out.update({f"timing/{k}": v for k, v in scalar_stats(timing, "/").items() if k != "experience"})
    return out


def summary_scalars(results: dict) -> dict:
    """The final numbers of a run: metrics, memory statistics, condition results, wall and encoding time."""
    out = dict(scalar_stats(results["metrics"], "/"))
    if "multi_label" in results:
        out.update({f"macro_f1/{k}": v for k, v in scalar_stats(results["multi_label"]["metrics_macro_f1"], "/").items()})
    out.update({f"memory/{k}": v for k, v in scalar_stats(results.get("memory_stats", {}), "/").items()})
    out.update({f"conditions/{k}": v for k, v in scalar_stats(results.get("conditions") or {}, "/").items()})
    out.update({k: results[k] for k in ("wall_s", "encode_s") if k in results})
    return out


def result_pngs(output_dir: Path) -> list[Path]:
    """The plots a run wrote into its directory (accuracy_matrix.png, the memory's raster or prototype map)."""
    return sorted(Path(output_dir).glob("*.png"))


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

    def log_anytime(self, samples: int, accuracy: float):
        """Online streams: the anytime accuracy after `samples` stream samples."""

    def log_summary(self, results: dict, output_dir: Path):
        pass

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this logger's record (kept in the checkpoint)."""
        return {}

    def close(self, error: BaseException | None = None):
        """The end of the run; `error`: the exception that ended it, if one did (W&B marks the run failed)."""


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

    def log_anytime(self, samples, accuracy):
        for logger in self.loggers.values():
            logger.log_anytime(samples, accuracy)

    def log_summary(self, results, output_dir):
        for logger in self.loggers.values():
            logger.log_summary(results, output_dir)

    def state_dict(self) -> dict:
        return {name: logger.state_dict() for name, logger in self.loggers.items()}

    def close(self, error: BaseException | None = None):
        for logger in self.loggers.values():
            logger.close(error)


class ConsoleLogger(LoggerBase):
    """One line per experience, the CL metrics at the end; the memory's internals only at DEBUG (and in
    results.json)."""

    def log_experience(self, t: int, row: np.ndarray, stats: dict, timing: dict):
        row = np.asarray(row, dtype=float)
        shown = f"  R[{t}] " + " ".join(f"{a:.3f}" for a in row[: t + 1]) if t < 10 else ""
        log.info("experience %d/%d: accuracy on the %d seen %.4f  (observe %.1f s, eval %.1f s)%s",
                 t + 1, len(row), t + 1, row[: t + 1].mean(), timing["observe_s"], timing["eval_s"], shown)
        log.debug("memory after experience %d: %s", t, scalar_stats(stats))

    def log_anytime(self, samples: int, accuracy: float):
        log.debug("anytime accuracy after %d samples: %.4f", samples, accuracy)

    def log_summary(self, results: dict, output_dir: Path):
        lines = ["", "accuracy matrix R[t, k] (row: trained through t; column: tested on k)"]
        R = np.asarray(results["R"])
        lines.append("      " + " ".join(f"{k:>6d}" for k in range(R.shape[1])))
        lines += [f"  {t:>3d} " + " ".join(f"{a:6.3f}" for a in row) for t, row in enumerate(R)]
        lines.append("")
        shown = {**results["metrics"], "memory_MB": results["memory_stats"]["memory_bytes"] / 2**20,
                 "wall_s": results["wall_s"]}
        width = max(len(k) for k in shown)
        lines += [f"  {k:<{width}}  {v:8.4f}" if k != "wall_s" else f"  {k:<{width}}  {v:8.1f}"
                  for k, v in shown.items()]
        print("\n".join(lines))
        log.debug("memory: %s", scalar_stats(results["memory_stats"]))


class WandbLogger(LoggerBase):
    """Weights & Biases: one W&B run per job, grouped by sweep, resumable from the checkpoint.

    mode: online | offline | disabled; None follows WANDB_MODE (or `wandb offline`), else online. Offline runs
    land in <dir>/wandb/offline-run-*/ and upload later with `wandb sync`. dir: None = the run's output directory.
    settings: extra wandb.Settings fields (e.g. {console: "off"}).
    """

    def __init__(self, project: str = "neurocl", entity: str | None = None, mode: str | None = None,
                 dir: str | None = None, tags=(), notes: str | None = None, settings: dict | None = None):
        import wandb  # only when this logger is chosen

        self.wandb = wandb
        self.project, self.entity, self.mode, self.dir = project, entity, mode, dir
        self.tags, self.notes, self.settings = list(tags or []), notes, dict(settings or {})
        self.run = None
        if self.mode not in (None, "online", "offline", "disabled"):
            raise ConfigError("logger.wandb.mode", mode, "is not a W&B mode", "use online, offline, disabled or null")
        if self.effective_mode() == "online" and not self.logged_in():
            # Checked here, when the logger is built before encoding, not after minutes of it.
            raise ConfigError("logger.wandb.mode", "online", "no W&B credentials are configured",
                              "run `wandb login` or set WANDB_API_KEY; or log offline (WANDB_MODE=offline or "
                              "logger.wandb.mode=offline) and upload later with `wandb sync <dir>/wandb/offline-run-*`")

    def effective_mode(self) -> str:
        """This logger's mode, else WANDB_MODE as it is now, else what `wandb offline` / `wandb online` saved.

        Read at every start: wandb keeps the settings it saw first in a process, a later WANDB_MODE included."""
        mode = self.mode or os.environ.get("WANDB_MODE") or self.wandb.setup().settings.mode
        return {"run": "online", "dryrun": "offline"}.get(mode, mode)

    def logged_in(self) -> bool:
        return self.wandb.login(verify=False, prompt=sys.stdin is not None and sys.stdin.isatty())

    def start(self, run: RunInfo):
        resume_id = (run.resume or {}).get("run_id")
        directory = Path(self.dir or run.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        # reinit="create_new": a new run even while another is active in this process (Hydra's basic launcher
        # runs a sweep's jobs one after the other in one process); each job finishes its own at close().
        self.run = self.wandb.init(
            project=self.project, entity=self.entity, mode=self.effective_mode(), dir=str(directory), name=run.name,
            group=run.group, job_type=run.job_type, tags=self.tags, notes=self.notes, config=run.config,
            reinit="create_new", id=resume_id, resume="allow" if resume_id else None,
            allow_val_change=bool(resume_id), settings=self.settings or None)
        log.info("W&B run %s (%s)%s", self.run.id, self.effective_mode(), ", resumed" if resume_id else "")

    def log_experience(self, t: int, row: np.ndarray, stats: dict, timing: dict):
        self.run.log(experience_scalars(t, row, stats, timing), step=t)

    def log_summary(self, results: dict, output_dir: Path):
        wandb = self.wandb
        media = {"R_matrix": self.matrix_table(results["R"])}
        if "multi_label" in results:
            media["R_macro_f1_matrix"] = self.matrix_table(results["multi_label"]["R_macro_f1"])
        if "anytime" in results:  # W&B's step is the experience; the curve has its own x axis, so it is a table
            curve = wandb.Table(columns=["samples", "anytime_accuracy"],
                                data=[[int(n), float(a)] for n, a in zip(results["anytime"]["samples"],
                                                                          results["anytime"]["accuracy"])])
            media["anytime_accuracy"] = wandb.plot.line(curve, "samples", "anytime_accuracy",
                                                        title="anytime accuracy")
        if results.get("conditions"):
            metrics = sorted({m for readouts in results["conditions"].values() for row in readouts.values() for m in row})
            media["conditions"] = wandb.Table(
                columns=["condition", "readout", *metrics],
                data=[[c, r, *(row.get(m) for m in metrics)]
                      for c, readouts in results["conditions"].items() for r, row in readouts.items()])
        # The heatmap of R (accuracy_matrix.png) and the memory's plots (spike raster, prototype map).
        media.update({f"plots/{p.stem}": wandb.Image(str(p), caption=p.stem) for p in result_pngs(output_dir)})
        self.run.log(media)  # no step: joins the last experience's row (or the next one of a resumed run)
        self.run.summary.update(summary_scalars(results))
        text = {k: v for k, v in results.get("memory_stats", {}).items() if isinstance(v, str)}
        self.run.summary.update({f"memory/{k}": v for k, v in text.items()})

    def matrix_table(self, R):
        R = np.asarray(R, dtype=float)
        return self.wandb.Table(columns=["trained_through", *(f"exp{k}" for k in range(R.shape[1]))],
                                data=[[t, *map(float, row)] for t, row in enumerate(R)])

    def state_dict(self) -> dict:
        return {"run_id": self.run.id} if self.run is not None else {}

    def close(self, error: BaseException | None = None):
        if self.run is not None:
            self.run.finish(exit_code=1 if error is not None else 0)
            self.run = None


class TensorBoardLogger(LoggerBase):
    """TensorBoard event files in <output_dir>/<subdir>: scalars per experience (step = experience), the run's
    plots as images and R as text at the end, and optionally the config as hparams against the final metrics."""

    def __init__(self, subdir: str = "tensorboard", hparams: bool = True):
        from torch.utils.tensorboard import SummaryWriter  # only when this logger is chosen

        self.SummaryWriter = SummaryWriter
        self.subdir, self.hparams = subdir, hparams
        self.writer, self.config, self.last = None, {}, None
        self.anytime, self.anytime_dir, self.last_anytime = None, None, None

    def start(self, run: RunInfo):
        resumed = (run.resume or {}).get("last_experience")
        # A resumed run drops what the killed one logged after its checkpoint, then continues the same files.
        self.writer = self.SummaryWriter(log_dir=str(Path(run.output_dir) / self.subdir),
                                         purge_step=None if resumed is None else resumed + 1)
        self.config, self.last = run.config, resumed
        # Online streams: the anytime curve, step = stream samples, in its own event files (a purge by experience
        # would drop it); a resumed run drops what followed its checkpoint there too.
        self.anytime_dir = Path(run.output_dir) / self.subdir / "anytime"
        self.last_anytime = (run.resume or {}).get("last_anytime")
        self.writer.add_text("run", f"{run.name} (group {run.group}, memory {run.job_type})", 0)

    def log_experience(self, t: int, row: np.ndarray, stats: dict, timing: dict):
        for tag, value in experience_scalars(t, row, stats, timing).items():
            if tag != "experience":
                self.writer.add_scalar(tag, value, t)
        self.writer.flush()
        self.last = t

    def log_anytime(self, samples: int, accuracy: float):
        if self.anytime is None:
            purge = None if self.last_anytime is None else self.last_anytime + 1
            self.anytime = self.SummaryWriter(log_dir=str(self.anytime_dir), purge_step=purge)
        self.anytime.add_scalar("anytime/accuracy", accuracy, samples)
        self.anytime.flush()
        self.last_anytime = samples

    def log_summary(self, results: dict, output_dir: Path):
        from PIL import Image

        step = len(results["R"]) - 1
        scalars = {f"summary/{k}": v for k, v in summary_scalars(results).items()}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        R = np.asarray(results["R"], dtype=float)
        header = "| trained through | " + " | ".join(f"exp {k}" for k in range(R.shape[1])) + " |"
        rows = [f"| {t} | " + " | ".join(f"{a:.4f}" for a in row) + " |" for t, row in enumerate(R)]
        self.writer.add_text("R", "\n".join([header, "|---" * (R.shape[1] + 1) + "|", *rows]), step)
        for p in result_pngs(output_dir):
            with Image.open(p) as image:
                self.writer.add_image(f"plots/{p.stem}", np.asarray(image.convert("RGB")), step, dataformats="HWC")
        if self.hparams:
            from torch.utils.tensorboard.summary import hparams

            flat = {}
            for k, v in flatten(self.config).items():
                flat[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
            metrics = {k: v for k, v in scalars.items() if k.count("/") == 1}  # metrics/A_last etc., not nested
            # Into this run's own event file (SummaryWriter.add_hparams would open another directory).
            for part in hparams(flat, metrics):
                self.writer.file_writer.add_summary(part, step)
        self.writer.flush()

    def state_dict(self) -> dict:
        anytime = {"last_anytime": self.last_anytime} if self.last_anytime is not None else {}  # online streams
        return {"last_experience": self.last, **anytime}

    def close(self, error: BaseException | None = None):
        for writer in (self.writer, self.anytime):
            if writer is not None:
                writer.close()
        self.writer = self.anytime = None


def flatten(config, prefix: str = "") -> dict:
    """A nested config as {"memory.top_k": 5, ...}."""
    if not isinstance(config, dict):
        return {prefix: config}
    out = {}
    for k, v in config.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return {k.rstrip("."): v for k, v in out.items()}
