"""The stream loop: train on experience t, then test on every experience (row t of R)."""

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from neurocl import metrics
from neurocl.errors import ConfigError
from neurocl.memory.base import Memory, Prediction, prediction_from_scores
from neurocl.scenarios import FROZEN_FEATURE_MEMORIES, Experience, Stream


@dataclass
class Features:
    x: torch.Tensor  # (N, d)
    y: torch.Tensor  # (N,)


@dataclass
class StreamProgress:
    """Where a stream stands after `done` experiences: what a checkpoint keeps besides the memory and RNG states."""
    done: int                  # experiences completed
    R: np.ndarray              # rows < done are final
    untrained: list            # b_k, for forward transfer
    timings: list
    shuffle: torch.Tensor      # state of the generator that orders each experience's samples
    extra: dict = field(default_factory=dict)  # multi-label streams: R_macro_f1 and the label thresholds

    def state_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_state(cls, state: dict) -> "StreamProgress":
        return cls(**state)


def predict(memory: Memory, x: torch.Tensor, batch_size: int, classes: list[int] | None = None) -> Prediction:
    """Batched prediction; with `classes` (task-aware streams) only those classes may be answered."""
    parts = [memory.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    scores = torch.cat([p.scores for p in parts]) if parts else torch.empty(0, 0)
    evidence = {k: torch.cat([p.evidence[k] for p in parts]) for k in (parts[0].evidence if parts else {})}
    if classes is not None:
        allowed = torch.zeros(scores.shape[1], dtype=torch.bool)
        allowed[classes] = True
        scores = scores.masked_fill(~allowed, float("-inf"))
    return prediction_from_scores(scores, evidence)


def matrix_results(R: np.ndarray, untrained) -> dict:
    """R, its summary metrics and its forgetting and transfer matrices, under the names of results.json."""
    return {"R": R, "untrained_accuracy": untrained, "metrics": metrics.summary(R, untrained),
            "forgetting_matrix": metrics.forgetting_matrix(R), "transfer_matrix": metrics.transfer_matrix(R, untrained)}


def evaluate(memory: Memory, test: Features, experience: Experience, task_aware: bool, batch_size: int):
    x, y = test.x[experience.test_idx], test.y[experience.test_idx]
    prediction = predict(memory, x, batch_size, experience.classes if task_aware else None)
    return metrics.accuracy(prediction.labels, y), prediction.labels, prediction.unknown


def open_set_rows(t: int, results: list) -> tuple[np.ndarray, np.ndarray]:
    """After experience t, how well the memory's unknown score (Prediction.unknown) tells test samples of the
    classes seen so far (experiences <= t) from those of each later experience k, classes it has never seen:
    per k > t, the AUROC of the score for unseen against seen, and the share of experience k's samples abstained
    on when the threshold keeps 95% of the seen-class answers. NaN for k <= t."""
    T = len(results)
    auroc, abstained = np.full(T, np.nan), np.full(T, np.nan)
    seen = torch.cat([unknown for _, _, unknown in results[: t + 1]]).double().numpy()
    threshold = np.quantile(seen, 0.95) if len(seen) else 0.0
    for k in range(t + 1, T):
        unseen = results[k][2].double().numpy()
        auroc[k] = metrics.auroc(np.concatenate([seen, unseen]), np.r_[np.zeros(len(seen)), np.ones(len(unseen))])
        abstained[k] = float((unseen > threshold).mean()) if len(unseen) else np.nan
    return auroc, abstained


class OnlineLoop:
    """One pass over an online stream (Stream.online): batches of `batch_size` in the stream's order (a batch is
    cut short by an evaluation and by the end of an experience's samples), and an anytime evaluation every
    `eval_every` samples (counted across experiences) and at the stream's end.

    The memory is told no task: `observe` gets the index of the window between two evaluations as its
    experience, and before every answer the memory settles what it held back (end_experience), as the driver
    settles it before every evaluation. Where it stands (samples observed, the curve, the classes seen) lives
    in progress.extra["anytime"], and the run checkpoints after every anytime evaluation, so a run killed
    mid-task resumes to the same curve.
    """

    def __init__(self, stream: Stream, memory: Memory, train: Features, test: Features, num_classes: int,
                 progress: StreamProgress, logger, eval_batch_size: int,
                 after_evaluation: Callable[[StreamProgress], None] | None):
        self.schedule, self.memory, self.train, self.test = stream.online, memory, train, test
        self.progress, self.logger, self.eval_batch_size, self.after_evaluation = progress, logger, eval_batch_size, \
            after_evaluation
        sizes = [len(e.train_idx) for e in stream.experiences]
        self.offsets, self.total = np.cumsum([0, *sizes[:-1]]).tolist(), sum(sizes)
        self.state = progress.extra.setdefault("anytime", {
            "samples": [], "accuracy": [], "per_class_accuracy": [], "evaluated": [], "position": 0, "windows": 0,
            "seen": torch.zeros(num_classes, dtype=torch.bool), "anytime_evaluations": [0] * len(sizes),
            "anytime_eval_s": [0.0] * len(sizes), "checkpoint_s": [0.0] * len(sizes)})

    def observe(self, t: int, order: torch.Tensor) -> float:
        """Observe the rest of experience t (all of it, unless resumed inside it); returns the seconds spent on
        anytime evaluations and their checkpoints."""
        s, every = self.state, self.schedule.eval_every
        i = s["position"] - self.offsets[t]
        spent = 0.0
        with tqdm(total=len(order), initial=i, desc=f"observe {t}", unit="sample", leave=False, disable=None) as bar:
            while i < len(order):
                position = self.offsets[t] + i
                stop = min(len(order), i + self.schedule.batch_size, (position // every + 1) * every - self.offsets[t])
                rows = order[i:stop]
                self.memory.observe(self.train.x[rows], self.train.y[rows], s["windows"], ids=rows)
                s["seen"][self.train.y[rows]] = True
                bar.update(stop - i)
                i, s["position"] = stop, self.offsets[t] + stop
                if s["position"] % every == 0 or s["position"] == self.total:
                    start = time.perf_counter()
                    self.anytime_evaluation(t)
                    evaluated = time.perf_counter()
                    s["anytime_eval_s"][t] += evaluated - start
                    if self.after_evaluation:
                        self.after_evaluation(self.progress)
                    s["checkpoint_s"][t] += time.perf_counter() - evaluated
                    spent += time.perf_counter() - start
        return spent

    def anytime_evaluation(self, t: int):
        """The anytime accuracy now: on the evaluation subset's samples of the classes seen so far."""
        s = self.state
        self.memory.end_experience()
        s["windows"] += 1
        rows = self.schedule.eval_idx[s["seen"][self.test.y[self.schedule.eval_idx]]]
        labels, y = predict(self.memory, self.test.x[rows], self.eval_batch_size).labels, self.test.y[rows]
        accuracy = metrics.accuracy(labels, y)
        per_class = np.full(len(s["seen"]), np.nan)
        for c in y.unique().tolist():
            per_class[c] = float((labels[y == c] == c).double().mean())
        s["samples"].append(s["position"])
        s["accuracy"].append(accuracy)
        s["per_class_accuracy"].append(per_class)
        s["evaluated"].append(len(rows))
        s["anytime_evaluations"][t] += 1
        self.logger.log_anytime(s["position"], accuracy)

    def timing(self, t: int) -> dict:
        return {key: self.state[key][t] for key in ("anytime_evaluations", "anytime_eval_s", "checkpoint_s")}

    def metrics(self) -> dict:
        return metrics.anytime_summary(self.state["accuracy"], self.state["per_class_accuracy"])

    def curve(self) -> dict:
        s = self.state
        return {"samples": s["samples"], "accuracy": s["accuracy"], "per_class_accuracy": s["per_class_accuracy"],
                "evaluated_samples": s["evaluated"], "batch_size": self.schedule.batch_size,
                "eval_every": self.schedule.eval_every, "eval_subset": len(self.schedule.eval_idx)}


def run_stream(stream: Stream, memory: Memory, train: Features, test: Features, num_classes: int,
               logger, seed: int = 0, observe_batch_size: int = 1024, eval_batch_size: int = 4096,
               projection=None, pairs: torch.Tensor | None = None, resume: StreamProgress | None = None,
               after_experience: Callable[[StreamProgress], None] | None = None,
               validation: Features | None = None) -> dict:
    """Drive `memory` through `stream`; returns R, the metrics and per-experience timings.

    resume: continue after `resume.done` experiences (the memory already holds them);
    after_experience: called with the progress after each experience (the run checkpoints there);
    validation: samples held out of the training data; R on them (rows by class, as the test set) is returned
    under "validation", for hyperparameter searches that must not see the test set.

    projection (encoders.projection.StreamProjection): the memory sees projected features; before each
    experience the projection may be fitted on its training samples' `pairs` (the other modality), after which
    every feature is projected anew (the memory keeps what it stored in the old space: the stream policy's drift).
    """
    raw_train, raw_test = train, test
    projected = lambda: (Features(projection.transform(raw_train.x), raw_train.y),
                         Features(projection.transform(raw_test.x), raw_test.y))
    if projection is not None:
        train, test = projected()
    if projection is not None and resume is not None and resume.done:
        raise ConfigError("resume", True, "a stream with a fitted projection cannot resume yet",
                          "rerun it from the start (resume=false in a new hydra.run.dir), or use projection=none")
    T = len(stream)
    evaluate_all = lambda: [evaluate(memory, test, e, stream.task_aware, eval_batch_size) for e in stream.experiences]
    by_class = lambda features, e: torch.isin(features.y, torch.as_tensor(e.classes)).nonzero().flatten()
    validate_all = lambda: [metrics.accuracy(predict(memory, validation.x[rows], eval_batch_size,
                                                     e.classes if stream.task_aware else None).labels,
                                             validation.y[rows])
                            for e in stream.experiences for rows in [by_class(validation, e)]]
    progress = resume or StreamProgress(0, np.zeros((T, T)), [acc for acc, *_ in evaluate_all()], [],  # b_k
                                        torch.Generator().manual_seed(seed).get_state())
    if validation is not None and "R_validation" not in progress.extra:
        progress.extra.update(R_validation=np.zeros((T, T)), untrained_validation=validate_all())
    R, untrained, timings = progress.R, progress.untrained, progress.timings
    shuffle = torch.Generator()
    shuffle.set_state(progress.shuffle)
    results = None
    if memory.learns_whole_experiences:
        if stream.build_benchmark is None:
            raise ConfigError("memory", type(memory).__name__, "an Avalanche strategy needs a stream with an "
                              "Avalanche form (class- or task-incremental)", f"use {FROZEN_FEATURE_MEMORIES}")
        stream.benchmark  # built here (Avalanche's import takes seconds), not inside an experience's timing
    online = OnlineLoop(stream, memory, train, test, num_classes, progress, logger, eval_batch_size, after_experience) \
        if stream.online is not None else None
    for experience in tqdm(stream.experiences[progress.done:], desc="experiences", unit="exp",
                           initial=progress.done, total=T, disable=None):
        t = experience.index
        if online is None:
            order = experience.train_idx[torch.randperm(len(experience.train_idx), generator=shuffle)]
        else:  # the scenario's own order: one pass, as the stream comes
            order = experience.train_idx
        if projection is not None and projection.before_experience(t, raw_train.x[experience.train_idx],
                                                                   pairs[experience.train_idx]):
            train, test = projected()
        start = time.perf_counter()
        anytime_s = 0.0
        if memory.learns_whole_experiences:  # Avalanche strategies run their own loop on the same experience
            if projection is not None:
                raise ConfigError("projection", projection.policy, "Avalanche strategies train on the stream's "
                                  "own features", "use a frozen-feature memory, or projection=none")
            memory.train_experience(stream.benchmark.train_stream[t])
        elif online is not None:
            anytime_s = online.observe(t, order)
        else:
            for i in tqdm(range(0, len(order), observe_batch_size), desc=f"observe {t}", unit="batch", leave=False,
                          disable=None):  # None: a bar only on a terminal (a log file would get \r junk)
                rows = order[i:i + observe_batch_size]
                memory.observe(train.x[rows], train.y[rows], t, ids=rows)
        memory.end_experience()  # what the memory held back joins it: evaluation and the checkpoint read it as settled
        observe_s = time.perf_counter() - start - anytime_s
        start = time.perf_counter()
        results = evaluate_all()
        R[t] = [acc for acc, *_ in results]
        # a task-aware answer never reaches an unseen class, and a domain or blurry stream's later experiences hold
        # classes already seen: no open set to measure
        if stream.novel_classes and not stream.task_aware:
            open_set = progress.extra.setdefault("open_set", {"auroc": np.full((T, T), np.nan),
                                                              "abstained_at_95": np.full((T, T), np.nan)})
            open_set["auroc"][t], open_set["abstained_at_95"][t] = open_set_rows(t, results)
        if validation is not None:
            progress.extra["R_validation"][t] = validate_all()
        timing = {"experience": t, "train_samples": len(order), "observe_s": observe_s,
                  "eval_s": time.perf_counter() - start,
                  "test_samples": sum(len(e.test_idx) for e in stream.experiences)}
        if online is not None:
            timing.update(online.timing(t))
        timings.append(timing)
        logger.log_experience(t, R[t], memory.stats(), timing)
        progress.done, progress.shuffle = t + 1, shuffle.get_state()
        if after_experience:
            after_experience(progress)
    if results is None:  # resumed after the last experience: only the final answers are left to compute
        results = evaluate_all()
    all_idx = torch.cat([e.test_idx for e in stream.experiences])
    final_labels = torch.cat([labels for _, labels, _ in results])
    summary = matrix_results(R, untrained)
    open_set = progress.extra.get("open_set")
    if open_set and T > 1:  # its means join the summary metrics
        open_set = {**open_set, "mean_auroc": float(np.nanmean(open_set["auroc"])),
                    "mean_abstained_at_95": float(np.nanmean(open_set["abstained_at_95"]))}
        summary["metrics"].update(open_set_auroc=open_set["mean_auroc"],
                                  open_set_abstained_at_95=open_set["mean_abstained_at_95"])
    if online is not None:
        summary["metrics"].update(online.metrics())
    return {
        **summary,
        **({"open_set": open_set} if open_set else {}),
        **({"anytime": online.curve()} if online is not None else {}),
        "per_class_accuracy": metrics.per_class_accuracy(final_labels, test.y[all_idx], num_classes),
        "timings": timings,
        "memory_stats": memory.stats(),
        **({"validation": matrix_results(progress.extra["R_validation"], progress.extra["untrained_validation"])}
           if validation is not None else {}),
        "experiences": [{"index": e.index, "classes": e.classes, "task_id": e.task_id,
                         "train_samples": len(e.train_idx), "test_samples": len(e.test_idx)}
                        for e in stream.experiences],
    }


def evaluate_readouts(readouts: dict, test_sets: dict, batch_size: int = 4096, coverage: float = 0.8) -> dict:
    """The final memory on every test condition: accuracy, calibration and abstention, per readout.

    readouts: name -> predict function (e.g. the spiking network and the store's vote on the same prototypes);
    test_sets: condition name -> Features. A readout without a `confidence` evidence is scored by softmax.
    Every readout after the first also gets `same_answer`: the share of queries it answers as the first one does.
    """
    results = {}
    for condition, features in test_sets.items():
        results[condition] = {}
        first_labels = None
        for name, predict_fn in readouts.items():
            parts = [predict_fn(features.x[i:i + batch_size]) for i in range(0, len(features.x), batch_size)]
            labels = torch.cat([p.labels for p in parts])
            confidence = torch.cat([p.confidence for p in parts]).numpy()
            correct = (labels == features.y).numpy()
            row = {"accuracy": float(correct.mean()), "abstained": float((labels < 0).float().mean()),
                   "ece": metrics.expected_calibration_error(confidence, correct),
                   **metrics.risk_coverage(confidence, correct, coverage)}
            if first_labels is None:
                first_labels = labels
            else:
                row["same_answer"] = float((labels == first_labels).float().mean())
            for key in ("spikes", "sops"):
                if all(key in p.evidence for p in parts):
                    row[f"{key}_per_query"] = float(torch.cat([p.evidence[key] for p in parts]).float().mean())
            results[condition][name] = row
    return results


def label_scores(memory: Memory, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """(N, L) per-label scores, finite (a label a memory has not seen scores lowest, all tied)."""
    scores = predict(memory, x, batch_size).scores.double().numpy()
    return np.nan_to_num(scores, nan=-1e30, neginf=-1e30, posinf=1e30)


def run_multilabel_stream(stream: Stream, memory: Memory, train: Features, test: Features, logger, seed: int = 0,
                          observe_batch_size: int = 1024, eval_batch_size: int = 4096,
                          resume: StreamProgress | None = None,
                          after_experience: Callable[[StreamProgress], None] | None = None,
                          validation: Features | None = None) -> dict:
    """Drive `memory` through a multi-label stream (scenarios.MultiLabelIncremental).

    Experience t's samples are observed once per label of t that they carry. R[t, k] is the mean AUROC, over
    experience k's labels, of the memory's per-label scores on the whole test set after training through t;
    R_macro_f1 the same with F1 at per-label thresholds. A label's threshold maximises F1 on the training
    samples of the experience that introduced it, and is fixed then (training data only, no replay).
    """
    if validation is not None:
        raise ConfigError("validation_fraction", "> 0", "multi-label streams have no validation split yet",
                          "set validation_fraction=0")
    if memory.learns_whole_experiences:
        raise ConfigError("memory", type(memory).__name__, "multi-label streams need a frozen-feature memory "
                          "(Avalanche strategies train softmax heads on single labels)",
                          "use memory=prototypes, slda, ncm, knn or ranpac")
    T, L = len(stream), train.y.shape[1]
    y_test = test.y.numpy()

    def rows_of(scores):
        auroc = [metrics.auroc(scores[:, l], y_test[:, l]) for l in range(L)]
        f1 = [metrics.f1(scores[:, l] >= thresholds[l], y_test[:, l]) for l in range(L)]
        group = lambda values: [float(np.nanmean([values[l] for l in e.classes])) for e in stream.experiences]
        return auroc, f1, group(auroc), group(f1)

    if resume is None:
        thresholds = np.full(L, np.inf)  # unseen labels are never predicted
        untrained = rows_of(label_scores(memory, test.x, eval_batch_size))[2]
        progress = StreamProgress(0, np.zeros((T, T)), untrained, [], torch.Generator().manual_seed(seed).get_state(),
                                  {"R_macro_f1": np.zeros((T, T)), "thresholds": thresholds})
    else:
        progress = resume
    R, R_f1, thresholds = progress.R, progress.extra["R_macro_f1"], progress.extra["thresholds"]
    untrained, timings = progress.untrained, progress.timings
    shuffle = torch.Generator()
    shuffle.set_state(progress.shuffle)
    auroc = f1 = None
    if memory.learns_whole_experiences:
        stream.benchmark  # built here (Avalanche's import takes seconds), not inside an experience's timing
    for experience in tqdm(stream.experiences[progress.done:], desc="experiences", unit="exp",
                           initial=progress.done, total=T, disable=None):
        t = experience.index
        present = train.y[experience.train_idx][:, experience.classes] == 1
        sample, which = present.nonzero(as_tuple=True)
        rows, labels = experience.train_idx[sample], torch.as_tensor(experience.classes)[which]
        order = torch.randperm(len(rows), generator=shuffle)
        start = time.perf_counter()
        for i in tqdm(range(0, len(order), observe_batch_size), desc=f"observe {t}", unit="batch", leave=False,
                          disable=None):  # None: a bar only on a terminal (a log file would get \r junk)
            batch = order[i:i + observe_batch_size]
            memory.observe(train.x[rows[batch]], labels[batch], t, ids=rows[batch])
        memory.end_experience()  # as in run_stream: before the thresholds, the evaluation and the checkpoint
        observe_s = time.perf_counter() - start
        start = time.perf_counter()
        seen_scores = label_scores(memory, train.x[experience.train_idx], eval_batch_size)
        for l in experience.classes:
            thresholds[l] = metrics.best_threshold(seen_scores[:, l], train.y[experience.train_idx, l].numpy())
        auroc, f1, R[t], R_f1[t] = rows_of(label_scores(memory, test.x, eval_batch_size))
        timing = {"experience": t, "train_samples": len(rows), "observe_s": observe_s,
                  "eval_s": time.perf_counter() - start, "test_samples": len(y_test)}
        timings.append(timing)
        logger.log_experience(t, R[t], memory.stats(), timing)
        progress.done, progress.shuffle = t + 1, shuffle.get_state()
        if after_experience:
            after_experience(progress)
    if auroc is None:  # resumed after the last experience: only the final answers are left to compute
        auroc, f1 = rows_of(label_scores(memory, test.x, eval_batch_size))[:2]
    return {
        **matrix_results(R, untrained),
        "multi_label": {"R_macro_f1": R_f1, "metrics_macro_f1": metrics.summary(R_f1, np.zeros(T)),
                        "per_label_auroc": auroc, "per_label_f1": f1, "thresholds": thresholds,
                        "R_is": "mean per-label AUROC"},
        "timings": timings,
        "memory_stats": memory.stats(),
        "experiences": [{"index": e.index, "labels": e.classes, "train_samples": len(e.train_idx),
                         "test_samples": len(e.test_idx)} for e in stream.experiences],
    }
