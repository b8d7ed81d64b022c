"""The early, uniform check of a composed config: every key of every group, before anything is built or encoded.

    validate_config(cfg)   # raises ConfigError naming the dotted key, its value, the problem and the fix

Every `_target_` node (dataset, scenario, encoder, memory and its nested strategy / optimizer, neuron, each
logger, projection and its pair_dataset / pair_encoder, ...) is held to the signature of what it builds:

- each key must be a parameter of the target (a class that takes **kwargs is followed up its MRO, as
  cooperative constructors pass them on, and through FORWARDS where neurocl hands them to another class),
  else the error lists the valid keys, close matches first;
- each value must fit the parameter's annotation (int, float, bool, str, None, Literal, list / tuple, dict,
  Path, torch.Tensor as a number); ints are fine where floats are expected; an unannotated third-party
  parameter is held to the type of its default;
- numbers must satisfy RANGES, a table of constraints by parameter name (batch sizes > 0, fractions in
  (0, 1), ...);
- keys that neurocl supplies at run time (RUN_TIME, e.g. memory.dim) must not be set.

Dict-valued options with a known schema (NESTED: memory.backend_options, the spiking memory's plasticity
rules, projection.fit) and the entries of `conditions` get the same checks; so do the top-level keys (TOP_LEVEL).
The constructors keep their own checks (cross-field rules, checks of loaded data): this layer catches what a
signature can tell, in seconds, instead of after minutes of encoding or, worse, a run that "succeeds".
"""

import collections.abc
import difflib
import fnmatch
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from neurocl.errors import ConfigError

EMPTY = inspect.Parameter.empty

# -- declarative tables ----------------------------------------------------------------------------------

# Numbers by parameter name (fnmatch patterns; the first rule that matches a name applies, None: no rule).
# A list of numbers is checked element by element (page_size, image_shape, lda_shrinkage, ...).
RANGES = [
    (("eval_every",), None),                            # Avalanche: -1 means never
    (("disjoint_fraction", "blurry_fraction"), ("closed", 0, 100)),  # i-Blurry-N-M: percentages
    (("*_fraction",), ("open", 0, 1)),                  # test / holdout / validation fractions
    (("severity",), ("left_open", 0, 1)),
    (("momentum",), ("left_open", 0, 1)),
    (("lda_shrinkage", "blend_weights"), ("left_open", 0, 1)),
    (("similarity_threshold", "merge_threshold"), ("closed", -1, 1)),
    (("split_threshold",), ("left_open", 0, 2)),
    (("refresh_growth",), ("above", 1)),
    (("seed",), ("closed", 0, 2**32 - 1)),              # numpy seeds are 32-bit
    (("hidden", "min_*", "weight_decay", "ewc_lambda", "stdp_lr", "memory_strength", "tau_lr", "tau_*_inv",
      "shrinkage_param"), ("at_least", 0)),
    (("*_size", "*_shape", "num_*", "*epochs", "max_*", "top_k", "k", "exemplars", "maintenance_interval",
      "resolution", "channels", "classes_per_experience", "labels_per_experience", "projection_dim",
      "recurrent_fan_in", "patterns_per_exp", "output_dim", "patience", "M", "ef_construction", "ef_search"),
     ("above", 0)),
    (("temperature", "T", "lr", "dt", "input_gain", "scale", "ocr_scale", "kernel_bandwidths", "ridge",
      "ridge_grid", "shrinkage", "tau_mem_inv_min", "tau_mem_inv_max"), ("above", 0)),
]

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Top-level keys of conf/config.yaml: dotted key -> (type, a name to look up in RANGES, or a rule itself).
# Keys not listed here (added by other features) are left to their owners.
TOP_LEVEL = {
    "seed": (int, "seed"),
    "device": (str, "device"),
    "observe_batch_size": (int, "observe_batch_size"),
    "eval_batch_size": (int, "eval_batch_size"),
    "validation_fraction": (float, ("right_open", 0, 1)),   # 0: no validation split
    "export_nir": (bool, None),
    "checkpoint": (bool, None),
    "resume": (bool, None),
    "cache.enabled": (bool, None),
    "paths.cache_dir": (str, None),
    "subset.train": (typing.Optional[int], "train_size"),   # conf/debug/default.yaml
    "subset.test": (typing.Optional[int], "test_size"),
}

