"""NIR graphs of the spiking memory: our own conversion (physical units), checks, and a runner of NIR's equations.

Conversion from Norse's parameters (1/s rates, current jumps) to NIR's (seconds, input weights):
tau_syn = 1 / tau_syn_inv, tau_mem = 1 / tau_mem_inv, w_in = tau_syn / dt (a jump of x in Norse is
dt / tau_syn * w_in * x in NIR's tau_syn dI/dt = -I + w_in S), r = 1. Norse 1.1.0's own helper writes
tau = dt / tau_inv and w_in = 1 (Norse issue #411), which no runtime reads back to the same network.

`run_graph` executes a graph from the file alone, with NIR's equations discretised as Norse does
(input jump, then forward Euler with dt): per step, nodes in topological order from the input; a
feed-forward edge carries its sender's output of the same step, an edge that closes a cycle (a
recurrent edge) the sender's output of the step before. It is the second runtime the tests and
`experiments/spiking_end_to_end` read our files with; it shares no code with the memory's simulator.
"""

from pathlib import Path

import numpy as np

from neurocl.errors import DataError

FORMAT = "neurocl-nir-1"  # metadata["format"]: what this module writes and reads
NODE_TYPES = ("Input", "Output", "Linear", "Affine", "Scale", "CubaLIF", "CubaLI", "LI")
# metadata["answer_rule"] of an end-to-end graph: how its outputs give the answer
ANSWER_AT_END_GATE = "end_gate"        # the label membranes ('output') at the end gate's ('answer') first spike
ANSWER_AT_FIRST_SPIKE = "first_spike"  # the first 'output' neuron to spike (class layers: one neuron per class)
ANSWER_AT_LAST_STEP = "last_step"      # the label membranes ('output') at the last step (kernel ridge)


def _meta(graph, key):
    value = graph.metadata[key]
    return value.decode() if isinstance(value, bytes) else value


def clock_inputs(z: np.ndarray, graph) -> np.ndarray:
    """(T, B, d + 1) inputs of an end-to-end graph: the host's query vectors z (B, d) and the clock line
    u(t) = 1 - (t + clock_skip) / ramp_steps, t < num_timesteps, as its metadata says."""
    T, ramp = int(graph.metadata["num_timesteps"]), int(graph.metadata["ramp_steps"])
    skip = int(graph.metadata.get("clock_skip", 0))
    u = (1.0 - (np.arange(T, dtype=np.float32) + skip) / ramp)[:, None, None]
    B = len(z)
    return np.concatenate([np.broadcast_to(z.astype(np.float32), (T, B, z.shape[1])), np.broadcast_to(u, (T, B, 1))],
                          axis=2)


def answer_nodes(graph) -> tuple:
    """The nodes whose outputs the answer rule reads."""
    return ("output", "answer") if _meta(graph, "answer_rule") == ANSWER_AT_END_GATE else ("output",)


def answers(graph, traces: dict) -> tuple[np.ndarray, np.ndarray]:
    """(class answered (B,), -1 when silent; its step (B,)) from a run's traces {node: (T, B, n)} of answer_nodes,
    whichever runtime produced them."""
    out = np.asarray(traces["output"])
    T, B = out.shape[:2]
    if _meta(graph, "answer_rule") == ANSWER_AT_LAST_STEP:
        silent = (out[-1] == 0).all(axis=1)  # no search neuron fired
        return np.where(silent, -1, out[-1].argmax(axis=1)), np.where(silent, -1, T - 1)
    if _meta(graph, "answer_rule") == ANSWER_AT_END_GATE:
        spiked = np.asarray(traces["answer"])[:, :, 0] > 0
        step = np.where(spiked.any(axis=0), spiked.argmax(axis=0), T - 1)
        potential = out[step, np.arange(B)]
        silent = (potential == 0).all(axis=1)  # no winner reached a label neuron: no search neuron fired
        return np.where(silent, -1, potential.argmax(axis=1)), step
    spiked = out > 0
    any_spike = spiked.any(axis=2)                        # (T, B)
    silent = ~any_spike.any(axis=0)
    step = np.where(silent, -1, any_spike.argmax(axis=0))
    column = spiked[np.maximum(step, 0), np.arange(B)].argmax(axis=1)  # the lowest index among those of its step
    slots = np.asarray(graph.metadata["prototype_slots"])
    return np.where(silent, -1, slots[column]), step


