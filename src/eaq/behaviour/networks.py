"""Actor-critic networks for the behaviour policies (shared across agents, one-hot agent id).

The actor works on sequences so the feed-forward and the recurrent (GRU) actor share one
training loop: inputs are ``[T, B, ...]`` where B = environments x agents.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Masked logits use a large finite negative (not -inf) so entropy and log-probs stay finite.
ILLEGAL_LOGIT = -1e9


def masked_logits(logits: jax.Array, legals: jax.Array) -> jax.Array:
    """Illegal actions get (effectively) zero probability. logits, legals: [..., A]."""
    return jnp.where(legals, logits, ILLEGAL_LOGIT)


def with_agent_ids(obs: jax.Array) -> jax.Array:
    """Appends each agent's one-hot id: obs [..., N, O] -> [..., N, O + N]."""
    n = obs.shape[-2]
    ids = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-1] + (n,))
    return jnp.concatenate([obs, ids], axis=-1)


class ResettingGRU(nn.Module):
    """A GRU scanned over time whose hidden state is zeroed where ``resets`` is set.

    hidden: [B, H]; inputs = (x [T, B, F], resets [T, B] bool: a new episode starts here).
    """

    hidden_dim: int

    @functools.partial(
        nn.scan, variable_broadcast="params", in_axes=0, out_axes=0, split_rngs={"params": False}
    )
    @nn.compact
    def __call__(self, hidden, inputs):
        x, reset = inputs
        hidden = jnp.where(reset[:, None], jnp.zeros_like(hidden), hidden)
        hidden, y = nn.GRUCell(features=self.hidden_dim)(hidden, x)
        return hidden, y


def _dense(features: int, scale: float = float(np.sqrt(2))) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale))


class ActorCritic(nn.Module):
    """Shared actor and critic over one agent's observation plus its one-hot id (IPPO).

    ``actor(hidden [B, H], obs [T, B, D], resets [T, B], legals [T, B, A])`` returns
    ``(hidden [B, H], masked logits [T, B, A])``; ``critic(obs [..., D]) -> value [...]``.
    With ``recurrent=False`` the hidden state is a [B, 1] placeholder passed through unchanged.
    """

    n_actions: int
    hidden_dim: int = 128
    recurrent: bool = False
    gru_dim: int = 64

    def setup(self):
        self.actor_in = _dense(self.hidden_dim)
        if self.recurrent:
            self.gru = ResettingGRU(self.gru_dim)
        self.actor_mid = _dense(self.hidden_dim)
        self.actor_out = _dense(self.n_actions, 0.01)
        self.critic_1 = _dense(self.hidden_dim)
        self.critic_2 = _dense(self.hidden_dim)
        self.critic_out = _dense(1, 1.0)

    def actor(self, hidden, obs, resets, legals):
        x = nn.relu(self.actor_in(obs))
        if self.recurrent:
            hidden, x = self.gru(hidden, (x, resets))
        x = nn.relu(self.actor_mid(x))
        return hidden, masked_logits(self.actor_out(x), legals)

    def critic(self, obs):
        v = nn.relu(self.critic_1(obs))
        v = nn.relu(self.critic_2(v))
        return self.critic_out(v)[..., 0]

    def __call__(self, hidden, obs, resets, legals):
        hidden, logits = self.actor(hidden, obs, resets, legals)
        return hidden, logits, self.critic(obs)

    def hidden_size(self) -> int:
        return self.gru_dim if self.recurrent else 1
