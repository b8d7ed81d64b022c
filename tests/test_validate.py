"""neurocl.validate: every key of every group is checked before anything is built or encoded.

Each bad-value test shows the same config passing with a good value (the check is not simply failing), and the
every-shipped-config test shows, for each option, that an unknown key in it is caught (the option is checked).
"""

import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf, open_dict

from conftest import CONF, ROOT, compose
from neurocl.errors import ConfigError
from neurocl.validate import validate_config

GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir() and d.name != "hydra")  # every group, new ones too
OWN_NODE = ("dataset", "scenario", "encoder", "memory", "neuron", "logger", "conditions", "projection")
# options that only compose with others: the contrastive head pairs the IU X-ray pages with their reports
NEEDS = {("projection", "contrastive"): ["experiment=iu_xray_pages"]}
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def filled(cfg):
    """Required values (???, e.g. the path to a dataset the user brings) set as a user would."""
    for key in OmegaConf.missing_keys(cfg):
        OmegaConf.update(cfg, key, "/data/yours")
    return cfg


def error(*overrides) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        validate_config(compose(*overrides))
    return caught.value


def test_a_negative_observe_batch_size_is_refused():
    e = error("observe_batch_size=-1")  # once: exit 0 with an all-zero R
    assert (e.key, e.value) == ("observe_batch_size", -1) and "above 0" in str(e)
    assert error("eval_batch_size=0").key == "eval_batch_size"
    validate_config(compose("observe_batch_size=1", "eval_batch_size=1"))


def test_a_non_number_names_its_key():
    e = error("memory.temperature=abc")  # once: a bare TypeError naming no key
    assert (e.key, e.value) == ("memory.temperature", "abc")
    assert "must be a number" in e.problem and "memory.temperature=0.1" in e.fix
    assert error("memory=prototypes_snn", "memory.temperature=abc").key == "memory.temperature"
    assert error("neuron.tau_mem_inv=abc").key == "neuron.tau_mem_inv"  # annotated torch.Tensor: a number
    assert error("memory.top_k=2.5").key == "memory.top_k"  # an int option
    validate_config(compose("memory.temperature=0.5", "memory.top_k=3", "neuron.tau_mem_inv=50"))
    validate_config(compose("memory.temperature=1"))  # an int where a float is expected is fine


def test_an_ensembles_members_are_checked_by_their_own_signatures():
    assert error("encoder=ensemble", "+encoder.members.lite1.resolutoin=64").key == "encoder.members.lite1.resolutoin"
    assert error("encoder=ensemble", "encoder.members.lite0.batch_size=abc").key == "encoder.members.lite0.batch_size"
    validate_config(compose("encoder=ensemble", "encoder.members.lite0.resolution=96"))  # control: a valid change


def test_an_unknown_key_lists_the_valid_ones_close_matches_first():
    e = error("+memory.tempreature=0.1")
    assert e.key == "memory.tempreature" and "PrototypeMemory" in e.problem
    assert e.fix.startswith("did you mean temperature?") and "similarity_threshold" in e.fix  # store options too
    assert "dim" not in e.fix.split("valid keys:")[1].split(", ")  # set by the run, never by the user
    assert error("+dataset.train_sise=10").key == "dataset.train_sise"
    validate_config(compose("memory.temperature=0.2", "memory.similarity_threshold=0.9", "dataset.train_size=10"))


def test_nested_keys_of_an_avalanche_strategy():
    e = error("memory=naive", "memory.strategy.train_mb_size=0")
    assert (e.key, e.value) == ("memory.strategy.train_mb_size", 0)
    e = error("memory=naive", "+memory.strategy.train_mb_sze=32")
    assert e.key == "memory.strategy.train_mb_sze" and "train_mb_size" in e.fix
    assert error("memory=ewc", "memory.optimizer.lr=abc").key == "memory.optimizer.lr"
    assert error("memory=naive", "+memory.strategy.device=cpu").key == "memory.strategy.device"  # set by neurocl
    # keys Avalanche takes through **kwargs up its templates are options too
    validate_config(compose("memory=naive", "memory.strategy.train_mb_size=32", "+memory.strategy.eval_every=-1"))


def test_nested_option_dicts_and_conditions():
    assert error("memory.backend_options.hnswlib.M=0").key == "memory.backend_options.hnswlib.M"
    assert error("+memory.backend_options.hnswlib.ef=8").key == "memory.backend_options.hnswlib.ef"
    assert error("memory=prototypes_snn", "+memory.label_plasticity.w_mx=1").key == "memory.label_plasticity.w_mx"
    assert error("conditions=corrupted", "conditions.occlusion.severity=2").key == "conditions.occlusion.severity"
    assert error("experiment=iu_xray_pages", "projection=contrastive",
                 "projection.fit.batch_size=0").key == "projection.fit.batch_size"
    validate_config(compose("memory.backend_options.hnswlib.M=8", "conditions=corrupted",
                            "conditions.occlusion.severity=1"))


