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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from neurocl import plots
from neurocl.driver import Features, run_stream
from neurocl.encoders import FeatureCache
from neurocl.errors import NeuroclError
from neurocl.io import write_json
from neurocl.memory import PrototypeMemory
from neurocl.memory.analyzer import PrototypeAnalyzer
from neurocl.runtime import seed_everything

log = logging.getLogger("neurocl")


def build(node: DictConfig, **kwargs):
    """instantiate(), but our own errors reach the user as they are, not wrapped by Hydra."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, NeuroclError):
            raise e.__cause__ from None
        raise


def execute(cfg: DictConfig, output_dir: Path) -> dict:
    """One run; writes results.json and accuracy_matrix.png into `output_dir`."""
    start = time.perf_counter()
    seed_everything(cfg.seed)
    # Build everything before encoding, so that a bad value fails in seconds, not after minutes.
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    scenario = build(cfg.scenario)
    scenario.class_sequence(splits.num_classes)
    memory = build(cfg.memory, dim=encoder.dim, num_classes=splits.num_classes)
    logger = build(cfg.logger)
    cache = FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)
    encode_s = time.perf_counter() - start
    stream = scenario.build(train.x, train.y, test.x, test.y, splits.num_classes)
    results = run_stream(stream, memory, train, test, splits.num_classes, logger, seed=cfg.seed,
                         observe_batch_size=cfg.observe_batch_size, eval_batch_size=cfg.eval_batch_size)
    results.update(config=OmegaConf.to_container(cfg, resolve=True), encode_s=encode_s,
                   feature_cache={"hits": cache.hits, "misses": cache.misses},
                   wall_s=time.perf_counter() - start)
    if isinstance(memory, PrototypeMemory):
        analyzer = PrototypeAnalyzer(memory.store, observed_samples=len(train.y))
        results["prototype_stats"] = analyzer.stats()
        plots.prototype_map(*analyzer.map_2d(), output_dir / "prototype_map.png", splits.class_names)
    write_json(output_dir / "results.json", results)
    plots.accuracy_matrix(results["R"], output_dir / "accuracy_matrix.png",
                          f"{splits.name} / {cfg.memory._target_.rsplit('.', 1)[-1]}: "
                          f"A_last {results['metrics']['A_last']:.3f}")
    logger.log_summary(results)
    logger.close()
    log.info("results in %s", output_dir)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return execute(cfg, Path(HydraConfig.get().runtime.output_dir))["metrics"]["A_last"]


if __name__ == "__main__":
    main()
