"""A trained memory on another test set or condition, with the metrics of a run.

    python -m neurocl.evaluate checkpoint=outputs/runs/<run> conditions=corrupted
    python -m neurocl.evaluate checkpoint=outputs/runs/<run> dataset.root=/data/other-fashion-mnist
    python -m neurocl.evaluate checkpoint=outputs/runs/<run> dataset=medmnist dataset.path=...   # same classes

Overrides are Hydra overrides of the `dataset` and `conditions` groups (and their keys); everything else
(encoder, memory, scenario) is the run's own. The dataset must have the run's classes, in its order. Prints a
table and writes evaluation.json (atomically) into the run directory, or to output=<file>. A run that stopped
before the end of its stream is evaluated only with allow_partial=true (evaluation.json says how far it got).
"""

import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from neurocl import metrics
from neurocl.data.corruptions import corrupt_condition
from neurocl.driver import Features, evaluate_readouts
from neurocl.encoders import FeatureCache, check_accepts
from neurocl.errors import ConfigError, NeuroclError
from neurocl.infer import load_trained
from neurocl.io import write_json
from neurocl.scenarios import MultiLabelIncremental

CONF = Path(__file__).resolve().parents[1] / "conf"
OWN_KEYS = ("checkpoint", "output", "allow_partial")
EVALUATED_GROUPS = ("dataset", "conditions")


def evaluation_config(saved: dict, overrides: list[str]):
    """The run's config with the `dataset` and `conditions` the overrides name, composed by Hydra."""
    for override in overrides:
        group = override.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]
        if group not in EVALUATED_GROUPS:
            raise ConfigError(override.split("=", 1)[0], override.split("=", 1)[-1],
                              "neurocl.evaluate changes only the test data", "override dataset... or conditions...")
    config = OmegaConf.create(saved)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composed = compose("config", overrides=overrides)
    for group in EVALUATED_GROUPS:
        if any(o.lstrip("+~").startswith(group) for o in overrides):
            config[group] = composed[group]
    return config


def evaluate(argv: list[str]) -> dict:
    options = {k: v for k, v in (a.split("=", 1) for a in argv if a.split("=", 1)[0] in OWN_KEYS)}
    overrides = [a for a in argv if a.split("=", 1)[0] not in OWN_KEYS]
    if "checkpoint" not in options:
        raise ConfigError("checkpoint", None, "is required", "python -m neurocl.evaluate checkpoint=<run dir> ...")
    run_dir = Path(options["checkpoint"])
    allow_partial = options.get("allow_partial", "false").lower()
    if allow_partial not in ("true", "false"):
        raise ConfigError("allow_partial", allow_partial, "must be true or false", "set allow_partial=true")
    config, data, encoder, memory = load_trained(run_dir, allow_partial == "true")
    config = evaluation_config(OmegaConf.to_container(config), overrides)
    splits = instantiate(config.dataset).load()
    if splits.class_names != data["class_names"]:
        raise ConfigError("dataset", splits.name, f"its classes {splits.class_names} are not the run's "
                          f"{data['class_names']}", "evaluate on data with the run's classes, in its order")
    check_accepts(encoder, splits.modality, f"dataset {splits.name}")
    cache = FeatureCache(config.paths.cache_dir, enabled=config.cache.enabled)
    test_sets = {"clean": Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)}
    for name, condition in (config.conditions or {}).items():
        split = corrupt_condition(splits.test, name, condition)
        test_sets[name] = Features(cache.features(encoder, split, splits.name, f"test-{name}"), split.labels)
    conditions = evaluate_readouts(memory.readouts(), test_sets, config.eval_batch_size)
    own = next(iter(memory.readouts()))
    clean = test_sets["clean"]
    labels = memory.predict(clean.x).labels
    scenario = instantiate(config.scenario)
    if isinstance(scenario, MultiLabelIncremental):
        raise ConfigError("checkpoint", str(run_dir), "neurocl.evaluate scores single-label runs",
                          "evaluate a multi-label memory with a run (python -m neurocl.run ...)")
    groups = [list(g) for g in np.array_split(scenario.class_sequence(len(data["class_names"])),
                                               len(data["class_names"]) // scenario.classes_per_experience)]
    per_experience = [float((labels[mask] == clean.y[mask]).float().mean()) if mask.any() else None
                      for mask in (np.isin(clean.y.numpy(), g) for g in groups)]
    result = {"checkpoint": str(run_dir), "experiences_seen": data["experiences_seen"], "dataset": splits.name,
              "test_samples": len(clean.y),
              "accuracy": conditions["clean"][own]["accuracy"], "per_experience_accuracy": per_experience,
              "per_class_accuracy": metrics.per_class_accuracy(labels, clean.y, len(data["class_names"])),
              "conditions": conditions, "config": OmegaConf.to_container(config, resolve=True)}
    output = Path(options.get("output") or (run_dir if run_dir.is_dir() else run_dir.parent) / "evaluation.json")
    write_json(output, result)
    width = max(len(c) for c in conditions)
    print(f"{splits.name}, {len(clean.y)} test samples, a memory that has learned "
          f"{data['experiences_seen'][0]} of {data['experiences_seen'][1]} experiences; per experience: "
          + " ".join("-" if a is None else f"{a:.3f}" for a in per_experience))
    for condition, readouts in conditions.items():
        print("  " + f"{condition:<{width}}  " + "  ".join(
            f"{name}: accuracy {row['accuracy']:.4f} ece {row['ece']:.4f}" for name, row in readouts.items()))
    print(f"wrote {output}")
    return result


if __name__ == "__main__":
    try:
        evaluate(sys.argv[1:])
    except NeuroclError as e:
        sys.exit(f"error: {e}")
