"""Behaviour cloning: the shared recurrent agent network as a policy, trained by maximum
likelihood of the dataset's actions over each step's legal actions (masked to the episode)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eaq.env.smax import EnvSpec
from eaq.offline.config import OfflineConfig
from eaq.offline.networks import AgentNet, masked_log_softmax, unroll_agents
from eaq.offline.qmix_cql import take
from eaq.offline.sampler import EpisodeData


def networks(spec: EnvSpec, cfg: OfflineConfig) -> AgentNet:
    return AgentNet(n_actions=spec.n_actions, hidden_dim=cfg.hidden_dim)


def init(key: jax.Array, spec: EnvSpec, cfg: OfflineConfig, state_scale=None) -> tuple[dict, dict]:
    """Returns (params ``{"policy": ...}``, empty target params)."""
    net = networks(spec, cfg)
    n = spec.n_agents
    return {"policy": net.init(key, net.initial_hidden((n,)), jnp.zeros((n, spec.obs_dim + n)))}, {}


def target_of(params: dict) -> dict:
    return {}


def acting_params(params: dict):
    """Greedy acting: argmax of the policy logits over legal actions."""
    return params["policy"]


def loss(params: dict, target_params: dict, batch: EpisodeData, key: jax.Array, spec: EnvSpec, cfg: OfflineConfig):
    net = networks(spec, cfg)
    logits = unroll_agents(net, params["policy"], batch.observations)  # [B, T, N, A]
    logp = take(masked_log_softmax(logits, batch.legals), batch.actions)  # [B, T, N]
    mask = jnp.broadcast_to(batch.mask[..., None], logp.shape).astype(jnp.float32)
    nll = -jnp.sum(mask * logp) / jnp.maximum(mask.sum(), 1.0)
    accuracy = jnp.sum(mask * (jnp.argmax(jnp.where(batch.legals, logits, -jnp.inf), -1) == batch.actions)) / jnp.maximum(mask.sum(), 1.0)
    return nll, {"loss": nll, "accuracy": accuracy}
