"""QMIX + CQL (OG-MARL's recipe): shared recurrent agent Q-network with agent id, monotonic
mixer on the global state, double-Q targets from a hard-updated target network, and a
conservative term that pushes down Q_tot of random legal joint actions relative to the data's.

Loss per batch of whole episodes (masked; a truncated last step has no target and is skipped,
it is never a terminal):
    y_t   = r_t + gamma * (1 - terminal_t) * Q_tot^target(s_{t+1}, argmax_legal Q(o_{t+1}))
    TD    = mean (Q_tot(s_t, a_t) - y_t)^2
    CQL   = mean [ logsumexp_{a in {a_t, K random legal joint actions}} Q_tot(s_t, a) - Q_tot(s_t, a_t) ]
    loss  = TD + cql_weight * CQL
With ``cql_on_synthetic=False`` the CQL mean runs over real episodes' steps only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eaq.env.smax import EnvSpec
from eaq.offline.config import OfflineConfig
from eaq.offline.networks import (
    AgentNet,
    QMixer,
    masked_argmax,
    stack_params,
    unroll_agents,
    unroll_agents_stacked,
    with_state_scale,
)
from eaq.offline.sampler import EpisodeData, next_step_valid, shift_left


def networks(spec: EnvSpec, cfg: OfflineConfig) -> tuple[AgentNet, QMixer]:
    return (
        AgentNet(n_actions=spec.n_actions, hidden_dim=cfg.hidden_dim),
        QMixer(n_agents=spec.n_agents, state_dim=spec.state_dim, embed_dim=cfg.mixer_embed_dim, hypernet_dim=cfg.hypernet_dim),
    )


def init(key: jax.Array, spec: EnvSpec, cfg: OfflineConfig, state_scale=None) -> tuple[dict, dict]:
    """Returns (params, target_params), each ``{"agent": ..., "mixer": ...}``."""
    agent, mixer = networks(spec, cfg)
    k1, k2 = jax.random.split(key)
    n = spec.n_agents
    x = jnp.zeros((n, spec.obs_dim + n))
    params = {
        "agent": agent.init(k1, agent.initial_hidden((n,)), x),
        "mixer": with_state_scale(mixer.init(k2, jnp.zeros((n,)), jnp.zeros((spec.state_dim,))), state_scale),
    }
    return params, params


def acting_params(params: dict):
    """The agent-network parameters that choose actions (greedy over legal Q-values)."""
    return params["agent"]


def take(q: jax.Array, actions: jax.Array) -> jax.Array:
    """``q: [..., A], actions: [...] -> q[..., actions]`` (leading axes of actions broadcast).

    A one-hot product rather than a gather: its gradient is dense (no scatter), which is much
    faster on CPU and just as fast on accelerators.
    """
    return jnp.sum(jax.nn.one_hot(actions, q.shape[-1], dtype=q.dtype) * q, axis=-1)


def q_tot_of_actions(spec: EnvSpec, cfg: OfflineConfig, params: dict, observations, actions, state):
    """The learner's own Q_tot of given discrete actions.

    observations: [B, T, N, O]; actions: [B, T, N] int32; state: [B, T, S] -> [B, T].
    """
    agent, mixer = networks(spec, cfg)
    q = unroll_agents(agent, params["agent"], observations)
    return mixer.apply(params["mixer"], take(q, actions), state)


def loss(params: dict, target_params: dict, batch: EpisodeData, key: jax.Array, spec: EnvSpec, cfg: OfflineConfig):
    agent, mixer = networks(spec, cfg)
    # Online and target agent networks share one scan over time.
    both = unroll_agents_stacked(agent, stack_params(params["agent"], target_params["agent"]), batch.observations)
    q, target_q = both[0], jax.lax.stop_gradient(both[1])  # [B, T, N, A]
    w = mixer.apply(params["mixer"], batch.state, method=QMixer.hyper)
    q_tot = mixer.apply(params["mixer"], w, take(q, batch.actions), method=QMixer.mix)  # [B, T]

    # Double Q: the online network picks the next legal action, the target network values it.
    next_actions = masked_argmax(jax.lax.stop_gradient(shift_left(q)), shift_left(batch.legals))
    next_q_tot = mixer.apply(
        target_params["mixer"], take(shift_left(target_q), next_actions), shift_left(batch.state)
    )
    y = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * next_q_tot
    y = jax.lax.stop_gradient(y)
    valid = next_step_valid(batch).astype(jnp.float32)
    td_loss = jnp.sum(valid * (q_tot - y) ** 2) / jnp.maximum(valid.sum(), 1.0)

    # CQL over legal joint actions: K random legal joint actions per step, mixed like the data's
    # (one hypernetwork pass serves all K).
    any_legal = jnp.any(batch.legals, axis=-1, keepdims=True)
    logits = jnp.where(jnp.where(any_legal, batch.legals, True), 0.0, -jnp.inf)
    ood = jax.random.categorical(key, logits, shape=(cfg.cql_ood_actions,) + batch.actions.shape)
    ood_q = take(q, ood)  # [K, B, T, N]
    ood_q_tot = mixer.apply(params["mixer"], w, ood_q, method=QMixer.mix)  # [K, B, T]
    all_q_tot = jnp.concatenate([ood_q_tot, q_tot[None]], axis=0)
    mask = batch.mask.astype(jnp.float32)
    cql = jax.nn.logsumexp(all_q_tot, axis=0) - q_tot
    anchor = mask if cfg.cql_on_synthetic else mask * ~batch.synthetic[:, None]  # steps whose actions CQL supports
    cql_loss = jnp.sum(anchor * cql) / jnp.maximum(anchor.sum(), 1.0)

    total = td_loss + cfg.cql_weight * cql_loss
    mean_q = jnp.sum(mask * q_tot) / jnp.maximum(mask.sum(), 1.0)
    return total, {"loss": total, "td_loss": td_loss, "cql_loss": cql_loss, "mean_q_tot": mean_q}


def target_of(params: dict) -> dict:
    """The parameters the target network copies (all of them)."""
    return params
