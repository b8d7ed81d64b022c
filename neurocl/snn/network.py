"""The whole memory as one spiking network: search, top-k, readout (`memory.network=end_to_end`).

Populations (Norse's LIF/LI steps, dt = 1 ms, v_leak = v_reset = 0):

    input   x(t) = [z, u(t)]: the query's conditioned unit-norm vector z (computed on the host: the
            store's whitening and the normalisation, which NIR has no node for) and a clock line
            u(t) = 1 - (t + clock_skip) / ramp_steps, the same for every query
    search  N neurons, one per prototype. Synapses hold the conditioned prototypes:
            input current gain * (p_j . z - u(t)) = gain * (s_j - u(t)), into an integrating synapse
            (tau_syn -> infinity) and a membrane that follows it (tau_mem = dt). The nearest
            prototype fires first, at about t_j = 2 ramp_steps (1 - s_j): first-spike order is
            similarity order (Frady et al. 2020). Each neuron fires once (self-inhibition).
    k-gate  one neuron counting search spikes; at the k-th (top_k) it fires once and inhibits the whole
            search layer: the first k to fire are the winners (k-WTA by lateral inhibition).
    start   fires at the first search spike and every step after; `end` counts its spikes and
            fires `window_steps` later: the answer time, window / similarity after the nearest.
    label   C leaky integrators (tau_mem = 1 s) behind integrating synapses from the winners with
            weights = each prototype's label shares, then `label_stages - 1` more integrators in a
            chain. At the answer time a winner that fired at t_j has added about
            share * (t_end - t_j)^n / n! (n = label_stages): a vote weighted by
            max(0, 1 - (s_1 - s_j) / window)^n, which for the window of `fitted_window` is the
            least-squares match of the store's softmax vote exp((s_j - s_1) / temperature).

The answer is the label membrane's argmax at the end gate's first spike (at the last step if it
never fires; silent when no search neuron fired); nothing after it changes the answer, so a query's
run stops there, as a chip would stop it. Norse's step order is kept: a node's input at
step t enters its current before its membrane moves (jump, then Euler), a feed-forward edge
carries the sender's output of the same step, a recurrent edge (inhibition) that of step t - 1.

Kernel ridge (`run_kernel_layer`, the section at the end) uses the same search neurons with synapses -p_j
and no gates: every neuron fires once, and leaky label integrators read the kernel from the spike times.

Simulating N neurons per query is exact but wasteful: a neuron of lower similarity than one that
stayed silent stays silent too (the dynamics are the same monotone function of s for every
neuron), so `simulate_search` runs the `candidates` most similar neurons and one sentinel below
them, and reruns the queries whose sentinel fired with twice as many.
"""

from typing import NamedTuple

import numpy as np
import torch

from neurocl.errors import ConfigError, check_finite

INHIBITION = 1e6        # current that silences a search neuron for good (far above gain * steps)
INTEGRATING_TAU = 1e6   # s: an integrating synapse; its decay (dt / 1e6 per step) is below float32's resolution


def fitted_window(temperature: float, label_stages: int) -> float:
    """The window a for which max(0, 1 - x / a)^n is the least-squares match of exp(-x / temperature) on x >= 0
    (n = label_stages): 1.79, 2.79, 3.78, 4.77 temperatures for n = 1 to 4. From the vote's own form, no data."""
    u = (np.arange(4000) + 0.5) / 4000  # midpoints on [0, 1]
    a = np.linspace(0.5, 10.0, 9501)[:, None]  # in temperatures
    n = label_stages
    # integral of ((1 - x/a)^n - e^{-x})^2 = a / (2n + 1) - 2 a int_0^1 (1 - u)^n e^{-a u} du + 1 / 2
    error = a[:, 0] / (2 * n + 1) - 2 * a[:, 0] * ((1 - u) ** n * np.exp(-a * u)).mean(axis=1) + 0.5
    return float(a[error.argmin(), 0] * temperature)


