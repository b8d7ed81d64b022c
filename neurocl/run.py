"""Hydra entry point: compose, instantiate, drive, save.

    python -m neurocl.run key=value ...
    python -m neurocl.run --multirun memory=prototypes,ncm seed=0,1,2
"""

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from neurocl import checkpoint, metrics, plots, run_dir
from neurocl.composer import answer_metrics
from neurocl.data.base import stratified_split
from neurocl.data.corruptions import corrupt_condition
from neurocl.distributed import tasks_of_this_job
from neurocl.driver import (Features, StreamProgress, evaluate_readouts, predict, run_multilabel_stream,
                            run_stream)
from neurocl.encoders import FeatureCache, check_accepts
from neurocl.encoders.projection import paired_features
from neurocl.errors import ConfigError, NeuroclError
from neurocl.io import atomic_path, write_json
from neurocl.loggers import Loggers, RunInfo
from neurocl.runtime import provenance, seed_everything
from neurocl.scenarios import FROZEN_FEATURE_MEMORIES, DomainIncremental, MultiLabelIncremental, OnlineBlurry
from neurocl.validate import validate_config

log = logging.getLogger("neurocl")


def build(node: DictConfig, **kwargs):
    """instantiate(), but our own errors reach the user as they are, not wrapped by Hydra."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, NeuroclError):
            raise e.__cause__ from None
        raise


def small(split, size: int):
    """The first `size` samples with every class kept where possible (stratified), else simply the first."""
    try:
        return split.stratified_head(size)
    except ValueError:
        return split.head(size)


def compose_answers(composer, memory, calibration_x, test_sets: dict, train_ids: list[str], class_names: list[str],
                    batch_size: int, output_dir: Path, examples: int = 5) -> dict:
    """The final memory's answers on every test condition: their metrics, every answer with its evidence in
    answers-<condition>.jsonl, and the risk-coverage and confusion-matrix plots. `calibration_x`: held-out
    training queries (the validation split) for policies fitted to the memory's confidence."""
    if composer.policy.needs_fit:
        composer.fit(predict(memory, calibration_x, batch_size))
    predictions = {name: predict(memory, f.x, batch_size) for name, f in test_sets.items()}
    answers = {name: answer_metrics(composer, p, test_sets[name].y, len(class_names))
               for name, p in predictions.items()}
    for name, prediction in predictions.items():  # vars(), not dataclasses.asdict: 10x faster on 10k answers
        with atomic_path(output_dir / f"answers-{name}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps({**vars(a), "evidence": vars(a.evidence), "true_label": int(y)}) + "\n" for a, y in
                                   zip(composer.compose(memory, prediction, train_ids), test_sets[name].y)))
    correct = lambda name: (predictions[name].labels == test_sets[name].y).numpy()
    plots.risk_coverage({name: metrics.risk_coverage_curve(p.confidence.numpy(), correct(name))
                         for name, p in predictions.items()}, output_dir / "risk_coverage.png")
    plots.confusion_matrix(answers["clean"]["confusion_matrix"], class_names, output_dir / "confusion_matrix.png")
    with (output_dir / "answers-clean.jsonl").open() as f:
        shown = [json.loads(next(f)) for _ in range(min(examples, len(test_sets["clean"].y)))]
    return {"answers": answers, "answer_examples": shown}


def load_splits(cfg: DictConfig):
    """The dataset of `cfg`, cut to the debug subset when one is set, before anything is encoded."""
    splits = build(cfg.dataset).load()
    for key, split in (("train_size", splits.train), ("test_size", splits.test)):
        asked = cfg.dataset.get(key)
        if asked is not None and asked > len(split):  # a loader keeps what there is; the run must not claim more
            raise ConfigError(f"dataset.{key}", asked, f"the {key.split('_')[0]} split of {splits.name} has "
                              f"{len(split):,} samples", f"set dataset.{key}={len(split)} or dataset.{key}=null (all)")
    if cfg.get("subset"):  # debug=default
        splits = dataclasses.replace(splits, train=small(splits.train, cfg.subset.train),
                                     test=small(splits.test, cfg.subset.test))
    return splits


