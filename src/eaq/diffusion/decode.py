"""Decoding of sampled tensors into episodes, and the validity filter.

Nothing invalid reaches a dataset: ``decode`` marks every broken sample with the reason, and
``to_batch`` keeps only the valid ones and returns how many were dropped for each reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eaq.data.batch import DatasetMeta, EpisodeBatch
from eaq.diffusion.codec import EpisodeLayout, Normaliser
from eaq.env.project import STOP_ACTION, StateProjector, previous_actions, projector
from eaq.env.smax import EnvSpec


@dataclass(frozen=True)
class Decoded:
    """A decoded tensor before validity filtering (E samples, T = the time limit steps; a model
    with a shorter horizon leaves the steps after it as padding).

    arrays: the EpisodeBatch fields ([E, T, ...]); broken: [E] str, '' when valid, else the
    first reason the sample is unusable; raw_legal: [E, T, N] bool, the model's own argmax
    action (ignoring legality) was legal (the legality rate's numerator, in-episode steps);
    from_motion: [E, T, N] bool, the stored action was read off the state's motion and differs
    from the model's own legal choice (all False unless ``actions_from_motion``).
    """

    arrays: dict[str, np.ndarray]
    broken: np.ndarray
    raw_legal: np.ndarray
    from_motion: np.ndarray


def decode(
    x: np.ndarray,
    normaliser: Normaliser,
    spec: EnvSpec,
    project: StateProjector | None = None,
    obs_from_state: bool = False,
    actions_from_motion: bool = False,
    motion: bool = False,
    snap_motion: bool = False,
) -> Decoded:
    """Normalised ``x: [E, L, C]`` -> episode arrays, marking broken samples.

    - actions: argmax of the action channels over the decoded legal actions (legal bit > 0);
    - the episode is cut after the first step whose terminal channel is > 0 or after which the
      alive channel is <= 0 (a real ending); without either it runs to the time limit T (or
      to the end of ``x``, a model with a shorter horizon) and ends in a truncation;
    - mask, rewards, observations, state follow; everything outside the mask is zero padding;
    - rewards are clipped at 0 (SMAX rewards are non-negative);
    - with ``project`` (eaq.env.project), the state is cleaned and the legal actions and the
      observations are recomputed from it by SMAX's own functions (the model's observation
      channels only supply the enemies' previous actions); the episode also ends before a step
      whose state has a team with no unit alive;
    - ``obs_from_state``: ``x`` is in that layout (no observation or legal channels; codec.py),
      which always projects (the enemies' previous actions come from their own channels);
    - ``actions_from_motion`` (needs ``project``): where an ally is alive at t and t + 1, its
      action is made to agree with how its generated position moved (StateProjector.motion):
      the movement action of its displacement if it moved, else the model's most likely legal
      stop or attack. The model's action channels and its states are not tied together (on
      3m it picks out-of-range attacks for 20-30 % of agent-steps while the state shows the
      unit walking), so without this a learner sees actions that did not cause the next state;
    - ``motion``: ``x`` has motion channels (codec.py); every unit's position is rebuilt as its
      first-step position plus its generated displacements (clipped to the map);
    - ``snap_motion`` (needs ``motion``): the generated displacements are first replaced by moves
      SMAX can make (StateProjector.snap_motion: none, or one step in a movement direction, with
      each step's remainder carried into the next), so the rebuilt positions move as SMAX's
      units do and stay within a step of the generated path.

    A sample is broken when it has non-finite values, an in-episode agent with no legal action,
    no first step (alive channel off at t = 0 or, projected, a team with no unit alive), or a return above 1.05 max_return.
    """
    layout = EpisodeLayout(spec, obs_from_state, motion)
    if obs_from_state and project is None:
        project = projector(spec.map_name)
    T = min(x.shape[1], spec.max_steps)  # a model with a shorter horizon generates fewer steps
    x = np.asarray(x, np.float32)[:, :T]
    E = x.shape[0]
    finite = np.isfinite(x).all(axis=(1, 2))
    x = np.where(np.isfinite(x), x, 0.0)
    raw = layout.split(normaliser.denormalise(x))
    bits = layout.split(x)
    state, fighting = raw["state"], np.ones((E, T), bool)
    if snap_motion and not motion:
        raise ValueError("snap_motion snaps the generated motion: it needs a layout with motion channels")
    if motion:  # positions: the first step's, then the generated displacements added up
        moves = project.snap_motion(state, raw["motion"]) if snap_motion else raw["motion"]
        state = project.with_positions_from_motion(state, moves)
    if project is not None:
        state, legal_bits, fighting = map(np.asarray, project.view(state))
    else:
        legal_bits = bits["legal"] > 0

    # An episode ends at its first terminal step, or where its alive channel switches off:
    # in SMAX every ending before the time limit is a real one (win or loss), so a step after
    # which the episode stops is a terminal even when the (one-step, hard to learn) terminal
    # channel missed it.
    stops = (bits["alive"] <= 0) | ~fighting  # [E, T]: no episode continues into this step
    ended = (bits["terminal"] > 0) | np.concatenate(
        [stops[:, 1:], np.zeros((E, 1), bool)], axis=1
    )  # [E, T]: the episode ends after this step
    has_terminal = ended.any(axis=1)
    length = np.where(has_terminal, ended.argmax(axis=1) + 1, T)
    steps = np.arange(T)
    mask = steps[None, :] < length[:, None]
    last = steps[None, :] == (length - 1)[:, None]
    terminals = last & has_terminal[:, None]
    truncations = last & ~has_terminal[:, None]

    legals = legal_bits & mask[..., None, None]
    logits = np.where(legals, bits["action"], -np.inf)
    actions = np.where(legals.any(-1), logits.argmax(-1), 0).astype(np.int32) * mask[..., None]
    raw_choice = bits["action"].argmax(-1)
    raw_legal = np.take_along_axis(legals, raw_choice[..., None], axis=-1)[..., 0] & mask[..., None]
    from_motion = np.zeros_like(raw_legal)
    if actions_from_motion:
        if project is None:
            raise ValueError("actions_from_motion needs the state projection (project=...)")
        moves, known, _ = project.motion(state, mask)
        standing = np.where(legals[..., STOP_ACTION:], bits["action"][..., STOP_ACTION:], -np.inf)
        still = (STOP_ACTION + standing.argmax(-1)).astype(np.int32)
        move_legal = np.take_along_axis(legals, np.maximum(moves, 0)[..., None], axis=-1)[..., 0]
        labelled = np.where(known & (moves >= 0) & move_legal, moves, np.where(known, still, actions))
        from_motion = labelled != actions
        actions = labelled.astype(np.int32)

    rewards = np.clip(raw["reward"], 0.0, None) * mask
    if project is not None:
        hint = project.enemy_action_hint(raw["enemy"]) if obs_from_state else raw["obs"]
        obs = np.asarray(project.observe(state, previous_actions(actions), hint))
    else:
        obs = raw["obs"]
    arrays = {
        "observations": (obs * mask[..., None, None]).astype(np.float32),
        "state": (state * mask[..., None]).astype(np.float32),
        "actions": actions.astype(np.int32),
        "legals": legals,
        "rewards": rewards.astype(np.float32),
        "terminals": terminals,
        "truncations": truncations,
        "mask": mask,
    }

    if T < spec.max_steps:  # episodes are stored over the whole time limit: pad the rest
        pad = ((0, 0), (0, spec.max_steps - T))
        arrays = {k: np.pad(v, pad + ((0, 0),) * (v.ndim - 2)) for k, v in arrays.items()}
        raw_legal, from_motion = (np.pad(a, pad + ((0, 0),)) for a in (raw_legal, from_motion))
    no_legal = (mask[..., None] & ~legals.any(-1)).any(axis=(1, 2))
    empty = stops[:, 0]
    ret = rewards.sum(axis=1)
    bad_return = ret > 1.05 * spec.max_return
    broken = np.full(E, "", dtype=object)
    # Reasons in priority order; a sample is counted once, under its first problem.
    for flag, why in (
        (bad_return, "implausible return"),
        (empty, "empty episode"),
        (no_legal, "agent without a legal action"),
        (~finite, "non-finite values"),
    ):
        broken = np.where(flag, why, broken)
    return Decoded(arrays=arrays, broken=broken.astype(str), raw_legal=raw_legal, from_motion=from_motion)


def to_batch(decoded: Decoded, meta: DatasetMeta) -> tuple[EpisodeBatch, dict[str, int]]:
    """Keeps the valid samples; returns (batch of them, {reason: count} of those dropped)."""
    keep = decoded.broken == ""
    reasons, counts = np.unique(decoded.broken[~keep], return_counts=True)
    dropped = {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}
    arrays = {k: v[keep] for k, v in decoded.arrays.items()}
    return EpisodeBatch.from_arrays(arrays, meta), dropped
