"""The declared memory contract, and defaults that live in one place."""

import inspect

import numpy as np
import pytest
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

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


# -- defaults forwarded through **kwargs: a memory built in Python is the one the command line builds ----------

def _arguments_received(build):
    """Run `build()` and return what the prototype memory classes, the store and the search backend received:
    each call's arguments bound to the callee's signature with its defaults applied. This follows every option
    a memory hands on through **kwargs (PrototypeMemory -> PrototypeStore -> backend), whatever the chain."""
    from neurocl.memory import PrototypeMemory, backends, store
    from neurocl.snn import SpikingPrototypeMemory

    received, originals = {}, {}

    def spy(owner, name):
        original = originals[owner] = owner.__init__

        def init(self, *args, **kwargs):
            bound = inspect.signature(original).bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            received.setdefault(name, {**arguments, "class": type(self).__name__} if name == "backend" else arguments)
            original(self, *args, **kwargs)

        owner.__init__ = init

    try:
        for owner, name in ((SpikingPrototypeMemory, "SpikingPrototypeMemory"), (PrototypeMemory, "PrototypeMemory"),
                            (store.PrototypeStore, "PrototypeStore"),
                            *((cls, "backend") for cls in backends.BACKENDS.values())):
            spy(owner, name)
        build()
    finally:
        for owner, original in originals.items():
            owner.__init__ = original
    return received


def _plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _store_memories():
    from neurocl.memory import PrototypeMemory

    return [m for m in MEMORIES if issubclass(get_class(compose(f"memory={m}").memory._target_), PrototypeMemory)]


STORE_MEMORIES = _store_memories()
# what the two builds are told apart by on purpose: the sizes, and (under **kwargs) the dict of the forwarded options
# themselves, compared one by one below; backend_options: the chosen backend's own arguments are compared instead
NOT_DEFAULTS = {"dim", "num_classes", "neuron", "store_options", "backend_options"}


@pytest.mark.parametrize("memory", STORE_MEMORIES)
def test_forwarded_options_default_to_what_the_command_line_composes(memory):
    """Every option a prototype memory hands on to PrototypeStore (and the store to its search backend): the value
    the command line composes (conf/memory) is the one the Python class uses when built with no argument."""
    from hydra.utils import instantiate

    cfg = compose(f"memory={memory}")
    cls = get_class(cfg.memory._target_)
    required = {key: instantiate(cfg.memory[key]) for key, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD
                and key not in ("self", "dim", "num_classes")}  # the spiking memory's neuron
    python = _arguments_received(lambda: cls(16, 4, **required))
    command_line = _arguments_received(lambda: instantiate(cfg.memory, dim=16, num_classes=4))
    assert {"PrototypeMemory", "PrototypeStore", "backend"} <= set(python) == set(command_line)
    disagree = {}
    missing = "(not passed)"
    for callee, arguments in python.items():
        for key in set(arguments) | set(command_line[callee]):
            value, composed = _plain(arguments.get(key, missing)), _plain(command_line[callee].get(key, missing))
            if key not in NOT_DEFAULTS and value != composed:
                disagree[f"{callee}.{key}"] = (value, composed)
    # every backend's options in the YAML, not only the chosen one's: memory.backend=hnswlib must not change them
    from neurocl.memory.backends import BACKENDS

    for backend, options in _plain(cfg.memory.get("backend_options") or {}).items():
        parameters = inspect.signature(BACKENDS[backend]).parameters
        for key, value in (options or {}).items():
            if value != parameters[key].default:
                disagree[f"backend_options.{backend}.{key}"] = (parameters[key].default, value)
    forwarded = set(python["PrototypeStore"]) - NOT_DEFAULTS
    assert {"backend", "precision", "projection_dim", "similarity_threshold", "seed"} <= forwarded  # derived, not listed
    assert not disagree, f"{memory}: Python default vs command line {disagree}"


def test_the_forwarded_defaults_check_can_fail(monkeypatch):
    """Positive control: a store default that drifts from conf/memory/prototypes.yaml is named."""
    from neurocl.memory.store import PrototypeStore

    init = PrototypeStore.__init__
    names = [n for n, p in inspect.signature(init).parameters.items() if p.default is not inspect.Parameter.empty]
    defaults = list(init.__defaults__)
    defaults[names.index("momentum")] = 0.2
    monkeypatch.setattr(init, "__defaults__", tuple(defaults))
    with pytest.raises(AssertionError, match="PrototypeStore.momentum"):
        test_forwarded_options_default_to_what_the_command_line_composes("prototypes")


# -- predict and state_dict are reads; end_experience settles what observe held back ---------------------------

def _cheap_memories():
    return [m for m in MEMORIES if not get_class(compose(f"memory={m}").memory._target_).learns_whole_experiences]


CHEAP = _cheap_memories()  # the Avalanche strategies train networks on whole experiences: not here
SMALLER = {"ranpac": ["memory.projection_dim=64"]}


def _make(memory):
    from hydra.utils import instantiate

    return instantiate(compose(f"memory={memory}", *SMALLER.get(memory, [])).memory, dim=16, num_classes=4)