class NetworkParameters(NamedTuple):
    """The end-to-end network's constants; `window` is in similarity units, like the store's temperature."""
    top_k: int = 10            # winners (the store's vote reads its top-k too)
    search_gain: float = 40.0  # search current per unit of similarity above the clock
    ramp_steps: int = 100      # the clock falls by 1 in this many steps: 2 * ramp_steps steps per unit similarity
    window: float = fitted_window(0.1, 4)  # the answer comes this much similarity after the nearest fired (0.477)
    label_stages: int = 4      # integrators in the label chain: the power of the vote's weights
    num_timesteps: int = 500   # at most; similarities below 1 - (num_timesteps - window_steps) / (2 ramp_steps) never fire
    dt: float = 1e-3
    clock_skip: int = 0        # the clock starts this many steps in: u(t) = 1 - (t + clock_skip) / ramp_steps

    @property
    def window_steps(self) -> int:
        return max(1, round(self.window * 2 * self.ramp_steps))


def check_network(p: NetworkParameters) -> NetworkParameters:
    for key, value in (("top_k", p.top_k), ("ramp_steps", p.ramp_steps), ("num_timesteps", p.num_timesteps),
                       ("label_stages", p.label_stages)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"memory.{key}", value, "must be a positive integer", f"leave memory.{key} at its default")
    for key, value in (("search_gain", p.search_gain), ("window", p.window), ("dt", p.dt)):
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"memory.{key}", value, "must be a positive number", f"leave memory.{key} at its default")
    if p.num_timesteps <= p.window_steps:
        raise ConfigError("memory.num_timesteps", p.num_timesteps, f"must exceed the window ({p.window_steps} steps)",
                          "raise memory.num_timesteps or lower memory.window")
    return p


def clock(p: NetworkParameters, dtype=torch.float32, device=None) -> torch.Tensor:
    """(T,) the clock line u(t) = 1 - (t + clock_skip) / ramp_steps."""
    return 1.0 - (torch.arange(p.num_timesteps, dtype=dtype, device=device) + p.clock_skip) / p.ramp_steps


class SearchRecord(NamedTuple):
    first_spike: torch.Tensor   # (B, M) step of each candidate's spike up to the answer, -1: silent
    winners: torch.Tensor       # (B, M) bool: fired by the answer (at most top_k, and ties in the k-th step)
    label_potential: torch.Tensor  # (B, C) label membranes at the answer time
    answer_step: torch.Tensor   # (B,) the end gate's first spike (num_timesteps - 1 if it never fired), -1: silent
    gate_step: torch.Tensor     # (B,) the k-gate's first spike, -1: it never fired

    @property
    def silent(self) -> torch.Tensor:
        return self.answer_step < 0


def run_network(similarities: torch.Tensor, label_weights: torch.Tensor, p: NetworkParameters) -> SearchRecord:
    """Step the network for B queries over M search neurons each.

    similarities: (B, M) p_j . z of each query's simulated neurons; label_weights: (B, M, C) their synapses onto
    the label neurons (or (M, C) shared by all queries). The populations follow Norse's LIF and LI feed-forward
    steps with the parameters in the module docstring, written out so that B x M neurons cost one tensor op each.
    """
    check_finite(similarities, "search similarities")
    B, M = similarities.shape
    shared = label_weights.dim() == 2
    C = label_weights.shape[-1]
    dtype, device = similarities.dtype, similarities.device
    u = clock(p, dtype, device)
    window = p.window_steps
    current = torch.zeros(B, M, dtype=dtype, device=device)      # the search neurons' integrating synapses
    fired = torch.zeros(B, M, dtype=torch.bool, device=device)
    first_spike = torch.full((B, M), -1, dtype=torch.long, device=device)
    count = torch.zeros(B, dtype=dtype, device=device)           # the gates' integrating synapses: spikes so far
    started = torch.zeros(B, dtype=dtype, device=device)          # start-gate spikes so far (end gate's current)
    closed = torch.zeros(B, dtype=torch.bool, device=device)      # the k-gate has fired
    label_current = torch.zeros(B, C, dtype=dtype, device=device)
    label_v = torch.zeros(p.label_stages, B, C, dtype=dtype, device=device)
    label_at_answer = torch.zeros(B, C, dtype=dtype, device=device)  # the last stage's membranes
    answer_step = torch.full((B,), -1, dtype=torch.long, device=device)
    gate_step = torch.full((B,), -1, dtype=torch.long, device=device)
    drive = p.search_gain * similarities
    leak = p.dt / 1.0  # label membranes: tau_mem = 1 s
    spikes = torch.zeros(B, M, dtype=torch.bool, device=device)
    gate_spiked = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(p.num_timesteps):
        # search: current jump (clocked similarity; inhibition by the neuron's own spike and the k-gate's of
        # step t - 1), membrane = current; a spike's inhibition stays in the integrating synapse
        inhibited = spikes | gate_spiked[:, None]
        current = current + drive - p.search_gain * u[t] - INHIBITION * inhibited.to(dtype)
        spikes = (current > 1.0) & ~fired & ~closed[:, None] & (answer_step < 0)[:, None]
        first_spike[spikes] = t
        fired |= spikes
        z = spikes.to(dtype)
        # gates (membrane = integrated count): k-gate at top_k spikes, start at the first, end window steps later
        count = count + z.sum(dim=1)
        gate_spiked = (count > p.top_k - 0.5) & ~closed  # once: its own spike inhibits it for good
        gate_step[gate_spiked] = t
        closed |= gate_spiked
        start = count > 0.5
        started = started + start.to(dtype)
        end = (started > window - 0.5) & (answer_step < 0)
        # labels: integrating synapses from the winners, leaky integrator membranes
        jump = torch.einsum("bm,mc->bc", z, label_weights) if shared else torch.einsum("bm,bmc->bc", z, label_weights)
        label_current = label_current + jump
        label_v[0] = label_v[0] + leak * (-label_v[0] + label_current)
        for stage in range(1, p.label_stages):  # instant synapses: each stage integrates the one before
            label_v[stage] = label_v[stage] + leak * (-label_v[stage] + label_v[stage - 1])
        label_at_answer[end] = label_v[-1, end]
        answer_step[end] = t
        if bool((answer_step >= 0).all()):  # every answer is fixed: nothing later can change one
            break
    last = (answer_step < 0) & fired.any(dim=1)  # fired but the window outlasted the run: answer at the last step
    label_at_answer[last] = label_v[-1, last]
    answer_step[last] = p.num_timesteps - 1
    winners = fired  # a query stops at its answer, and none fires after the k-gate
    return SearchRecord(first_spike, winners, label_at_answer, answer_step, gate_step)


