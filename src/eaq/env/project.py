"""What SMAX itself would show for a given world state: observations, legal actions, state.

A synthetic episode is generated channel by channel, so nothing ties its per-agent observations
and legal actions to its global state. In SMAX they are functions of the state (plus the
previous step's actions, which every unit's observation of its allies includes), so they can be
*recomputed* with JaxMARL's own observation, world-state and availability functions. This module
rebuilds a JaxMARL ``State`` from the world-state vector and calls them.

The one thing the world state does not hold is the enemies' previous actions, which allies see
(``see_enemy_actions``); those observation slots keep the values given in ``obs_hint`` wherever
the enemy is visible (``enemy_actions`` reads them out of observations, 3 per enemy, and
``enemy_action_hint`` puts them back). On real data the projection reproduces the stored
observations, states and legal actions exactly (tested), so it changes only what is inconsistent.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eaq.env.smax import SmaxEnv, quiet_stdout

_HALF_HIT_POINT = 0.5
"""A unit counts as alive when it has at least half a hit point (real data: 0 when dead)."""


STOP_ACTION = 4
"""SMAX's stop action: it decodes to no movement and no attack, as after a reset."""


def previous_actions(actions):
    """``actions: [E, T, N]`` (numpy or jax) -> the actions of the step before each step
    ([E, T, N]; stop at t = 0, which is what SMAX's observation shows after a reset)."""
    xp = jnp if isinstance(actions, jax.Array) else np
    first = xp.full_like(actions[:, :1], STOP_ACTION)
    return xp.concatenate([first, actions[:, :-1]], axis=1)


def enemy_count(spec) -> int:
    """The number of enemy units of a map, from its sizes: SMAX's world state holds
    (own features + 2) values per unit and an observation (own + 3) per other unit plus own."""
    for units in range(spec.n_agents + 1, spec.state_dim + 1):
        if spec.state_dim % units:
            continue
        own = spec.state_dim // units - 2
        if own > 0 and (own + 3) * (units - 1) + own == spec.obs_dim:
            return units - spec.n_agents
    raise ValueError(f"{spec.map_name}: sizes obs {spec.obs_dim} / state {spec.state_dim} do not fit SMAX's layout")


ENEMY_ACTION_FEATURES = 3
"""What an ally sees of an enemy's previous action: its move (x, y) and its attack (scaled)."""


class Motion(NamedTuple):
    """How each ally moved between consecutive steps (StateProjector.motion), [E, T, N] each."""

    moves: np.ndarray
    known: np.ndarray
    plausible: np.ndarray

    def agrees_with(self, actions) -> np.ndarray:
        """[E, T, N] bool: ``actions`` is the move made, or (where the unit stood) not a move."""
        return np.where(self.moves >= 0, self.moves == actions, np.asarray(actions) >= STOP_ACTION)