def cuba_lif(n: int, tau_syn_inv, tau_mem_inv, v_th, v_leak=0.0, v_reset=0.0, dt: float = 1e-3):
    """A Norse LIF population (feed-forward, current jumps) as a NIR CubaLIF, in physical units."""
    import nir

    full = lambda value: np.broadcast_to(np.asarray(value, np.float64), (n,)).copy()
    tau_syn = 1.0 / full(tau_syn_inv)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=1.0 / full(tau_mem_inv), r=full(1.0), v_leak=full(v_leak),
                       v_threshold=full(v_th), v_reset=full(v_reset), w_in=tau_syn / dt)


def cuba_li(n: int, tau_syn_inv, tau_mem_inv, v_leak=0.0, dt: float = 1e-3):
    """A Norse LI population (leaky integrator behind a current-based synapse) as a NIR CubaLI."""
    import nir

    full = lambda value: np.broadcast_to(np.asarray(value, np.float64), (n,)).copy()
    tau_syn = 1.0 / full(tau_syn_inv)
    return nir.CubaLI(tau_syn=tau_syn, tau_mem=1.0 / full(tau_mem_inv), r=full(1.0), v_leak=full(v_leak),
                      w_in=tau_syn / dt)


def read_graph(path):
    """nir.read with the checks of check_graph; a file that is not a NIR graph is named."""
    import nir

    path = Path(path)
    try:
        graph = nir.read(path, type_check=False)  # check_graph names the node and the fix
    except Exception as e:  # h5py raises OSError, a wrong layout KeyError or TypeError
        raise DataError(f"{path} is not a NIR graph ({type(e).__name__}: {e}). Fix: export it again with "
                        "python -m neurocl.run ... export_nir=true.") from e
    return check_graph(graph, str(path))


def check_graph(graph, source: str = "the graph"):
    """Names what is wrong with a graph before anything runs: format, nodes, edges, shapes, non-finite values."""
    meta = graph.metadata or {}
    fmt = meta.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else (str(fmt) if fmt is not None else None)
    if fmt != FORMAT:
        raise DataError(f"{source} was written as format {fmt!r}, this version reads {FORMAT!r}. Fix: export it "
                        "again with this version of neurocl (export_nir=true).")
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in NODE_TYPES:
            raise DataError(f"{source}: node {name!r} is a {kind}, which this runtime does not execute "
                            f"(it runs {', '.join(NODE_TYPES)}). Fix: export the graph with neurocl.")
        for key, value in vars(node).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise DataError(f"{source}: node {name!r} has NaN or inf in {key!r}. Fix: export the memory again; "
                                "a trained memory holds finite weights.")
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise DataError(f"{source}: edge {a!r} -> {b!r} names node {end!r}, which the graph does not hold. "
                                "Fix: the file is incomplete; export it again.")
    for name in ("input", "output"):
        if name not in graph.nodes:
            raise DataError(f"{source}: no {name!r} node. Fix: export the graph again.")
    sizes = {name: _size(node) for name, node in graph.nodes.items()}
    for a, b in graph.edges:
        out_size, in_size = sizes[a][1], sizes[b][0]
        if out_size is not None and in_size is not None and out_size != in_size:
            raise DataError(f"{source}: node {a!r} gives {out_size} values but node {b!r} takes {in_size} "
                            f"(edge {a!r} -> {b!r}): weights of the wrong shape. Fix: export the graph again.")
    return graph


def _size(node) -> tuple:
    """(input size, output size) of a node, None where it adapts."""
    kind = type(node).__name__
    if kind in ("Linear", "Affine"):
        return node.weight.shape[1], node.weight.shape[0]
    if kind == "Scale":
        return len(node.scale), len(node.scale)
    if kind in ("CubaLIF", "CubaLI", "LI"):
        n = len(node.v_leak)
        return n, n
    if kind == "Input":
        return None, int(np.prod(node.input_type["input"]))
    return int(np.prod(node.output_type["output"])), None