# A target whose **kwargs neurocl hands to another class: the keys of that class are valid too.
FORWARDS = {"neurocl.memory.prototypes.PrototypeMemory": "neurocl.memory.store.PrototypeStore"}

# Only these packages' constructors are known to pass **kwargs up their MRO (cooperative constructors);
# anyone else's **kwargs may go anywhere, so their nodes accept any key.
COOPERATIVE = ("neurocl.", "avalanche.")

# Parameters that neurocl passes when it builds a node, by the node's dotted path: never set in a config.
RUN_TIME = {
    "memory": {"dim": "the feature size of the encoder (or of the projection head)",
               "num_classes": "the dataset's number of classes"},
    "projection": {"dim_a": "the stream encoder's feature size"},
    "memory.strategy": {name: "AvalancheMemory builds it from memory.hidden, memory.optimizer and memory.device"
                        for name in ("model", "optimizer", "criterion", "device", "evaluator", "feature_extractor",
                                     "classifier", "slda_model", "input_size", "num_classes", "n_classes")},
    "memory.optimizer": {"params": "the network's parameters"},
}


@dataclass
class Schema:
    """The keys of a dict-valued option: a callable's parameters, less those supplied in code."""
    target: str                 # dotted name of the callable whose signature describes the keys
    exclude: tuple = ()
    only: tuple | None = None   # restrict to these names
    required: bool = False      # parameters without a default must be given


def _plasticity():
    return Schema("neurocl.snn.plasticity.RewardSTDPParameters", exclude=("lr", "reward_modulation", "dt"))


def _fit():
    from neurocl.encoders.projection import FIT_DEFAULTS

    return Schema("neurocl.encoders.projection.ContrastiveProjection.fit", only=tuple(FIT_DEFAULTS))


# (owner callable, parameter) -> the schema of its dict value. backend_options holds one dict per backend.
NESTED = {
    ("neurocl.snn.memory.SpikingPrototypeMemory", "label_plasticity"): _plasticity,
    ("neurocl.snn.memory.SpikingPrototypeMemory", "recurrent_plasticity"): _plasticity,
    ("neurocl.encoders.projection.stream_projection", "fit"): _fit,
}
PER_BACKEND = ("neurocl.memory.store.PrototypeStore", "backend_options")

# Dict nodes without a _target_, by dotted path pattern.
PATH_SCHEMAS = {"conditions.*": Schema("neurocl.data.corruptions.corrupt", exclude=("split", "seed"), required=True)}


# -- entry point -----------------------------------------------------------------------------------------

