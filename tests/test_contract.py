"""The declared memory contract, and defaults that live in one place."""

import inspect

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import CONF, compose
from neurocl.memory import MemoryBase

MEMORIES = sorted(p.stem for p in (CONF / "memory").glob("*.yaml"))
# an option's own setting over the default of the group file it composes (avalanche_head: hidden 0)
OPTION_SETTINGS = {("cope", "hidden"), ("icarl", "hidden")}


@pytest.mark.parametrize("memory", MEMORIES)
def test_every_memory_declares_the_contract(memory):
    cls = get_class(compose(f"memory={memory}").memory._target_)
    assert issubclass(cls, MemoryBase)
    assert isinstance(cls.learns_whole_experiences, bool) and isinstance(cls.exports_nir, bool)
    assert cls.learns_whole_experiences == (cls.train_experience is not MemoryBase.train_experience)
    assert cls.exports_nir == (cls.to_nir is not MemoryBase.to_nir)


@pytest.mark.parametrize("memory", MEMORIES)
def test_python_defaults_agree_with_the_yaml(memory):
    """A default written twice must say the same twice (the YAML is what users see and run)."""
    cfg = compose(f"memory={memory}").memory
    signature = inspect.signature(get_class(cfg._target_).__init__)
    written = OmegaConf.to_container(cfg, resolve=False)
    disagree = {}
    for key, parameter in signature.parameters.items():
        default, value = parameter.default, written.get(key, inspect.Parameter.empty)
        if default in (inspect.Parameter.empty, None) or value is inspect.Parameter.empty:
            continue  # no default (None: derived or required), or not in the YAML
        if isinstance(value, str) and value.startswith("${") or (memory, key) in OPTION_SETTINGS:
            continue
        if (list(default) if isinstance(default, tuple) else default) != value:
            disagree[key] = (default, value)
    assert not disagree, f"{memory}: Python default vs YAML {disagree}"


def test_the_defaults_check_can_fail(monkeypatch):
    """Positive control: the spiking memory's stdp_lr once read 0.01 in Python and 0.001 in the YAML."""
    import neurocl.snn.memory as snn

    original = snn.SpikingPrototypeMemory.__init__
    signature = inspect.signature(original)
    changed = signature.replace(parameters=[p.replace(default=0.01) if p.name == "stdp_lr" else p
                                            for p in signature.parameters.values()])
    monkeypatch.setattr(snn.SpikingPrototypeMemory.__init__, "__signature__", changed, raising=False)
    with pytest.raises(AssertionError, match="stdp_lr"):
        test_python_defaults_agree_with_the_yaml("prototypes_snn")


def test_our_errors_survive_pickling():
    """A job in another process (submitit) sends its exception back pickled: it must arrive as itself."""
    import pickle

    from neurocl.errors import ConfigError, DataError

    error = ConfigError("memory.top_k", -1, "must be a positive integer", "set memory.top_k=10")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is ConfigError and str(back) == str(error) and (back.key, back.value) == ("memory.top_k", -1)
    data = pickle.loads(pickle.dumps(DataError("file x.csv, row 3: bad label")))
    assert type(data) is DataError and str(data) == "file x.csv, row 3: bad label"