def simulate_search(similarities: torch.Tensor, label_weights: torch.Tensor, p: NetworkParameters,
                    candidates: int | None = None):
    """The network over all N prototypes of each query, simulating only the ones that can fire.

    similarities: (B, N) p_j . z for every prototype; label_weights: (N, C). Returns (record over the simulated
    neurons, their prototype columns (B, M), -1 past a query's own M). Exact: a query whose sentinel (the most
    similar neuron left out) fired is rerun with twice as many candidates, up to all N.
    """
    B, N = similarities.shape
    M = min(N, candidates or 4 * p.top_k)
    pending, parts = torch.arange(B, device=similarities.device), []
    while len(pending):
        sentinel = M < N
        values, columns = similarities[pending].topk(M + sentinel, dim=1)
        record = run_network(values, label_weights[columns], p)
        ok = record.first_spike[:, -1] < 0 if sentinel else torch.ones_like(pending, dtype=torch.bool)
        parts.append((pending[ok], SearchRecord(*(t[ok] for t in record)), columns[ok]))
        pending, M = pending[~ok], min(N, 2 * M)
    width = max(columns.shape[1] for _, _, columns in parts)
    pad = lambda t, value: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
    order = torch.argsort(torch.cat([rows for rows, _, _ in parts]))
    cat = lambda field, value=None: torch.cat([getattr(r, field) if value is None else pad(getattr(r, field), value)
                                               for _, r, _ in parts])[order]
    record = SearchRecord(cat("first_spike", -1), cat("winners", False), cat("label_potential"),
                          cat("answer_step"), cat("gate_step"))
    return record, torch.cat([pad(c, -1) for _, _, c in parts])[order]


# -- kernel ridge as a network -------------------------------------------------------------------------------------
# search  N neurons, one per prototype, synapses -p_j (the clock's sign as above): the LEAST similar fires first,
#         at about t_j = 2 ramp_steps (1 + s_j) - 2 clock_skip; each fires once (self-inhibition).
# label   C leaky integrators behind instant synapses (tau_syn = dt) holding the ridge coefficients alpha_jc, leak
#         per step delta = exp(-1 / (ramp_steps * scale)). Read at the last step, a neuron that fired at t_j has
#         left (1 - delta) alpha_jc delta^(T - 1 - t_j), proportional to alpha_jc exp(2 s_j / scale): the Gaussian
#         kernel exp(-(2 - 2 s_j) / scale) up to a factor shared by every class. The answer is their argmax.


