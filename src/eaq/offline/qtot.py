"""A trained QMIX(+CQL) as a frozen, differentiable ``Q_tot`` over whole episodes.

The EAQ diffusion model calls it on decoded episodes whose actions are relaxed to probability
vectors: each agent's value is the expectation of its Q-values under those probabilities,
``Q_i = sum_a p_i(a) Q_i(o_{<=t}, a)``, and the monotonic mixer combines the ``Q_i`` with the
state. On one-hot actions this is exactly the learner's own ``Q_tot`` of those actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from eaq.env.smax import EnvSpec
from eaq.offline.config import OfflineConfig
from eaq.offline.networks import AgentNet, QMixer, unroll_agents


@dataclass(frozen=True, eq=False)
class QtotFunction:
    """Frozen Q_tot. ``apply`` is pure, jit-able and differentiable in every input.

    spec: the map it was trained on; params: ``{"agent": ..., "mixer": ...}``; config: the
    training config (network sizes).
    """

    spec: EnvSpec
    params: Any
    config: OfflineConfig

    def apply(self, params, observations: jax.Array, action_probs: jax.Array, state: jax.Array) -> jax.Array:
        """Q_tot per step.

        observations: [B, T, N, O]; action_probs: [B, T, N, A] (rows are probability vectors,
        e.g. a softmax or one-hot); state: [B, T, S] -> q_tot: [B, T]. The recurrent agent
        network runs along T from a zero hidden state at t = 0.
        """
        agent = AgentNet(n_actions=self.spec.n_actions, hidden_dim=self.config.hidden_dim)
        mixer = QMixer(n_agents=self.spec.n_agents, state_dim=self.spec.state_dim, embed_dim=self.config.mixer_embed_dim, hypernet_dim=self.config.hypernet_dim)
        q = unroll_agents(agent, params["agent"], observations)  # [B, T, N, A]
        agent_q = jnp.sum(action_probs * q, axis=-1)  # [B, T, N]
        return mixer.apply(params["mixer"], agent_q, state)

    def __call__(self, observations: jax.Array, action_probs: jax.Array, state: jax.Array) -> jax.Array:
        """``apply(self.params, ...)`` with the parameters held constant (no gradient to them)."""
        frozen = jax.tree.map(jax.lax.stop_gradient, self.params)
        return self.apply(frozen, observations, action_probs, state)


def qtot_from_params(spec: EnvSpec, config: OfflineConfig, params: dict) -> QtotFunction:
    """A QtotFunction from a QMIX+CQL learner's parameters (e.g. ``TrainResult.params``)."""
    if config.learner != "qmix-cql":
        raise ValueError(f"Q_tot needs a qmix-cql learner, got {config.learner!r}")
    params = {"agent": params["agent"], "mixer": params["mixer"]}
    return QtotFunction(spec=spec, params=jax.device_put(params), config=config)


def load_qtot(checkpoint_dir: Path | str, step: int | None = None) -> QtotFunction:
    """Loads the latest (or given) checkpoint of a ``train-offline --learner qmix-cql`` run.

    Raises FileNotFoundError for a missing directory and ValueError for a directory that is not
    a training run or holds another learner's checkpoint.
    """
    from eaq.offline.train import load_checkpoint, read_run_record

    record = read_run_record(Path(checkpoint_dir))
    if record.get("learner") != "qmix-cql":
        raise ValueError(
            f"{checkpoint_dir}: checkpoint was trained by learner {record.get('learner')!r}; "
            "Q_tot needs a 'qmix-cql' checkpoint"
        )
    ckpt = load_checkpoint(checkpoint_dir, step)
    return qtot_from_params(ckpt.spec, ckpt.config, ckpt.params)