def validation_rows(labels: torch.Tensor, fraction: float):
    """(kept, held) training rows for a validation split of `fraction`, from the labels alone (before encoding)."""
    try:
        return stratified_split(labels, fraction, stratify=labels.ndim == 1)
    except ValueError as e:  # too few samples per class on one side
        raise ConfigError("validation_fraction", fraction, f"cannot hold out that share of {len(labels):,} training "
                          f"samples and keep every class on both sides ({e})",
                          "hold out a smaller share, e.g. validation_fraction=0.2") from None


def encode_domains(cache: FeatureCache, encoder, dataset: str, domains: list) -> tuple:
    """The stream's train and test Features, every domain's rows one after the other, and each row's domain
    index (train, test). A domain's features are cached under its own name (train-rot30, ...)."""
    tag = lambda split, domain: f"{split}-{domain.name}" if domain.name else split
    parts = {"train": [], "test": []}
    for domain in domains:
        for split_name, split in (("train", domain.train), ("test", domain.test)):
            parts[split_name].append(Features(cache.features(encoder, split, dataset, tag(split_name, domain)),
                                              split.labels))
    joined = lambda features: Features(torch.cat([f.x for f in features]), torch.cat([f.y for f in features]))
    domain_of = lambda features: torch.cat([torch.full((len(f.y),), d) for d, f in enumerate(features)])
    return joined(parts["train"]), joined(parts["test"]), domain_of(parts["train"]), domain_of(parts["test"])