def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid key of `cfg` (a composed run config); return None when valid."""
    for key, (annotation, rule) in TOP_LEVEL.items():
        parent, _, leaf = key.rpartition(".")
        node = cfg if not parent else cfg._get_node(parent) if parent in cfg else None
        if isinstance(node, DictConfig) and leaf in node:
            _check_value(key, _value(node, leaf, key), annotation, rule or leaf, default=EMPTY)
    _walk(cfg, "")


# -- walking ---------------------------------------------------------------------------------------------

def _walk(node, path: str):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_target(node, path)
            return
        schema = next((s for pattern, s in PATH_SCHEMAS.items() if fnmatch.fnmatchcase(path, pattern)), None)
        if schema is not None:
            _check_schema(path, _plain(node, path), schema)
            return
        for key in node.keys():
            if not path and key == "hydra":
                continue
            if OmegaConf.is_interpolation(node, key):
                continue  # an alias (x: ${memory}) is checked where it is defined
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)):
                _walk(child, _join(path, key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if OmegaConf.is_interpolation(node, i):
                continue
            child = node._get_node(i)
            if isinstance(child, (DictConfig, ListConfig)):
                _walk(child, f"{path}[{i}]")


def _check_target(node: DictConfig, path: str):
    target = node._get_node("_target_")._value()
    callable_ = _resolve(path, target)
    parameters, owners, open_ = _parameters(callable_)
    run_time = RUN_TIME.get(path, {})
    name = _name(callable_)
    given = [k for k in node.keys() if not (isinstance(k, str) and k.startswith("_") and k.endswith("_"))]
    for key in given:
        full = _join(path, key)
        if key in run_time:
            raise ConfigError(full, _raw(node, key), f"is supplied by neurocl at run time: {run_time[key]}",
                              f"remove {full}" + _device_hint(path, key))
        if key not in parameters:
            if open_:
                continue
            raise ConfigError(full, _raw(node, key), f"is not an option of {name}",
                              _valid_keys(key, [p for p in parameters if p not in run_time]))
        parameter = parameters[key]
        if parameter.kind == parameter.POSITIONAL_ONLY:
            raise ConfigError(full, _raw(node, key), f"is not a keyword option of {name}",
                              _valid_keys(key, [p for p in parameters if p not in run_time]))
        if _is_node_interpolation(node, key):
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and "_target_" in child:
            _check_target(child, full)  # a nested object: its own signature decides
            continue
        if isinstance(child, ListConfig) and any(isinstance(c, DictConfig) and "_target_" in c for c in child):
            _walk(child, full)
            continue
        if isinstance(child, DictConfig) and any(isinstance(child._get_node(k), DictConfig) and "_target_" in child[k]
                                                 for k in child):  # named objects (an ensemble's members)
            _walk(child, full)
            continue
        value = _value(node, key, full)
        owner = owners[key]
        if (owner, key) == PER_BACKEND:
            _check_backend_options(full, value)
            continue
        if (owner, key) in NESTED and isinstance(value, dict):
            _check_schema(full, value, NESTED[(owner, key)]())
            continue
        _check_value(full, value, parameter.annotation, key, parameter.default)
    partial = node.get("_partial_", False) is True
    if not partial:
        for key, parameter in parameters.items():
            if (parameter.default is EMPTY and key not in given and key not in run_time
                    and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)):
                raise ConfigError(_join(path, key), "???", f"{name} needs it and the config does not set it",
                                  f"add +{_join(path, key)}=<value>")


def _check_schema(path: str, values: dict, schema: Schema):
    parameters, _, _ = _parameters(_resolve(path, schema.target))
    allowed = {k: p for k, p in parameters.items()
               if k not in schema.exclude and k != "self" and (schema.only is None or k in schema.only)
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if not isinstance(values, dict):
        raise ConfigError(path, values, "must be a mapping of options", _valid_keys("", list(allowed)))
    for key, value in values.items():
        full = _join(path, key)
        if key not in allowed:
            raise ConfigError(full, value, f"is not an option here ({schema.target.rsplit('.', 1)[-1]})",
                              _valid_keys(str(key), list(allowed)))
        _check_value(full, value, allowed[key].annotation, key, allowed[key].default)
    if schema.required:
        for key, parameter in allowed.items():
            if parameter.default is EMPTY and key not in values:
                raise ConfigError(_join(path, key), "???", "is required",
                                  f"set {_join(path, key)}, e.g. as in the shipped configs")


def _check_backend_options(path: str, value):
    from neurocl.memory.backends import BACKENDS

    if value is None:
        return
    if not isinstance(value, dict):
        raise ConfigError(path, value, "must map a backend name to its options", "e.g. {hnswlib: {M: 16}}")
    for backend, options in value.items():
        if backend not in BACKENDS:
            raise ConfigError(_join(path, backend), options, "is not a backend",
                              _valid_keys(str(backend), list(BACKENDS)))
        cls = BACKENDS[backend]
        _check_schema(_join(path, backend), options or {},
                      Schema(f"{cls.__module__}.{cls.__qualname__}", exclude=("dim", "seed")))


# -- signatures ------------------------------------------------------------------------------------------

def _resolve(path: str, target):
    from hydra.utils import get_method

    if callable(target):
        return target
    try:
        return get_method(str(target))
    except Exception as e:  # noqa: BLE001 - Hydra wraps import errors in several types
        raise ConfigError(_join(path, "_target_"), target, f"cannot be imported ({e})",
                          "check the dotted path of the class or function") from None


def _name(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _signature(obj) -> inspect.Signature:
    for eval_str in (True, False):
        try:
            return inspect.signature(obj, eval_str=eval_str)
        except (NameError, TypeError, AttributeError, SyntaxError):
            continue
        except ValueError:
            break
    return inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def _parameters(obj):
    """(name -> Parameter, name -> dotted name of the callable that declares it, accepts any key)."""
    parameters, owners = {}, {}

    def add(callable_, owner: str):
        sig = _signature(callable_)
        keywords = False
        for name, parameter in sig.parameters.items():
            if name == "self":
                continue
            if parameter.kind == parameter.VAR_KEYWORD:
                keywords = True
                continue
            if parameter.kind == parameter.VAR_POSITIONAL:
                continue
            if name not in parameters:
                parameters[name], owners[name] = parameter, owner
        if owner in FORWARDS:
            forwarded = _resolve("", FORWARDS[owner])
            add(forwarded, _name(forwarded))
            return False
        return keywords

    if not isinstance(obj, type):
        return parameters, owners, add(obj, _name(obj))
    inits = [c for c in obj.__mro__ if c is not object and "__init__" in c.__dict__]
    if not inits:  # NamedTuple, dataclass without __init__ of its own: the class's own signature
        return parameters, owners, add(obj, _name(obj))
    for cls in inits:
        if not add(cls.__dict__["__init__"], _name(cls)):
            return parameters, owners, False  # a constructor without **kwargs: the keys end here
        if not _name(cls).startswith(COOPERATIVE):
            return parameters, owners, True   # **kwargs of unknown destination: anything goes
    return parameters, owners, False          # passed up to object, which takes none


# -- values ----------------------------------------------------------------------------------------------

def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_node_interpolation(node, key) -> bool:
    """`neuron: ${neuron}`: an alias of a whole config node, checked where it is defined."""
    if not OmegaConf.is_interpolation(node, key):
        return False
    try:
        return isinstance(node[key], DictConfig)
    except OmegaConfBaseException:
        return False  # unresolvable: reported with its key when the value is read


def _raw(node, key):
    child = node._get_node(key)
    return child._value() if not isinstance(child, (DictConfig, ListConfig)) else OmegaConf.to_container(child)


def _value(node, key, full: str | None = None):
    """The resolved value as plain Python; unresolvable and missing values are ConfigErrors naming the key."""
    full = full or key
    try:
        value = node[key]
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
        return value
    except MissingMandatoryValue:
        raise ConfigError(full, "???", "is required and has no value",
                          f"set {full}=<value> on the command line") from None
    except OmegaConfBaseException as e:
        raise ConfigError(full, _safe_raw(node, key), f"cannot be resolved ({type(e).__name__}: {str(e).splitlines()[0]})",
                          "set it to a value, or choose options that define the key it refers to") from None


def _safe_raw(node, key):
    try:
        return _raw(node, key)
    except Exception:  # noqa: BLE001
        return "?"


def _plain(node: DictConfig, path: str) -> dict:
    return {key: _value(node, key, _join(path, key)) for key in node.keys()}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(annotation) -> str:
    if annotation is type(None):
        return "null"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple, collections.abc.Sequence) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {PLURAL.get(args[0], _describe(args[0]))}"
    if annotation is float:
        return "a number"
    if annotation is int:
        return "an integer"
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a string"
    if _is_tensor(annotation):
        return "a number"
    return getattr(annotation, "__name__", str(annotation))


PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def _is_tensor(annotation) -> bool:
    return getattr(annotation, "__module__", "") == "torch" and getattr(annotation, "__name__", "") == "Tensor"


def _accepts(value, annotation) -> bool:
    """Whether `value` fits `annotation`; annotations it cannot judge (modules, callables, ...) accept anything."""
    if annotation is EMPTY or annotation is typing.Any or isinstance(annotation, str):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return _is_number(value)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return isinstance(value, (str, PurePath))
    if _is_tensor(annotation):
        return _is_number(value) or (isinstance(value, list) and all(_accepts(v, annotation) for v in value))
    sequence = origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple)
    if sequence:
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(_accepts(v, a) for v, a in zip(value, args))
        return all(_accepts(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def _from_default(default):
    """The annotation an unannotated third-party parameter implies by its default."""
    if isinstance(default, bool):
        return bool
    if _is_number(default):
        return float
    if isinstance(default, str):
        return str
    return EMPTY


def _rule(name: str):
    for patterns, rule in RANGES:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return rule
    return None


RULE_TEXT = {"open": "in ({0}, {1})", "left_open": "in ({0}, {1}]", "right_open": "in [{0}, {1})",
             "closed": "in [{0}, {1}]", "above": "above {0}", "at_least": "at least {0}"}


def _bound(number) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:g}"


def _within(value, rule) -> bool:
    kind, *bounds = rule
    if not math.isfinite(value):
        return False
    if kind == "open":
        return bounds[0] < value < bounds[1]
    if kind == "left_open":
        return bounds[0] < value <= bounds[1]
    if kind == "right_open":
        return bounds[0] <= value < bounds[1]
    if kind == "closed":
        return bounds[0] <= value <= bounds[1]
    if kind == "above":
        return value > bounds[0]
    return value >= bounds[0]


def _example(key: str, default, fallback: str) -> str:
    if default is EMPTY or default is None or _is_tensor(type(default)) or isinstance(default, (tuple, list)):
        return fallback
    return f"set {key}={OmegaConf.to_yaml({'v': default}).strip()[3:]} (its default) or another valid value"


def _check_value(key: str, value, annotation, name, default):
    """`name`: the parameter's name, whose RANGES rule applies, or a rule tuple itself."""
    if annotation is EMPTY:
        annotation = _from_default(default)
    if not _accepts(value, annotation):
        hint = ""
        if isinstance(value, str) and typing.get_origin(annotation) is not typing.Literal:
            hint = ", not a string"
        raise ConfigError(key, value, f"must be {_describe(annotation)}{hint}",
                          _example(key, default, f"set {key} to {_describe(annotation)}"))
    if isinstance(name, str) and name == "device" and isinstance(value, str) and not DEVICE.match(value):
        raise ConfigError(key, value, "is not a device", f"use {key}=auto, {key}=cpu, {key}=cuda or {key}=cuda:N")
    rule = name if isinstance(name, tuple) else _rule(name)
    if rule is None:
        return
    numbers = [value] if _is_number(value) else (
        [v for v in value if _is_number(v)] if isinstance(value, (list, tuple)) else [])
    for number in numbers:
        if not _within(number, rule):
            text = RULE_TEXT[rule[0]].format(*map(_bound, rule[1:]))
            raise ConfigError(key, value, f"must be {text}" + (" (each element)" if number is not value else ""),
                              _example(key, default, f"set {key} to a value {text}"))


def _device_hint(path: str, key: str) -> str:
    if path == "memory.strategy" and key == "device":
        return " (memory.device sets the strategy's device)"
    if path == "memory.strategy" and key == "optimizer":
        return " (memory.optimizer configures it)"
    return ""


def _valid_keys(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    rest = sorted(k for k in valid if k not in close)
    ordered = close + rest
    head = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{head}valid keys: {', '.join(ordered) if ordered else '(none)'}"
