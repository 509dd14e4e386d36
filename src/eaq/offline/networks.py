"""Networks shared by the offline learners.

* ``AgentNet``: one recurrent network shared by all agents (parameter sharing). Its input is
  the agent's observation concatenated with a one-hot agent id; Dense -> ReLU -> GRU -> Dense
  gives one score per action (Q-values for QMIX / MA-ICQ's critic, logits for policies).
* ``QMixer``: the QMIX monotonic mixer. Hypernetworks conditioned on the global state produce
  non-negative mixing weights, so ``dQ_tot / dQ_i >= 0``.

``unroll_agents`` runs the agent network over whole padded episodes ``[B, T, N, O]`` with one
``lax.scan`` over time (episodes always start at t = 0, so the hidden state starts at zero).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def with_agent_id(obs: jax.Array) -> jax.Array:
    """``obs: [..., N, O] -> [..., N, O + N]`` with a one-hot agent id appended."""
    n = obs.shape[-2]
    eye = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-1] + (n,))
    return jnp.concatenate([obs, eye], axis=-1)


class AgentNet(nn.Module):
    """One step of the shared recurrent agent network.

    ``__call__(hidden [..., H], obs_with_id [..., O + N]) -> (hidden [..., H], scores [..., A])``.
    """

    n_actions: int
    hidden_dim: int = 64

    @nn.compact
    def __call__(self, hidden: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = nn.relu(nn.Dense(self.hidden_dim, name="embed")(x))
        hidden, x = nn.GRUCell(self.hidden_dim, name="gru")(hidden, x)
        return hidden, nn.Dense(self.n_actions, name="head")(x)

    def initial_hidden(self, batch_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(batch_shape + (self.hidden_dim,), jnp.float32)


def unroll_agents(net: AgentNet, params, observations: jax.Array) -> jax.Array:
    """Scores along whole episodes.

    observations: [B, T, N, O] -> scores [B, T, N, A]. The hidden state starts at zero at t = 0.
    """
    x = with_agent_id(observations)
    x_tm = jnp.swapaxes(x, 0, 1)  # [T, B, N, O + N]: scan over time

    def step(h, x_t):
        h, q = net.apply(params, h, x_t)
        return h, q

    h0 = net.initial_hidden(x_tm.shape[1:3])
    _, scores = jax.lax.scan(step, h0, x_tm)
    return jnp.swapaxes(scores, 0, 1)


def unroll_agents_stacked(net: AgentNet, stacked_params, observations: jax.Array) -> jax.Array:
    """Several parameter sets of the same network along episodes in one scan.

    stacked_params: a pytree whose leaves have a leading axis P (``stack_params``);
    observations: [B, T, N, O] -> scores [P, B, T, N, A]. One scan instead of P halves the
    sequential work of, e.g., the online and target networks.
    """
    x_tm = jnp.swapaxes(with_agent_id(observations), 0, 1)  # [T, B, N, O + N]
    n_sets = jax.tree.leaves(stacked_params)[0].shape[0]
    apply = jax.vmap(net.apply, in_axes=(0, 0, None))

    def step(h, x_t):
        return apply(stacked_params, h, x_t)

    h0 = net.initial_hidden((n_sets,) + x_tm.shape[1:3])
    _, scores = jax.lax.scan(step, h0, x_tm)  # [T, P, B, N, A]
    return jnp.moveaxis(scores, 0, 2)


def stack_params(*params):
    """Stacks parameter pytrees of one network along a new leading axis."""
    return jax.tree.map(lambda *x: jnp.stack(x), *params)


class QMixer(nn.Module):
    """QMIX monotonic mixing network for ``n_agents`` agents and a ``state_dim`` state.

    ``__call__(agent_qs [..., N], state [..., S]) -> q_tot [...]``. The weights applied to the
    agent Q-values are absolute values of hypernetwork outputs, so Q_tot is monotone in each Q_i.
    ``hyper(state)`` and ``mix(weights, agent_qs)`` split the two halves so that many joint
    actions can be mixed with one hypernetwork pass (CQL's sampled actions).

    SMAX's world state mixes unit-scale features with raw positions (up to ~32), so the state is
    divided by a per-feature ``state_scale`` kept in the parameters but never trained (its
    gradient is stopped); the learners set it from the training data at initialisation.
    """

    n_agents: int
    state_dim: int
    embed_dim: int = 32
    hypernet_dim: int = 64

    def setup(self):
        n, e, h = self.n_agents, self.embed_dim, self.hypernet_dim
        self.state_scale = self.param("state_scale", nn.initializers.ones, (self.state_dim,))
        self.hyper_w1 = nn.Sequential([nn.Dense(h), nn.relu, nn.Dense(n * e)])
        self.hyper_b1 = nn.Dense(e)
        self.hyper_w2 = nn.Sequential([nn.Dense(h), nn.relu, nn.Dense(e)])
        self.value = nn.Sequential([nn.Dense(e), nn.relu, nn.Dense(1)])

    def __call__(self, agent_qs: jax.Array, state: jax.Array) -> jax.Array:
        return self.mix(self.hyper(state), agent_qs)

    def hyper(self, state: jax.Array) -> dict[str, jax.Array]:
        """Mixing weights from ``state [..., S]``: w1 [..., N, E] >= 0, b1 [..., E], w2 [..., E] >= 0, v [...]."""
        state = state / jax.lax.stop_gradient(self.state_scale)
        w1 = jnp.abs(self.hyper_w1(state)).reshape(state.shape[:-1] + (self.n_agents, self.embed_dim))
        return {
            "w1": w1,
            "b1": self.hyper_b1(state),
            "w2": jnp.abs(self.hyper_w2(state)),
            "v": self.value(state)[..., 0],
        }

    def mix(self, w: dict[str, jax.Array], agent_qs: jax.Array) -> jax.Array:
        """``agent_qs: [K..., ..., N]`` (extra leading axes broadcast against w) -> ``[K..., ...]``."""
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", agent_qs, w["w1"]) + w["b1"])
        return jnp.sum(hidden * w["w2"], axis=-1) + w["v"]


def masked_argmax(scores: jax.Array, legals: jax.Array) -> jax.Array:
    """Argmax over legal actions: ``scores, legals: [..., A] -> [...] int32``.

    Rows without a legal action (padding) return action 0.
    """
    return jnp.argmax(jnp.where(legals, scores, -jnp.inf), axis=-1).astype(jnp.int32)


def masked_log_softmax(logits: jax.Array, legals: jax.Array) -> jax.Array:
    """Log-probabilities over legal actions (illegal -> a large negative number, finite).

    Rows without a legal action (padding) fall back to all actions so nothing is NaN.
    """
    any_legal = jnp.any(legals, axis=-1, keepdims=True)
    allowed = jnp.where(any_legal, legals, True)
    return jax.nn.log_softmax(jnp.where(allowed, logits, -1e9), axis=-1)


def with_state_scale(mixer_params: dict, state_scale) -> dict:
    """Mixer parameters with ``state_scale`` replaced (``None`` keeps them unchanged)."""
    if state_scale is None:
        return mixer_params
    inner = dict(mixer_params["params"])
    inner["state_scale"] = jnp.asarray(state_scale, jnp.float32).reshape(inner["state_scale"].shape)
    return {**mixer_params, "params": inner}


def state_scale_from_data(state, mask) -> jax.Array:
    """Per-feature scale of the state: max |value| over in-episode steps, at least 1.

    state: [E, T, S]; mask: [E, T] -> [S].
    """
    import numpy as np

    s = np.abs(np.asarray(state))[np.asarray(mask)]
    return jnp.asarray(np.maximum(s.max(axis=0) if s.size else 1.0, 1.0), jnp.float32)
