"""MA-ICQ (multi-agent Implicit Constraint Q-learning, Yang et al. 2021), trust-region form.

Only actions that appear in the data are ever evaluated, which avoids extrapolation error:

* Critic: shared recurrent agent Q-network + QMIX mixer, trained towards an in-sample target
  that uses the dataset's *next* joint action, re-weighted by importance weights
  ``softmax(Q_tot^target(s', a') / beta_c)`` over the batch (scaled to mean 1):
      y_t = r_t + gamma * (1 - terminal_t) * w_{t+1} * Q_tot^target(s_{t+1}, a_{t+1})
  (one-step target; the paper's TD(lambda) is left out for simplicity).
* Policy: a separate shared recurrent policy network, trained by advantage-weighted behaviour
  cloning: ``adv_i = Q_i(o, a_i) - sum_a pi(a|o) Q_i(o, a)`` and weights
  ``softmax(adv / beta_p)`` over the batch's valid agent-steps (scaled to mean 1).

A truncated last step has no stored next step and is dropped from the critic loss; it is never
treated as terminal. Greedy acting uses the policy's logits over legal actions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eaq.env.smax import EnvSpec
from eaq.offline.config import OfflineConfig
from eaq.offline.networks import (
    masked_log_softmax,
    stack_params,
    unroll_agents_stacked,
    with_state_scale,
)
from eaq.offline.qmix_cql import networks, take
from eaq.offline.sampler import EpisodeData, next_step_valid, shift_left


def init(key: jax.Array, spec: EnvSpec, cfg: OfflineConfig, state_scale=None) -> tuple[dict, dict]:
    """Returns (params ``{"policy", "critic", "mixer"}``, target ``{"critic", "mixer"}``)."""
    net, mixer = networks(spec, cfg)
    k1, k2, k3 = jax.random.split(key, 3)
    n = spec.n_agents
    h, x = net.initial_hidden((n,)), jnp.zeros((n, spec.obs_dim + n))
    params = {
        "policy": net.init(k1, h, x),
        "critic": net.init(k2, h, x),
        "mixer": with_state_scale(mixer.init(k3, jnp.zeros((n,)), jnp.zeros((spec.state_dim,))), state_scale),
    }
    return params, target_of(params)


def target_of(params: dict) -> dict:
    return {"critic": params["critic"], "mixer": params["mixer"]}


def acting_params(params: dict):
    return params["policy"]


def _batch_softmax_weights(scores: jax.Array, valid: jax.Array, beta: float) -> jax.Array:
    """exp(score / beta) normalised over the valid entries to mean 1 (zero elsewhere)."""
    z = jnp.where(valid, scores / beta, -jnp.inf)
    w = jax.nn.softmax(z.reshape(-1)).reshape(scores.shape)
    return jnp.where(valid, w * valid.sum(), 0.0)


def loss(params: dict, target_params: dict, batch: EpisodeData, key: jax.Array, spec: EnvSpec, cfg: OfflineConfig):
    net, mixer = networks(spec, cfg)
    mask = batch.mask
    n_mask = jnp.maximum(mask.sum(), 1)

    # ---- critic (in-sample, importance-weighted target)
    # Policy, critic and target critic share one scan over time.
    stacked = stack_params(params["policy"], params["critic"], target_params["critic"])
    logits, q, tq = unroll_agents_stacked(net, stacked, batch.observations)  # 3 x [B, T, N, A]
    tq = jax.lax.stop_gradient(tq)
    q_taken = take(q, batch.actions)
    q_tot = mixer.apply(params["mixer"], q_taken, batch.state)  # [B, T]
    tq_tot = mixer.apply(target_params["mixer"], take(tq, batch.actions), batch.state)
    next_tq_tot = shift_left(tq_tot)
    next_valid = shift_left(mask)
    w_next = _batch_softmax_weights(next_tq_tot, next_valid, cfg.icq_critic_beta)
    y = jax.lax.stop_gradient(batch.rewards + cfg.gamma * (1.0 - batch.terminals) * w_next * next_tq_tot)
    valid = next_step_valid(batch).astype(jnp.float32)
    critic_loss = jnp.sum(valid * (q_tot - y) ** 2) / jnp.maximum(valid.sum(), 1.0)

    # ---- policy (advantage-weighted cloning of in-sample actions)
    logp_all = masked_log_softmax(logits, batch.legals)
    pi = jax.lax.stop_gradient(jnp.exp(logp_all))
    q_sg = jax.lax.stop_gradient(q)
    adv = take(q_sg, batch.actions) - jnp.sum(pi * q_sg, axis=-1)  # [B, T, N]
    agent_valid = jnp.broadcast_to(mask[..., None], adv.shape)
    w = jax.lax.stop_gradient(_batch_softmax_weights(adv, agent_valid, cfg.icq_policy_beta))
    logp = take(logp_all, batch.actions)
    policy_loss = -jnp.sum(w * logp) / jnp.maximum(agent_valid.sum(), 1)

    total = critic_loss + policy_loss
    mean_q = jnp.sum(mask * q_tot) / n_mask
    return total, {"loss": total, "critic_loss": critic_loss, "policy_loss": policy_loss, "mean_q_tot": mean_q}
