"""Whole-episode rollouts in SMAX, vectorised over episodes and scanned over time.

Every policy in the project (random, behaviour, offline learner) is rolled out through
``make_rollout``, so datasets and evaluations share one definition of an episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from eaq.env.smax import SmaxEnv, TimeStep

# policy(params, carry, ts, key) -> (actions [N] int32, new carry); ts holds one env's arrays.
PolicyFn = Callable[[Any, Any, TimeStep, jax.Array], tuple[jax.Array, Any]]


@struct.dataclass
class Episodes:
    """Padded episodes in the project's data layout (E episodes, T = max_steps, N agents).

    observations: [E, T, N, O] f32; state: [E, T, S] f32; actions: [E, T, N] i32;
    legals: [E, T, N, A] bool; rewards: [E, T] f32; terminals, truncations, mask: [E, T] bool;
    won: [E] bool.
    """

    observations: jax.Array
    state: jax.Array
    actions: jax.Array
    legals: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    truncations: jax.Array
    mask: jax.Array
    won: jax.Array


def random_legal_policy(params, carry, ts: TimeStep, key):
    """Uniform over each agent's legal actions."""
    logits = jnp.where(ts.legals, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32), carry


def make_rollout(
    env: SmaxEnv, policy: PolicyFn, init_carry: Callable[[], Any] = lambda: ()
) -> Callable[[Any, jax.Array, int], Episodes]:
    """Returns ``rollout(params, key, n_episodes) -> Episodes`` (jit it; n_episodes static).

    Each episode runs for exactly T steps inside ``lax.scan``; after its ending the env state
    is frozen and the steps are outside the mask.
    """
    T = env.spec.max_steps

    def one_episode(params, key):
        reset_key, key = jax.random.split(key)
        env_state, ts = env.reset(reset_key)

        def body(carry, step_key):
            env_state, ts, pcarry, alive, won = carry
            act_key, env_key = jax.random.split(step_key)
            actions, pcarry = policy(params, pcarry, ts, act_key)
            new_state, out = env.step(env_key, env_state, actions)
            keep = lambda new, old: jnp.where(alive, new, old)  # noqa: E731
            env_state = jax.tree.map(keep, new_state, env_state)
            # Padding after the ending is canonical: zeros, action 0, no legal action.
            record = (
                jnp.where(alive, ts.obs, 0.0),
                jnp.where(alive, ts.state, 0.0),
                jnp.where(alive, actions, 0),
                ts.legals & alive,
                jnp.where(alive, out.reward, 0.0),
                alive & out.terminal,
                alive & out.truncated,
                alive,
            )
            won = won | (alive & out.won)
            ts = jax.tree.map(keep, out.next, ts)
            alive = alive & ~out.done
            return (env_state, ts, pcarry, alive, won), record

        init = (env_state, ts, init_carry(), jnp.array(True), jnp.array(False))
        (_, _, _, _, won), rec = jax.lax.scan(body, init, jax.random.split(key, T))
        return Episodes(*rec, won=won)

    def rollout(params, key, n_episodes: int) -> Episodes:
        keys = jax.random.split(key, n_episodes)
        return jax.vmap(one_episode, in_axes=(None, 0))(params, keys)

    return rollout