class StateProjector:
    """Recomputes observations, legal actions and a clean world state from a world state.

    ``view(state: [..., S]) -> (state: [..., S], legals: [..., N, A], fighting: [...])``, where
    ``fighting`` says both teams still have a unit alive (a state SMAX can act from), and
    ``observe(state: [..., S], prev_actions: [..., N] int, obs_hint: [..., N, O]) -> [..., N, O]``;
    both are jitted and accept any leading shape.
    """

    def __init__(self, env: SmaxEnv):
        self.spec = env.spec
        inner = env.smax  # all units are agents there
        self._smax = inner
        self._n_allies = int(inner.num_allies)
        self._n_units = int(inner.num_agents)
        self._n_own = len(inner.own_features)
        self._n_unit_feat = len(inner.unit_features)
        expected = (self._n_own + 2) * self._n_units
        if expected != self.spec.state_dim:
            raise ValueError(
                f"{self.spec.map_name}: world state has {self.spec.state_dim} features, the "
                f"projection expects {expected}"
            )
        self.n_enemies = self._n_units - self._n_allies
        if self.n_enemies != enemy_count(self.spec):
            raise ValueError(f"{self.spec.map_name}: enemy count from the sizes disagrees with SMAX's")
        slot_enemy = self._enemy_action_slot_index()
        self._enemy_action_slots = jnp.asarray(slot_enemy >= 0)
        # [N * O, n_enemies * 3] one-hot: which enemy feature each observation slot shows.
        flat = slot_enemy.reshape(-1)
        gather = np.zeros((flat.size, self.n_enemies * ENEMY_ACTION_FEATURES), np.float32)
        gather[np.flatnonzero(flat >= 0), flat[flat >= 0]] = 1.0
        self._slot_to_enemy = jnp.asarray(gather)
        self.view = jax.jit(self._batched(self._view_one, 1))
        self.observe = jax.jit(self._batched(self._observe_one, 3))

    def _enemy_action_slot_index(self) -> np.ndarray:
        """[N, O] int: for each observation slot holding an enemy's previous move or attack,
        ``3 * enemy + feature``; -1 elsewhere."""
        n, f = self._n_allies, self._n_unit_feat
        index = np.full((n, self.spec.obs_dim), -1, np.int64)
        if not bool(self._smax.see_enemy_actions):
            return index
        for i in range(n):
            for k in range(self._n_units - 1):
                j = k if k < i else k + 1  # the k-th unit other than i (allies first)
                if j >= n:
                    start = k * f + 3
                    index[i, start : start + ENEMY_ACTION_FEATURES] = 3 * (j - n) + np.arange(3)
        return index

    def _visible_blocks(self, obs):
        """``obs: [..., N, O]`` -> [..., N, O] bool: the slot belongs to a unit the agent sees
        (a unit block is all zero unless visible, and its unit-type bits are then set)."""
        f = self._n_unit_feat
        blocks = obs[..., : (self._n_units - 1) * f].reshape(*obs.shape[:-1], -1, f)
        visible = jnp.repeat(jnp.any(blocks[..., 7:] != 0, axis=-1), f, axis=-1)
        pad = [(0, 0)] * (visible.ndim - 1) + [(0, self.spec.obs_dim - visible.shape[-1])]
        return jnp.pad(visible, pad)

    def enemy_actions(self, obs):
        """``obs: [..., N, O]`` -> [..., n_enemies * 3]: each enemy's previous move and attack as
        the allies that see it observe them (0 when none does)."""
        obs = jnp.asarray(obs, jnp.float32)
        seen = (self._visible_blocks(obs) & self._enemy_action_slots).astype(jnp.float32)
        lead = obs.shape[:-2]
        total = (obs * seen).reshape(*lead, -1) @ self._slot_to_enemy
        count = seen.reshape(*lead, -1) @ self._slot_to_enemy
        return total / jnp.maximum(count, 1.0)

    def enemy_action_hint(self, enemy):
        """``enemy: [..., n_enemies * 3]`` -> an observation hint [..., N, O] holding them in
        every enemy-action slot (zero elsewhere), for ``observe``."""
        hint = jnp.asarray(enemy, jnp.float32) @ self._slot_to_enemy.T
        return hint.reshape(*hint.shape[:-1], self._n_allies, self.spec.obs_dim)

    @staticmethod
    def _batched(fn, n_args: int):
        """Applies ``fn`` (one step) over any leading shape of its array arguments."""

        def run(*args):
            lead = args[0].shape[:-1]
            flat = [a.reshape((-1,) + a.shape[len(lead):]) for a in args[:n_args]]
            out = jax.vmap(fn)(*flat)
            return jax.tree.map(lambda o: o.reshape(lead + o.shape[1:]), out)

        return run

    def _jaxmarl_state(self, state: jax.Array, prev_actions: jax.Array | None):
        with quiet_stdout():
            from jaxmarl.environments.smax.smax_env import State

        smax, u, f = self._smax, self._n_units, self._n_own
        units = state[: u * f].reshape(u, f)
        teams = jnp.round(state[u * f : u * f + u]).astype(jnp.int32)
        types = jnp.clip(jnp.round(state[u * f + u :]).astype(jnp.int32), 0, f - 5)
        type_health = smax.unit_type_health[types]
        health = jnp.clip(units[:, 0], 0.0, 1.0) * type_health
        alive = health >= _HALF_HIT_POINT
        move = jnp.zeros((u, 2))
        attack = jnp.zeros((u,), jnp.int32)
        if prev_actions is not None:
            ally_move, ally_attack = smax._decode_discrete_actions(prev_actions.astype(jnp.int32))
            move = move.at[: self._n_allies].set(ally_move)
            attack = attack.at[: self._n_allies].set(ally_attack)
        return State(
            unit_positions=units[:, 1:3],
            unit_alive=alive,
            unit_teams=teams,
            unit_health=jnp.where(alive, health, 0.0),
            unit_types=types,
            unit_weapon_cooldowns=units[:, 3],  # may be negative in SMAX
            prev_movement_actions=move,
            prev_attack_actions=attack,
            done=jnp.array(False),
            step=jnp.array(0, jnp.int32),
        )

    def motion(self, state, mask) -> Motion:
        """The movement each ally made, read off its positions (an inverse dynamics model).

        ``state: [E, T, S]`` clean world states (as ``view`` returns them), ``mask: [E, T]``
        in-episode steps -> ``Motion`` with [E, T, N] arrays: ``known``, the ally is alive at
        t and t + 1, both in the episode; ``moves``, where known, the movement action (0-3) whose
        direction best matches its displacement from t to t + 1, or -1 when it moved less than
        half a step (it stopped or attacked; SMAX's collision push moves a standing unit by
        less), -1 where unknown; ``plausible``, known and the displacement is within a quarter
        step of 0 or of one step (a step: the unit type's speed over one env step). On real 3m
        Medium data ``moves`` reproduces the stored move-or-not choice and direction in 99.95 %
        of known agent-steps (docs/diffusion.md).
        """
        n = self._n_allies
        disp, both = self._displacements(state, mask)
        disp, known = disp[..., :n, :], both[..., :n]
        step = self.ally_step_length(state)
        length = np.linalg.norm(disp, axis=-1)
        moved = known & (length > 0.5 * step)
        moves = np.where(moved, (disp @ self._move_directions.T).argmax(-1), -1)
        plausible = known & ((length < 0.25 * step) | (np.abs(length - step) < 0.25 * step))
        return Motion(moves=moves.astype(np.int32), known=known, plausible=plausible)

    def ally_step_length(self, state) -> np.ndarray:
        """``state: [..., S]`` -> [..., N]: how far each ally moves in one env step (its unit
        type's speed times the step time), the length of every SMAX move."""
        return self.unit_step_length(state)[..., : self._n_allies]

    def unit_step_length(self, state) -> np.ndarray:
        """``state: [..., S]`` -> [..., U] (allies first): how far each unit moves in one env
        step, read off the unit types at the end of SMAX's world state."""
        smax, u, f = self._smax, self._n_units, self._n_own
        types = np.clip(np.rint(np.asarray(state)[..., u * f + u : u * f + 2 * u]).astype(np.int64), 0, f - 5)
        return np.asarray(smax.unit_type_velocities)[types] * smax.time_per_step * smax.world_steps_per_env_step

    def snap_motion(self, state, motion) -> np.ndarray:
        """``state: [E, T, S]``, ``motion: [E, T, U, 2]`` displacements -> moves SMAX can make,
        [E, T, U, 2]: at each step a unit stands (0) or moves exactly one step in one of the
        movement directions, chosen so that its path stays within a step of the generated
        one (error diffusion: what a step's snapping leaves out is carried into the
        next step). Generated motion is blurred (docs/diffusion.md: most of 3m Good's synthetic
        ally displacements are 5-25 % of a step, against 3 % of real ones); snapping each step
        on its own would stop nearly every unit, carrying the remainder keeps where the units
        go. Apart from collisions and the map's edges, every rebuilt position sequence is one
        SMAX could produce; on real data the result is nearly the identity."""
        motion = np.asarray(motion, np.float32)
        step = self.unit_step_length(state)[..., None]  # [E, T, U, 1]
        snapped = np.zeros_like(motion)
        carry = np.zeros_like(motion[:, 0])  # [E, U, 2]: generated path minus snapped path
        for t in range(motion.shape[1]):
            want = motion[:, t] + carry
            direction = self._move_directions[(want @ self._move_directions.T).argmax(-1)]  # [E, U, 2]
            moved = np.linalg.norm(want, axis=-1, keepdims=True) > 0.5 * step[:, t]
            snapped[:, t] = np.where(moved, step[:, t] * direction, 0.0)
            carry = want - snapped[:, t]
        return snapped

    def unit_motion(self, state, mask) -> np.ndarray:
        """``state: [E, T, S]``, ``mask: [E, T]`` -> [E, T, U, 2]: each unit's displacement from
        t to t + 1 where it is alive at both and t + 1 is in the episode, else 0."""
        disp, both = self._displacements(state, mask)
        return np.where(both[..., None], disp, 0.0).astype(np.float32)

    def _displacements(self, state, mask) -> tuple[np.ndarray, np.ndarray]:
        """(every unit's displacement from t to t + 1 [E, T, U, 2], whether it is alive at both
        steps and both are in the episode [E, T, U])."""
        alive = self.unit_alive(state) & np.asarray(mask, bool)[..., None]
        both = alive & np.concatenate([alive[:, 1:], np.zeros_like(alive[:, :1])], axis=1)
        pos = self.unit_positions(state)
        return np.concatenate([pos[:, 1:] - pos[:, :-1], np.zeros_like(pos[:, :1])], axis=1), both

    def unit_positions(self, state) -> np.ndarray:
        """``state: [..., S]`` -> every unit's position [..., U, 2] (allies first)."""
        return self._units(state)[..., 1:3]

    def unit_alive(self, state) -> np.ndarray:
        """``state: [..., S]`` -> [..., U] bool: the unit has health left (SMAX zeroes a dead unit)."""
        return self._units(state)[..., 0] > 0

    def _units(self, state) -> np.ndarray:
        """``state: [..., S]`` (numpy, or jax inside jit) -> the per-unit features [..., U, own features]."""
        u, f = self._n_units, self._n_own
        state = state.astype(jnp.float32) if isinstance(state, jax.Array) else np.asarray(state, np.float32)
        return state[..., : u * f].reshape(*state.shape[:-1], u, f)

    def with_positions_from_motion(self, state, motion):
        """``state: [E, T, S]``, ``motion: [E, T, U, 2]`` (numpy or jax, differentiable) -> a
        copy of ``state`` in which every living unit's position is its first-step position plus
        its displacements up to that step, clipped to the map as SMAX clips positions: how the
        ``from_state_motion`` layout (eaq.diffusion.codec) defines positions. Dead units (no
        health, as in unit_alive) keep the state's own position, zero in SMAX's state."""
        xp = jnp if isinstance(state, jax.Array) or isinstance(motion, jax.Array) else np
        units = self._units(state)
        own = self.unit_positions(state)
        positions = xp.concatenate([own[:, :1], own[:, :1] + xp.cumsum(motion[:, :-1], axis=1)], axis=1)
        corner = xp.asarray([float(self._smax.map_width), float(self._smax.map_height)], dtype=units.dtype)
        positions = xp.clip(positions, 0.0, corner).astype(units.dtype)
        positions = xp.where(self.unit_alive(state)[..., None], positions, own)
        units = xp.concatenate([units[..., :1], positions, units[..., 3:]], axis=-1)
        n = self._n_units * self._n_own
        return xp.concatenate([units.reshape(*state.shape[:-1], n), state[..., n:].astype(units.dtype)], axis=-1)

    @functools.cached_property
    def _move_directions(self) -> np.ndarray:
        """[STOP_ACTION, 2]: the unit direction of each movement action, from SMAX's own decoder."""
        moves, _ = self._smax._decode_discrete_actions(jnp.arange(STOP_ACTION, dtype=jnp.int32))
        return np.asarray(moves, np.float32)

    def _view_one(self, state):
        st = self._jaxmarl_state(state, None)
        avail = self._smax.get_avail_actions(st)
        legals = jnp.stack([avail[a] for a in self._smax.agents[: self._n_allies]]).astype(bool)
        allies_alive = jnp.any(st.unit_alive[: self._n_allies])
        enemies_alive = jnp.any(st.unit_alive[self._n_allies :])
        return self._smax.get_world_state(st).astype(jnp.float32), legals, allies_alive & enemies_alive

    def _observe_one(self, state, prev_actions, obs_hint):
        st = self._jaxmarl_state(state, prev_actions)
        obs = self._smax.get_obs_unit_list(st)
        obs = jnp.stack([obs[a] for a in self._smax.agents[: self._n_allies]]).astype(jnp.float32)
        keep_hint = self._enemy_action_slots & self._visible_blocks(obs)
        return jnp.where(keep_hint, obs_hint.astype(jnp.float32), obs)


@functools.lru_cache(maxsize=4)
def projector(map_name: str) -> StateProjector:
    """One (compiled) projector per map."""
    return StateProjector(SmaxEnv(map_name))