def _order(graph):
    """Topological order from the input by depth-first search; edges that close a cycle are recurrent."""
    successors = {name: [] for name in graph.nodes}
    for a, b in graph.edges:
        successors[a].append(b)
    order, state, recurrent = [], {}, set()

    def visit(name):
        state[name] = "open"
        for b in successors[name]:
            if state.get(b) == "open":
                recurrent.add((name, b))
            elif b not in state:
                visit(b)
        state[name] = "done"
        order.append(name)

    visit("input")
    for name in graph.nodes:  # nodes not reachable from the input still step (they see zeros)
        if name not in state:
            visit(name)
    return order[::-1], recurrent


def run_graph(graph, inputs: np.ndarray, dt: float, record=("output",), dtype=np.float32) -> dict:
    """Run `inputs` (T, B, n_in) through the graph; returns {node: (T, B, n) outputs} for the nodes in `record`."""
    order, recurrent = _order(graph)
    predecessors = {name: [] for name in graph.nodes}
    for a, b in graph.edges:
        predecessors[b].append(a)
    T, B = inputs.shape[:2]
    sizes = {name: _size(node) for name, node in graph.nodes.items()}
    states = {}
    out = {name: np.zeros((B, sizes[name][1] or sizes[name][0] or inputs.shape[2]), dtype)
           for name in graph.nodes}
    params = {name: _parameters(node, dt, dtype) for name, node in graph.nodes.items()}
    traces = {name: [] for name in record}
    for t in range(T):
        previous = {name: value.copy() for name, value in out.items()}
        for name in order:
            node = graph.nodes[name]
            if name == "input":
                out[name] = inputs[t].astype(dtype)
                continue
            x = None
            for a in predecessors[name]:
                value = previous[a] if (a, name) in recurrent else out[a]
                x = value if x is None else x + value
            if x is None:
                x = np.zeros((B, sizes[name][0]), dtype)
            out[name], states[name] = _step(type(node).__name__, params[name], x, states.get(name))
        for name in record:
            traces[name].append(out[name].copy())
    return {name: np.stack(trace) for name, trace in traces.items()}


def _parameters(node, dt, dtype):
    kind, cast = type(node).__name__, lambda a: np.asarray(a, np.float64)
    if kind in ("Linear", "Affine"):
        bias = cast(node.bias).astype(dtype) if kind == "Affine" else None
        return cast(node.weight).T.astype(dtype), bias
    if kind == "Scale":
        return cast(node.scale).astype(dtype)
    if kind in ("CubaLIF", "CubaLI"):
        syn = dt / cast(node.tau_syn)
        p = {"jump": (syn * cast(node.w_in)).astype(dtype), "syn_decay": (1.0 - syn).astype(dtype),
             "mem": (dt / cast(node.tau_mem)).astype(dtype), "r": cast(node.r).astype(dtype),
             "v_leak": cast(node.v_leak).astype(dtype)}
        if kind == "CubaLIF":
            p.update(v_th=cast(node.v_threshold).astype(dtype), v_reset=cast(node.v_reset).astype(dtype))
        return p
    if kind == "LI":
        return {"mem": (dt / cast(node.tau)).astype(dtype), "r": cast(node.r).astype(dtype),
                "v_leak": cast(node.v_leak).astype(dtype)}
    return None


def _step(kind, p, x, state):
    if kind == "Output":
        return x, None
    if kind in ("Linear", "Affine"):
        weight, bias = p
        y = x @ weight
        return (y + bias if bias is not None else y), None
    if kind == "Scale":
        return x * p, None
    if kind == "LI":
        v = np.full_like(x, 0) + p["v_leak"] if state is None else state
        v = v + p["mem"] * ((p["v_leak"] - v) + p["r"] * x)
        return v, v
    # CubaLIF / CubaLI: the input jumps the synaptic current, then the membrane takes a forward-Euler step
    v, i = (np.zeros_like(x) + p["v_leak"], np.zeros_like(x)) if state is None else state
    i = i + p["jump"] * x
    v = v + p["mem"] * ((p["v_leak"] - v) + p["r"] * i)
    i = i * p["syn_decay"]
    if kind == "CubaLI":
        return v, (v, i)
    z = v > p["v_th"]
    v = np.where(z, p["v_reset"], v)
    return z.astype(x.dtype), (v, i)
