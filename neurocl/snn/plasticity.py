"""Reward-modulated STDP, a pure functional rule in the manner of Norse's `stdp_step_linear`.

Norse has no reward-modulated rule; this one keeps Norse's conventions (typed
parameter and state tuples, a step function that returns the new state) and
adds an eligibility trace that a later reward turns into a weight change
(three-factor learning, Izhikevich 2007; Fremaux & Gerstner 2016).

Per step, with spikes z in {0, 1} and a batch of B queries:

    x_pre  <- x_pre  - dt / tau_pre  * x_pre  + a_pre  * z_pre          (B, N_pre)
    x_post <- x_post - dt / tau_post * x_post + a_post * z_post         (B, N_post)
    e      <- e - dt / tau_e * e
              + eta_plus  * z_post (x) x_pre     (pre before post: potentiation)
              - eta_minus * x_post (x) z_pre     (post before pre: depression)   (B, N_post, N_pre)

and once a query's outcome is known (reward r_b, e.g. +1 right, -1 wrong):

    w <- clip(w + lr * sum_b r_b e_b, w_min, w_max)      (reward_modulation: true; r_b may also be
                                                          r_b,post: one reward per postsynaptic neuron)
    w <- clip(w + lr * sum_b e_b,     w_min, w_max)      (false: plain STDP; a teacher drives z_post)

optionally followed by normalisation of each postsynaptic neuron's incoming
weights to at most `max_incoming` (L1). Where neither side spiked, e stays 0,
so only synapses of active neurons change.
"""

from typing import NamedTuple

import torch

from neurocl.errors import ConfigError


class RewardSTDPParameters(NamedTuple):
    tau_pre_inv: float = 1 / 5e-3     # 1/s: presynaptic trace decay
    tau_post_inv: float = 1 / 5e-3    # 1/s: postsynaptic trace decay
    tau_eligibility_inv: float = 1 / 20e-3  # 1/s: eligibility decay
    a_pre: float = 1.0                # trace increment per presynaptic spike
    a_post: float = 1.0               # trace increment per postsynaptic spike
    eta_plus: float = 1.0             # weight of potentiation in the eligibility
    eta_minus: float = 1.0            # weight of depression in the eligibility
    lr: float = 0.01                  # stdp_lr: step size of the weight change
    w_min: float = 0.0
    w_max: float = 1.0
    max_incoming: float | None = None  # L1 bound on each postsynaptic neuron's incoming weights
    reward_modulation: bool = True
    dt: float = 1e-3                  # s per step


class RewardSTDPState(NamedTuple):
    trace_pre: torch.Tensor    # (B, N_pre)
    trace_post: torch.Tensor   # (B, N_post)
    eligibility: torch.Tensor  # (B, N_post, N_pre)


def check_parameters(p: RewardSTDPParameters) -> RewardSTDPParameters:
    if not p.w_min < p.w_max:
        raise ConfigError("memory.plasticity.w_min", p.w_min, f"must be below w_max={p.w_max}", "set w_min=0, w_max=1")
    if p.lr < 0:
        raise ConfigError("memory.stdp_lr", p.lr, "must be non-negative", "set memory.stdp_lr=0.01")
    for name in ("tau_pre_inv", "tau_post_inv", "tau_eligibility_inv"):
        if getattr(p, name) * p.dt > 1 or getattr(p, name) < 0:
            raise ConfigError(f"memory.plasticity.{name}", getattr(p, name), "must be in [0, 1/dt] (a stable decay)",
                              "use time constants of at least one step")
    if p.max_incoming is not None and p.max_incoming <= 0:
        raise ConfigError("memory.plasticity.max_incoming", p.max_incoming, "must be positive or null", "set it to null")
    return p


def reward_stdp_initial_state(batch: int, n_pre: int, n_post: int, like: torch.Tensor | None = None) -> RewardSTDPState:
    kwargs = {"dtype": like.dtype, "device": like.device} if like is not None else {}
    return RewardSTDPState(torch.zeros(batch, n_pre, **kwargs), torch.zeros(batch, n_post, **kwargs),
                           torch.zeros(batch, n_post, n_pre, **kwargs))


def reward_stdp_step(z_pre: torch.Tensor, z_post: torch.Tensor, state: RewardSTDPState,
                     p: RewardSTDPParameters = RewardSTDPParameters()) -> RewardSTDPState:
    """Advance traces and eligibility by one step; spikes are (B, N_pre) and (B, N_post)."""
    # Depression pairs a presynaptic spike with the postsynaptic trace *before* this step's post spike,
    # potentiation a postsynaptic spike with the presynaptic trace *including* this step's pre spike.
    trace_pre = state.trace_pre * (1 - p.dt * p.tau_pre_inv) + p.a_pre * z_pre
    depression = p.eta_minus * state.trace_post.unsqueeze(2) * z_pre.unsqueeze(1)
    trace_post = state.trace_post * (1 - p.dt * p.tau_post_inv) + p.a_post * z_post
    potentiation = p.eta_plus * z_post.unsqueeze(2) * trace_pre.unsqueeze(1)
    eligibility = state.eligibility * (1 - p.dt * p.tau_eligibility_inv) + potentiation - depression
    return RewardSTDPState(trace_pre, trace_post, eligibility)


def reward_stdp_change(state: RewardSTDPState, reward: torch.Tensor,
                       p: RewardSTDPParameters = RewardSTDPParameters()) -> torch.Tensor:
    """Each query's weight change (B, N_post, N_pre) once its reward is known: one per query (B,), a global
    reward, or one per postsynaptic neuron (B, N_post), a reward per neuron (each output learns from its own
    outcome, as in the per-output teaching signals of three-factor rules, Fremaux & Gerstner 2016)."""
    if not p.reward_modulation:
        return p.lr * state.eligibility
    reward = reward.to(state.eligibility.dtype)
    return p.lr * (reward[:, :, None] if reward.ndim == 2 else reward[:, None, None]) * state.eligibility


def bound_weights(w: torch.Tensor, p: RewardSTDPParameters = RewardSTDPParameters()) -> torch.Tensor:
    """Hard bounds, then at most `max_incoming` (L1) into each postsynaptic neuron (a row of w)."""
    w = torch.clamp(w, p.w_min, p.w_max)
    if p.max_incoming is not None:
        incoming = w.abs().sum(dim=-1, keepdim=True)
        w = w * torch.clamp(p.max_incoming / incoming.clamp(min=1e-12), max=1.0)
    return w


def reward_stdp_update(w: torch.Tensor, state: RewardSTDPState, reward: torch.Tensor,
                       p: RewardSTDPParameters = RewardSTDPParameters()) -> torch.Tensor:
    """Shared weights (N_post, N_pre) after the batch's rewards, (B,) or (B, N_post), act on its eligibility traces."""
    return bound_weights(w + reward_stdp_change(state, reward, p).sum(dim=0), p)