def test_top_level_keys():
    e = error("export_nir=yes")
    assert (e.key, e.value) == ("export_nir", "yes") and "true or false" in e.problem
    assert error("resume=maybe").key == "resume"
    assert error("seed=abc").key == "seed" and error("seed=-1").key == "seed"
    assert error("device=gpu").key == "device"
    assert error("validation_fraction=1").key == "validation_fraction"  # 0 (off) up to, not including, 1
    assert error("debug=default", "subset.train=0").key == "subset.train"
    validate_config(compose("export_nir=true", "resume=false", "seed=3", "device=cpu", "validation_fraction=0.2"))
    validate_config(compose("validation_fraction=0"))


def test_missing_values_run_time_keys_and_broken_interpolations():
    assert error("dataset=bioasq").key == "dataset.path"  # ???: the user must give it
    assert error("+memory.dim=3").key == "memory.dim"      # the run passes the encoder's size
    e = error("projection=contrastive")                    # pairs by dataset.path, which Fashion-MNIST lacks
    assert e.key == "projection.pair_dataset.path" and "cannot be resolved" in e.problem
    validate_config(compose("dataset=bioasq", "dataset.path=/data/trainingNNb.json"))


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_shipped_config_validates(group, option):
    cfg = filled(compose(f"{group}={option}", *NEEDS.get((group, option), [])))
    validate_config(cfg)
    # positive control: an unknown key in this option's own node is caught
    node = cfg[group] if group in OWN_NODE else cfg.memory  # presets (experiment, debug) set the whole config
    if group in ("logger", "conditions"):
        node = next(iter(node.values()), None)
    if not node:
        return  # an empty option (conditions=none, projection=none): nothing of its own to check
    with open_dict(node):
        node.bogus_key = 1
    with pytest.raises(ConfigError, match="bogus_key"):
        validate_config(cfg)


def test_the_debug_preset():
    cfg = compose("experiment=digits_quick", "debug=default")
    assert cfg.subset.train > 0 and cfg.subset.test > 0
    validate_config(cfg)


# -- --help -------------------------------------------------------------------------------------------------

HELP_APP = ("import sys, hydra\n"
            "@hydra.main(version_base='1.3', config_path=sys.argv.pop(1), config_name='config')\n"
            "def main(cfg): pass\n"
            "main()\n")


def offered_groups(text: str) -> dict:
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    return {line.split(":")[0]: line.split(": ")[1].split(", ") for line in section.splitlines() if ": " in line}


def check_help(text: str):
    assert "continual learning on frozen features" in text
    for example in ("--multirun", "hydra/launcher=slurm", "'logger=[console,wandb]'", "resume=true hydra.run.dir=",
                    "python -m neurocl.infer"):
        assert example in text, example
    groups = offered_groups(text)
    assert {"dataset", "memory", "encoder", "experiment", "debug"} <= set(groups)
    assert not any(g.startswith("memory/") for g in groups), groups  # base configs are not options
    assert not any("head" in option for option in groups["memory"])


def test_help_describes_the_app_and_hides_base_configs():
    out = subprocess.run([sys.executable, "-m", "neurocl.run", "hydra/help=neurocl", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    check_help(out.stdout)
    assert "powered by Hydra" not in out.stdout  # not Hydra's generic header


def test_help_check_catches_a_base_config_offered_as_a_group(tmp_path):
    """Positive control: with the Avalanche base config back under conf/memory/, it is offered and caught."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "memory" / "avalanche").mkdir()
    shutil.copy(CONF / "avalanche_head.yaml", conf / "memory" / "avalanche" / "head.yaml")
    out = subprocess.run([sys.executable, "-c", HELP_APP, str(conf), "hydra/help=neurocl", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert offered_groups(out.stdout)["memory/avalanche"] == ["head"]
    with pytest.raises(AssertionError):
        check_help(out.stdout)


def test_check_finite_names_nan_and_inf_rows_and_passes_finite_sums_that_overflow():
    """The fast path (one sum) lets finite tensors through; a sum that overflows in float16 goes on to the full
    check, which passes it (the control that the fast path is only a shortcut)."""
    import torch

    from neurocl.errors import DataError, check_finite

    finite = torch.randn(50, 8)
    check_finite(finite, "features")
    large = torch.full((4, 8), 60000.0, dtype=torch.float16)  # each value finite, their sum inf in float16
    assert not torch.isfinite(large.sum())
    check_finite(large, "features")
    for bad in (float("nan"), float("inf")):
        broken = finite.clone()
        broken[3, 2] = bad
        with pytest.raises(DataError, match=r"features contain NaN or inf in 1 of 50 rows \(first rows: \[3\]\)"):
            check_finite(broken, "features")
