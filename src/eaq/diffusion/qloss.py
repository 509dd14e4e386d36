"""The Q_tot loss of EAQ: push the predicted clean episode toward a high team value.

On the denoiser's predicted clean episode x0_hat (denormalised), each agent's action channels
are relaxed into probabilities with a softmax over its (decoded) legal actions, a frozen QMIX
evaluates ``Q_tot`` along the episode, and

    L_Q = -mean(Q_tot) / stop_gradient(mean |Q_tot|)

over in-episode steps (the scale-free form keeps eta meaningful whatever Q_tot's magnitude).

``target`` says what the gradient of L_Q may move: ``"episode"`` (observations, state and
actions) or ``"actions"`` (observations and state enter Q_tot without gradient). With
"episode", a model trained on 3m Medium learnt to emit states that the frozen Q_tot values
highly but that decode into 1-step, 0-return episodes (docs/diffusion.md); "actions" can only
make the episode's actions better under Q_tot, not its states stranger.

In the ``obs_from_state`` layout the observations and legal actions Q_tot needs are computed
from the predicted state by SMAX's own functions (eaq.env.project), without gradient. With motion
channels and ``positions_from_motion``, Q_tot sees the positions the decoder will build from the
predicted displacements, not the model's own position channels, which the synthetic data does
not keep (before 2026-11-27 it saw the latter; those models' configs read False).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from eaq.diffusion.codec import EpisodeLayout
from eaq.diffusion.config import Q_TARGETS, QTarget
from eaq.env.project import previous_actions, projector

# apply(params, observations [B,T,N,O], action_probs [B,T,N,A], state [B,T,S]) -> q_tot [B,T]
QtotApply = Callable[[object, jax.Array, jax.Array, jax.Array], jax.Array]


def relaxed_episode(
    x0_hat: jax.Array,
    norm_mean: jax.Array,
    norm_scale: jax.Array,
    layout: EpisodeLayout,
    temperature: float,
    target: QTarget = "actions",
    positions_from_motion: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Normalised ``x0_hat: [B, L, C]`` -> (observations [B,T,N,O], action_probs [B,T,N,A],
    state [B,T,S]), differentiable in x0_hat (only through the actions when
    ``target="actions"``).

    The legal-action set used to mask the softmax is read from x0_hat's legal bits without
    gradient; an agent-step with no legal bit set keeps all actions. ``positions_from_motion``
    matters only in a layout with motion channels (see the module docstring).
    """
    if target not in Q_TARGETS:
        raise ValueError(f"q target {target!r} must be one of {Q_TARGETS}")
    x = x0_hat[:, : layout.spec.max_steps]
    raw = layout.split(x * norm_scale + norm_mean)
    bits = layout.split(x)
    state = raw["state"]
    if layout.obs_from_state:
        project = projector(layout.spec.map_name)
        if layout.motion and positions_from_motion:
            state = project.with_positions_from_motion(state, raw["motion"])
        clean, legal, _ = project.view(jax.lax.stop_gradient(state))
        prev = previous_actions(jnp.argmax(bits["action"], axis=-1))
        hint = project.enemy_action_hint(raw["enemy"])
        obs = project.observe(clean, jax.lax.stop_gradient(prev), jax.lax.stop_gradient(hint))
    else:
        legal, obs = bits["legal"] > 0, raw["obs"]
    legal = jax.lax.stop_gradient(legal)
    legal = legal | ~legal.any(axis=-1, keepdims=True)
    logits = jnp.where(legal, bits["action"] / temperature, -1e9)
    if target == "actions":
        obs, state = jax.lax.stop_gradient(obs), jax.lax.stop_gradient(state)
    return obs, jax.nn.softmax(logits, axis=-1), state


def q_loss(
    qtot_apply: QtotApply,
    qtot_params,
    x0_hat: jax.Array,
    mask: jax.Array,
    norm_mean: jax.Array,
    norm_scale: jax.Array,
    layout: EpisodeLayout,
    temperature: float,
    target: QTarget = "actions",
    positions_from_motion: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Returns (L_Q, mean Q_tot) over in-episode steps; ``mask: [B, min(L, T)]``, the steps the
    model generates (padded steps are 0)."""
    obs, probs, state = relaxed_episode(
        x0_hat, norm_mean, norm_scale, layout, temperature, target, positions_from_motion
    )
    q = qtot_apply(qtot_params, obs, probs, state)  # [B, T]
    m = mask.astype(q.dtype)
    n = jnp.maximum(m.sum(), 1.0)
    mean_q = (q * m).sum() / n
    mean_abs = jax.lax.stop_gradient((jnp.abs(q) * m).sum() / n)
    return -mean_q / (mean_abs + 1e-6), mean_q
