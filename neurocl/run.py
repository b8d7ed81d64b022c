"""Hydra entry point: compose, instantiate, drive, save.

    python -m neurocl.run key=value ...
    python -m neurocl.run --multirun memory=prototypes,ncm seed=0,1,2
"""

import logging
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from neurocl import plots
from neurocl.data.corruptions import corrupt_condition
from neurocl.driver import Features, evaluate_readouts, run_multilabel_stream, run_stream
from neurocl.encoders import FeatureCache, check_accepts
from neurocl.encoders.projection import paired_features
from neurocl.errors import ConfigError, NeuroclError
from neurocl.io import atomic_path, write_json
from neurocl.loggers import Loggers, RunInfo
from neurocl.runtime import seed_everything
from neurocl.scenarios import MultiLabelIncremental

log = logging.getLogger("neurocl")


def build(node: DictConfig, **kwargs):
    """instantiate(), but our own errors reach the user as they are, not wrapped by Hydra."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, NeuroclError):
            raise e.__cause__ from None
        raise


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
    """One run; writes results.json and accuracy_matrix.png into `output_dir`."""
    start = time.perf_counter()
    seed_everything(cfg.seed)
    # Build everything before encoding, so that a bad value fails in seconds, not after minutes.
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    check_accepts(encoder, splits.modality, f"dataset {splits.name}")
    scenario = build(cfg.scenario)
    scenario.class_sequence(splits.num_classes)
    if splits.train.multi_label != isinstance(scenario, MultiLabelIncremental):
        raise ConfigError("scenario", type(scenario).__name__, f"dataset {splits.name} is "
                          f"{'' if splits.train.multi_label else 'not '}multi-label",
                          "use scenario=multi_label with multi-label data (dataset.labels=multi), "
                          "a single-label scenario otherwise")
    projection = build(cfg.projection, dim_a=encoder.dim) if cfg.get("projection") else None
    if projection and isinstance(scenario, MultiLabelIncremental):
        raise ConfigError("projection", cfg.projection.policy, "is not supported on multi-label streams",
                          "set projection=none")
    memory = build(cfg.memory, dim=projection.head.projection_dim if projection else encoder.dim,
                   num_classes=splits.num_classes)
    if cfg.export_nir and not memory.exports_nir:
        raise ConfigError("export_nir", True, f"{type(memory).__name__} is not a spiking network",
                          "use memory=prototypes_snn or export_nir=false")
    # Corrupted test sets: the same images for every seed (corruption seed 0), so their features are cached once.
    corrupted = {name: corrupt_condition(splits.test, name, condition) for name, condition in cfg.conditions.items()}
    logger = Loggers({name: build(node) for name, node in cfg.logger.items()})
    cache = FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)
    test_sets = {"clean": test}
    for name, split in corrupted.items():
        test_sets[name] = Features(cache.features(encoder, split, splits.name, f"test-{name}"), split.labels)
    pairs = paired_features(projection, cache, splits) if projection and projection.policy != "frozen" else None
    encode_s = time.perf_counter() - start
    logger.start(run_info(cfg, output_dir, resume=None))
    stream = scenario.build(train.x, train.y, test.x, test.y, splits.num_classes)
    drive = dict(logger=logger, seed=cfg.seed, observe_batch_size=cfg.observe_batch_size,
                 eval_batch_size=cfg.eval_batch_size)
    if stream.multi_label:
        results = run_multilabel_stream(stream, memory, train, test, **drive)
    else:
        results = run_stream(stream, memory, train, test, splits.num_classes, **drive,
                             projection=projection, pairs=pairs)
        if projection:
            test_sets = {name: Features(projection.transform(f.x), f.y) for name, f in test_sets.items()}
            results["projection"] = {"policy": projection.policy, "fits": projection.fits}
        results["conditions"] = evaluate_readouts(memory.readouts(), test_sets, cfg.eval_batch_size)
    results.update(config=OmegaConf.to_container(cfg, resolve=True), encode_s=encode_s,
                   feature_cache={"hits": cache.hits, "misses": cache.misses},
                   wall_s=time.perf_counter() - start)
    results.update(memory.write_artifacts(output_dir, test_sets["clean"].x, test.y, splits.class_names,
                                          observed_samples=len(train.y)))
    if cfg.export_nir:
        import nir

        with atomic_path(output_dir / "network.nir") as tmp:
            nir.write(tmp, memory.to_nir())
    write_json(output_dir / "results.json", results)
    plots.accuracy_matrix(results["R"], output_dir / "accuracy_matrix.png",
                          f"{splits.name} / {cfg.memory._target_.rsplit('.', 1)[-1]}: "
                          f"A_last {results['metrics']['A_last']:.3f}")
    logger.log_summary(results, output_dir)
    logger.close()
    log.info("results in %s", output_dir)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return execute(cfg, Path(HydraConfig.get().runtime.output_dir))["metrics"]["A_last"]


if __name__ == "__main__":
    main()