def _batches(experience: int, size: int = 12):
    """Experience t of a small class-incremental stream (classes 2t, 2t+1) in shuffled batches."""
    from test_memory import clusters

    x, y = clusters(num_classes=4, per_class=24, dim=16, spread=0.3)
    rows = torch.nonzero(y // 2 == experience).flatten()
    rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(experience))]
    return x, [(x[rows[i:i + size]], y[rows[i:i + size]], rows[i:i + size]) for i in range(0, len(rows), size)]


def _differences(a, b, path="state") -> list[str]:
    """Where two state dicts differ (deeply: dicts, lists, tensors and arrays by dtype, shape and value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [f"{path}: {type(a).__name__} of {len(a)} vs {type(b).__name__} of {len(b)}"]
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in _differences(u, v, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a.nan_to_num(0.0) if a.is_floating_point() else a,
                                                       b.nan_to_num(0.0) if b.is_floating_point() else b)
                and (not a.is_floating_point() or torch.equal(a.isnan(), b.isnan())))
        return [] if same else [path]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        return [] if same else [path]
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.mark.parametrize("memory", CHEAP)
def test_predict_and_state_dict_leave_the_state_as_it_was(memory):
    m = _make(memory)
    x, batches = _batches(0)
    for features, labels, ids in batches:
        m.observe(features, labels, 0, ids=ids)
    m.end_experience()
    before = m.state_dict()
    first, second = m.predict(x), m.predict(x)
    assert not _differences(before, m.state_dict()), _differences(before, m.state_dict())
    assert torch.equal(first.labels, second.labels) and torch.equal(first.scores, second.scores)
    # positive control: the comparison sees a change (one more batch learned)
    _, later = _batches(1)
    m.observe(*later[0][:2], 1, ids=later[0][2])
    assert _differences(before, m.state_dict())


@pytest.mark.parametrize("memory", CHEAP)
@pytest.mark.filterwarnings("ignore:.*held back until end_experience")
def test_a_predict_or_a_state_dict_between_batches_changes_nothing_the_memory_learns(memory):
    """The same batches with predict and state_dict called between them, or not: the same memory at the end."""
    asked, left = _make(memory), _make(memory)
    x, batches = _batches(0)
    for i, (features, labels, ids) in enumerate(batches):
        for m in (asked, left):
            m.observe(features, labels, 0, ids=ids)
        if i == 0:
            asked.predict(x)
            asked.state_dict()
    # a state_dict taken while samples are held back, loaded elsewhere, continues exactly
    restored = _make(memory)
    restored.load_state_dict(asked.state_dict())
    for m in (asked, left, restored):
        m.end_experience()
    assert not _differences(left.state_dict(), asked.state_dict()), _differences(left.state_dict(), asked.state_dict())
    assert not _differences(left.state_dict(), restored.state_dict())
    assert torch.equal(left.predict(x).scores, asked.predict(x).scores)


class _Recorder:
    """Wraps a memory; logs the driver's calls in order."""

    def __init__(self, memory, log):
        self.memory, self.log = memory, log

    def __getattr__(self, name):
        value = getattr(self.memory, name)
        if name in ("observe", "end_experience", "predict", "state_dict"):
            def logged(*args, **kwargs):
                self.log.append(name)
                return value(*args, **kwargs)
            return logged
        return value


def _segments(log: list[str]) -> list[list[str]]:
    """The log cut at each checkpoint, runs of one call collapsed: [observe, end_experience, predict, state_dict]."""
    out, current = [], []
    for name in log:
        if not current or current[-1] != name:
            current.append(name)
        if name == "state_dict":
            out.append(current)
            current = []
    return out + ([current] if current else [])


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_driver_ends_each_experience_after_its_last_batch_before_evaluating_and_checkpointing(multi_label):
    from neurocl.driver import Features, run_multilabel_stream, run_stream
    from neurocl.loggers import LoggerBase
    from neurocl.memory import NCM
    from neurocl.scenarios import ClassIncremental, MultiLabelIncremental
    from test_memory import clusters

    x, y = clusters(num_classes=4, per_class=24, dim=16, spread=0.3)
    log = []
    memory = _Recorder(NCM(16, 4), log)
    checkpoint = lambda progress: memory.state_dict()
    if multi_label:
        labels = torch.nn.functional.one_hot(y, 4)
        stream = MultiLabelIncremental(2).build(x, labels, x, labels, 4)
        run_multilabel_stream(stream, memory, Features(x, labels), Features(x, labels), LoggerBase(),
                              observe_batch_size=10, after_experience=checkpoint)
    else:
        stream = ClassIncremental(2).build(x, y, x, y, 4)
        run_stream(stream, memory, Features(x, y), Features(x, y), 4, LoggerBase(), observe_batch_size=10,
                   after_experience=checkpoint)
    assert log.count("end_experience") == len(stream) == 2
    segments = _segments(log)
    assert segments[0][0] == "predict"  # the untrained answers (b_k) come first
    segments[0] = segments[0][1:]
    assert segments == [["observe", "end_experience", "predict", "state_dict"]] * 2, segments