class KernelRecord(NamedTuple):
    fire_step: torch.Tensor       # (B, N) each search neuron's spike step, -1: silent
    label_potential: torch.Tensor  # (B, C) the label membranes at the last step

    @property
    def silent(self) -> torch.Tensor:
        return ~(self.fire_step >= 0).any(dim=1)


def kernel_thresholds(p: NetworkParameters) -> torch.Tensor:
    """(T,) float64: a search neuron of similarity s (synapses -p, integrating synapse, threshold 1) has fired by step
    t exactly when s < thresholds[t] = (sum_{tau <= t} (-u(tau)) - 1 / gain) / (t + 1). Increasing in t."""
    u = clock(p, torch.float64)
    steps = torch.arange(1, p.num_timesteps + 1, dtype=torch.float64)
    return (torch.cumsum(-u, 0) - 1.0 / p.search_gain) / steps


FIRE_MARGIN = 4e-3  # steps: ten times float32's error in the crossing (about 4e-4 steps at 2,000 steps)


def kernel_fire_steps(similarities: torch.Tensor, p: NetworkParameters) -> torch.Tensor:
    """Each search neuron's spike step (num_timesteps: never), the first t with s < thresholds[t]: exactly
    `searchsorted(kernel_thresholds(p), s.double(), right=True)`, at a fraction of its cost. The thresholds are
    -1 + c / R + t / (2R) - 1 / (g (t + 1)) (c = clock_skip, R = ramp_steps, g = search_gain): their crossing
    with s is a quadratic's root, found in float32; where it lies within FIRE_MARGIN of a step, the float64 table
    decides."""
    steps, ramp, gain = p.num_timesteps, float(p.ramp_steps), float(p.search_gain)
    s = similarities.float()
    # x = t + 1 at the crossing solves gain x^2 - 2 gain h x - 2 ramp = 0, h = 1/2 + ramp (s + 1) - clock_skip:
    # x = h + sqrt(h^2 + 2 ramp / gain); the first step past it is floor(x)
    h = s.mul(ramp).add_(0.5 + ramp - p.clock_skip)
    x = h.square().add_(2.0 * ramp / gain).sqrt_().add_(h)
    unsure = torch.nonzero((x - x.round()).abs_().view(-1) < FIRE_MARGIN).squeeze(1)
    fire = x.floor_().clamp_(0, steps).long()
    if len(unsure):  # floor(x) or a step either side: the table says which
        thresholds = kernel_thresholds(p).to(s.device)
        beyond = torch.cat([thresholds, thresholds.new_full((1,), float("inf"))])  # step `steps`: never crossed
        flat, exact = fire.view(-1), s.reshape(-1)[unsure].double()
        near = flat[unsure]
        near += (beyond[near] <= exact).long()
        near -= ((near > 0) & (thresholds[(near - 1).clamp(min=0)] > exact)).long()
        flat[unsure] = near
    return fire


def kernel_decay(p: NetworkParameters, scale: float) -> float:
    """The label integrators' leak per step, delta = exp(-1 / (ramp_steps * scale))."""
    return float(np.exp(-1.0 / (p.ramp_steps * scale)))


def run_kernel_layer(similarities: torch.Tensor, coefficients: torch.Tensor, p: NetworkParameters,
                     scale: float) -> KernelRecord:
    """The kernel network for B queries: similarities (B, N) p_j . z, coefficients (N, C) the label synapses.

    Event-driven and exact: a search neuron sees only its own constant input and the shared clock until it fires
    (then it is silenced), so its spike step is where the clock's threshold passes its similarity; a label membrane
    is linear in the spikes it has received. `nir_graph.run_graph` steps the exported graph instead."""
    check_finite(similarities, "search similarities")
    fire = kernel_fire_steps(similarities, p)
    fired = fire < p.num_timesteps
    delta = kernel_decay(p, scale)
    # what a spike at step t has left at the last step, by step (a table: one power per step, not per synapse);
    # the last entry, for neurons that never fired, is 0
    steps_left = (p.num_timesteps - 1 - torch.arange(p.num_timesteps, dtype=torch.float64))
    left = torch.cat([(1 - delta) * torch.pow(delta, steps_left), torch.zeros(1, dtype=torch.float64)])[fire]
    return KernelRecord(torch.where(fired, fire, -1), (left @ coefficients.double()).to(similarities.dtype))