def run_info(cfg: DictConfig, output_dir: Path, resume: dict | None) -> RunInfo:
    """Names for loggers: the job's memory, dataset and seed; its sweep directory when it is part of one."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    memory = choices.get("memory") or cfg.memory._target_.rsplit(".", 1)[-1]
    dataset = choices.get("dataset") or cfg.dataset._target_.rsplit(".", 1)[-1]
    group = None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        group = Path(HydraConfig.get().sweep.dir).name
    return RunInfo(config=OmegaConf.to_container(cfg, resolve=True), output_dir=output_dir,
                   name=f"{dataset}-{memory}-seed{cfg.seed}", group=group, job_type=memory, resume=resume)


def execute(cfg: DictConfig, output_dir: Path) -> dict:
    """One run; writes plots, checkpoint.pt after each experience and, last, results.json into `output_dir`.

    The presence of results.json marks a completed run: it is written after everything else.
    """
    start = time.perf_counter()
    saved = run_dir.prepare(output_dir, bool(cfg.resume) or run_dir.requeued(output_dir))  # refused: nothing written
    if not saved:  # the directory is this run's; written before validation, so a failed job is listed by it
        run_dir.record_config(output_dir, cfg)
    validate_config(cfg)  # every key of every group, before anything is built, read or encoded
    config = OmegaConf.to_container(cfg, resolve=True)
    if saved:
        checkpoint.check_same_run(saved["config"], config, output_dir / checkpoint.FILENAME)
    seed_everything(cfg.seed)
    # Build everything before encoding, so that a bad value fails in seconds, not after minutes.
    cache = FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled)
    splits = load_splits(cfg)
    encoder = build(cfg.encoder)
    check_accepts(encoder, splits.modality, f"dataset {splits.name}")
    scenario = build(cfg.scenario)
    scenario.class_sequence(splits.num_classes)
    domains = scenario.domains(splits.train, splits.test)  # a dataset without the scenario's domains fails here
    multi_domain = isinstance(scenario, DomainIncremental)
    if splits.train.multi_label != isinstance(scenario, MultiLabelIncremental):
        raise ConfigError("scenario", type(scenario).__name__, f"dataset {splits.name} is "
                          f"{'' if splits.train.multi_label else 'not '}multi-label",
                          "use scenario=multi_label with multi-label data (dataset.labels=multi), "
                          "a single-label scenario otherwise")
    projection = build(cfg.projection, dim_a=encoder.dim) if cfg.get("projection") else None
    if projection and isinstance(scenario, (MultiLabelIncremental, DomainIncremental, OnlineBlurry)):
        raise ConfigError("projection", cfg.projection.policy, f"is not supported on {type(scenario).__name__} "
                          "streams (it is fitted on whole class-incremental experiences)", "set projection=none")
    memory = build(cfg.memory, dim=projection.head.projection_dim if projection else encoder.dim,
                   num_classes=splits.num_classes)
    if memory.learns_whole_experiences and not scenario.avalanche_form:
        raise ConfigError("memory", type(memory).__name__, f"an Avalanche strategy learns whole Avalanche "
                          f"experiences, and {type(scenario).__name__} streams have no Avalanche form",
                          f"use a frozen-feature memory: {FROZEN_FEATURE_MEMORIES}")
    if cfg.export_nir and not memory.exports_nir:
        raise ConfigError("export_nir", True, f"{type(memory).__name__} is not a spiking network",
                          "use memory=prototypes_snn or export_nir=false")
    # Corrupted test sets: the same images for every seed (corruption seed 0), so their features are cached once.
    corrupted = {name: corrupt_condition(splits.test, name, condition) for name, condition in cfg.conditions.items()}
    composer = build(cfg.composer)
    questions = build(cfg.qa) if cfg.get("qa") else None
    if questions is not None:
        if isinstance(scenario, (MultiLabelIncremental, DomainIncremental)):
            raise ConfigError("qa", type(questions).__name__, "asks about the dataset's own single-label samples",
                              "set qa=none")
        questions.check(splits)
    if composer.policy.needs_fit and not cfg.validation_fraction:
        raise ConfigError("composer", type(composer.policy).__name__, "it is calibrated on training queries the "
                          "memory has not learned (the memory answers its own training samples too confidently)",
                          "hold some out: validation_fraction=0.2")
    train_labels = torch.cat([d.train.labels for d in domains])
    kept, held = validation_rows(train_labels, cfg.validation_fraction) if cfg.validation_fraction else (None, None)
    logger = Loggers({name: build(node) for name, node in cfg.logger.items()})
    train, test, train_domain, test_domain = encode_domains(cache, encoder, splits.name, domains)
    test_sets = {"clean": test}
    for name, split in corrupted.items():
        test_sets[name] = Features(cache.features(encoder, split, splits.name, f"test-{name}"), split.labels)
    pairs = paired_features(projection, cache, splits) if projection and projection.policy != "frozen" else None
    # the memory's training row -> the dataset's training row (the domains' rows, one domain after the other)
    train_rows, validation = list(range(len(train.y))), None
    source_ids = [i if not multi_domain else f"{i}@{d.name}" for d in domains for i in d.train.ids]
    if held is not None:  # carved from the training data: a search never sees the test set
        validation, train = Features(train.x[held], train.y[held]), Features(train.x[kept], train.y[kept])
        train_rows, train_domain = kept.tolist(), train_domain[kept]
        pairs = pairs[kept] if pairs is not None else None
    train_ids = [source_ids[r] for r in train_rows]
    encode_s = time.perf_counter() - start
    domain_rows = dict(train_domain=train_domain, test_domain=test_domain) if multi_domain else {}
    stream = scenario.build(train.x, train.y, test.x, test.y, splits.num_classes, **domain_rows)
    progress = None
    if saved:
        if not memory.resumable:
            raise ConfigError("resume", True, f"{type(memory).__name__} keeps training samples that its checkpoint "
                              "does not hold, so it cannot continue exactly", "rerun it from the start")
        memory.load_state_dict(saved["memory"])
        checkpoint.set_rng_state(saved["rng"])
        progress = StreamProgress.from_state(saved["progress"])
        log.info("resuming %s after experience %d of %d", output_dir, progress.done - 1, len(stream))
    logger.start(run_info(cfg, output_dir, resume=saved["loggers"] if saved else None))

    # What neurocl.infer needs to answer new inputs without the dataset: class names, input format, sample ids.
    data = {"class_names": splits.class_names, "modality": splits.modality, "train_ids": train_ids,
            "image_shape": list(splits.train.images.shape[1:]) if splits.modality in ("image", "page")
            and isinstance(splits.train.data, torch.Tensor) else None}

    def save_checkpoint(progress: StreamProgress):
        checkpoint.save(output_dir / checkpoint.FILENAME, {
            "config": config, "data": data, "progress": progress.state_dict(), "memory": memory.state_dict(),
            "rng": checkpoint.rng_state(), "loggers": logger.state_dict()})

    drive = dict(logger=logger, seed=cfg.seed, observe_batch_size=cfg.observe_batch_size,
                 eval_batch_size=cfg.eval_batch_size, resume=progress, validation=validation,
                 after_experience=save_checkpoint if cfg.checkpoint else None)
    try:
        if stream.multi_label:
            results = run_multilabel_stream(stream, memory, train, test, **drive)
        else:
            results = run_stream(stream, memory, train, test, splits.num_classes, **drive,
                                 projection=projection, pairs=pairs)
            if projection:
                test_sets = {name: Features(projection.transform(f.x), f.y) for name, f in test_sets.items()}
                results["projection"] = {"policy": projection.policy, "fits": projection.fits}
            results["conditions"] = evaluate_readouts(memory.readouts(), test_sets, cfg.eval_batch_size)
            calibration_x = None
            if validation is not None:
                calibration_x = projection.transform(validation.x) if projection else validation.x
            results.update(compose_answers(composer, memory, calibration_x, test_sets, train_ids,
                                           splits.class_names, cfg.eval_batch_size, output_dir))
            if questions is not None:
                clean = test_sets["clean"].x  # projected, when there is a projection
                results["qa"] = questions.answer(composer, memory, predict(memory, clean, cfg.eval_batch_size),
                                                 splits, train_rows, output_dir / "qa.jsonl")
        results.update(config=config, provenance=provenance(), encode_s=encode_s,
                       feature_cache={"hits": cache.hits, "misses": cache.misses},
                       wall_s=time.perf_counter() - start)
        results.update(memory.write_artifacts(output_dir, test_sets["clean"].x, test.y, splits.class_names,
                                              observed_samples=len(train.y)))
        if cfg.export_nir:
            import nir

            with atomic_path(output_dir / "network.nir") as tmp:
                nir.write(tmp, memory.to_nir())
        memory_name = cfg.memory._target_.rsplit('.', 1)[-1]
        plots.accuracy_matrix(results["R"], output_dir / "accuracy_matrix.png",
                              f"{splits.name} / {memory_name}: A_last {results['metrics']['A_last']:.3f}")
        if "anytime" in results:
            curve = results["anytime"]
            plots.anytime_curves({memory_name: [(curve["samples"], curve["accuracy"])]},
                                 output_dir / "anytime_accuracy.png", np.cumsum([e.train_idx.numel() for e in
                                                                                 stream.experiences])[:-1],
                                 f"{splits.name} / {memory_name}: A_auc {results['metrics']['A_auc']:.3f}")
        write_json(output_dir / "results.json", results)  # last: its presence marks a completed run
        logger.log_summary(results, output_dir)
    except BaseException as error:  # the loggers close their record as failed (W&B), then the error goes on
        logger.close(error)
        raise
    logger.close()
    shown = lambda path: os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    log.info("results in %s (results.json)", shown(output_dir))
    log.info("plots: %s", ", ".join(sorted(p.name for p in output_dir.glob("*.png"))) or "none")
    compared = output_dir.parent if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN \
        else output_dir
    log.info("compare runs: python -m neurocl.analyze %s [more runs] --out <report dir>", shown(compared))
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Returns what sweepers optimise: A_last on the validation set when there is one, on the test set otherwise.

    A submitit job with several tasks (hydra.launcher.tasks_per_node=N) runs as N processes of one
    torch.distributed group that share the projection head's training; task 0 writes the run and logs it.
    """
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    with tasks_of_this_job() as env:
        if env is not None and env.rank > 0:  # the same run, written to a scratch directory, logged to the console
            output_dir = Path(tempfile.mkdtemp(prefix=f"neurocl-task{env.rank}-"))
            with open_dict(cfg):
                cfg.logger = {"console": {"_target_": "neurocl.loggers.ConsoleLogger"}}
        try:
            with run_dir.claim(output_dir):
                results = execute(cfg, output_dir)
        except KeyboardInterrupt:  # a line that says what to do, not a traceback
            log.warning("interrupted; %s", run_dir.resume_hint(output_dir, list(HydraConfig.get().overrides.task)))
            sys.exit(130)
    return (results.get("validation") or results)["metrics"]["A_last"]


if __name__ == "__main__":
    main()
