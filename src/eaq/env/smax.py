"""Adapter over JaxMARL's ``HeuristicEnemySMAX``.

It turns JaxMARL's dict-of-agents interface into arrays (``obs: [N, O]``, ``legals: [N, A]``)
and, crucially, splits JaxMARL's ``done`` (which includes the time limit) into a real ending
(``terminal``: win or loss) and a time-limit ``truncated`` flag, so value targets can bootstrap
through truncations.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

# SMAX: the reward for damaging enemies sums to at most 1 per episode; a win adds 1.
_DAMAGE_RETURN = 1.0
_WIN_BONUS = 1.0


@contextlib.contextmanager
def quiet_stdout():
    """Silences stdout at the file-descriptor level (jaxmarl prints on import, past
    ``contextlib.redirect_stdout``), so the CLI's output stays ours."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class UnknownMapError(ValueError):
    """Raised for a map name SMAX does not know."""


def available_maps() -> list[str]:
    """The SMAX map names this adapter accepts."""
    with quiet_stdout():
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    return sorted(MAP_NAME_TO_SCENARIO)


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a SMAX map, enough to shape every array in the project."""

    map_name: str
    """SMAX map name, e.g. ``3m``."""
    n_agents: int
    """N, the number of controlled (allied) agents."""
    obs_dim: int
    """O, the per-agent observation size."""
    state_dim: int
    """S, the global (world) state size."""
    n_actions: int
    """A, the per-agent discrete action count (0-3 move, 4 stop, then attack enemy i)."""
    max_steps: int
    """T, the episode time limit; episodes are padded to this length."""
    max_return: float
    """The largest achievable team return (SMAX: 2.0 = full damage + win bonus)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvSpec:
        fields = {f for f in cls.__dataclass_fields__}
        missing = fields - set(d)
        if missing:
            raise ValueError(f"env spec is missing fields {sorted(missing)}")
        return cls(**{k: d[k] for k in fields})

    def normalized_return(self, ret):
        """100 x return / max return."""
        return 100.0 * ret / self.max_return


@struct.dataclass
class TimeStep:
    """What the agents see at one step.

    obs: [N, O] float32; state: [S] float32; legals: [N, A] bool.
    """

    obs: jax.Array
    state: jax.Array
    legals: jax.Array


@struct.dataclass
class StepOutput:
    """The result of one environment step.

    next: the TimeStep after the step; reward: [] float32 team reward; terminal: [] bool,
    a real ending (win or loss); truncated: [] bool, hit the time limit without a real ending;
    won: [] bool, all enemies dead with at least one ally alive.
    """

    next: TimeStep
    reward: jax.Array
    terminal: jax.Array
    truncated: jax.Array
    won: jax.Array

    @property
    def done(self) -> jax.Array:
        return self.terminal | self.truncated


class SmaxEnv:
    """Array interface over ``HeuristicEnemySMAX`` for one map.

    ``reset`` and ``step`` are pure functions of their arguments and can be jit-ed and vmap-ed.
    ``step`` never resets: callers decide what to do after ``done`` (see ``auto_reset_step``).
    """

    def __init__(self, map_name: str, **env_kwargs: Any):
        maps = available_maps()
        if map_name not in maps:
            raise UnknownMapError(
                f"unknown SMAX map {map_name!r}; valid maps are: {', '.join(maps)}"
            )
        # jaxmarl prints a line about optional submodules on import; keep the CLI quiet.
        with quiet_stdout():
            from jaxmarl import make
            from jaxmarl.environments.smax import map_name_to_scenario

            self._env = make(
                "HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name), **env_kwargs
            )
        self._agents = list(self._env.agents)
        n = len(self._agents)
        key = jax.random.PRNGKey(0)
        obs, st = jax.eval_shape(self._env.reset, key)
        self.spec = EnvSpec(
            map_name=map_name,
            n_agents=n,
            obs_dim=int(obs[self._agents[0]].shape[-1]),
            state_dim=int(obs["world_state"].shape[-1]),
            n_actions=int(self._env.action_spaces[self._agents[0]].n),
            max_steps=int(self._env.max_steps),
            max_return=_DAMAGE_RETURN + _WIN_BONUS,
        )

    @property
    def smax(self):
        """JaxMARL's underlying ``SMAX`` (allies and enemies are all agents there): its
        observation, world-state and availability functions, for eaq.env.project."""
        return self._env._env

    def _timestep(self, obs: dict, env_state) -> TimeStep:
        avail = self._env.get_avail_actions(env_state)
        return TimeStep(
            obs=jnp.stack([obs[a] for a in self._agents]).astype(jnp.float32),
            state=obs["world_state"].astype(jnp.float32),
            legals=jnp.stack([avail[a] for a in self._agents]).astype(bool),
        )

    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]:
        """Start an episode. Returns (env_state, first TimeStep)."""
        obs, env_state = self._env.reset(key)
        return env_state, self._timestep(obs, env_state)

    def step(self, key: jax.Array, env_state, actions: jax.Array) -> tuple[Any, StepOutput]:
        """Apply ``actions: [N] int32``. Returns (next env_state, StepOutput)."""
        act = {a: actions[i] for i, a in enumerate(self._agents)}
        obs, env_state, rewards, _, _ = self._env.step_env(key, env_state, act)
        alive = env_state.state.unit_alive
        n = self.spec.n_agents
        allies_dead = ~jnp.any(alive[:n])
        enemies_dead = ~jnp.any(alive[n:])
        real_end = allies_dead | enemies_dead
        # JaxMARL checks its time limit before counting the step, so its own `done` arrives one
        # step late (after max_steps + 1 steps); we end at exactly max_steps steps.
        time_up = env_state.state.step >= self.spec.max_steps
        out = StepOutput(
            next=self._timestep(obs, env_state),
            reward=rewards[self._agents[0]].astype(jnp.float32),
            terminal=real_end,
            truncated=time_up & ~real_end,
            won=enemies_dead & ~allies_dead,
        )
        return env_state, out

    def auto_reset_step(
        self, key: jax.Array, env_state, actions: jax.Array
    ) -> tuple[Any, StepOutput, TimeStep]:
        """Step, and if the episode ended, reset. Returns (env_state, StepOutput, TimeStep to
        act on next) where the StepOutput still holds the true last observation."""
        step_key, reset_key = jax.random.split(key)
        env_state, out = self.step(step_key, env_state, actions)
        reset_state, reset_ts = self.reset(reset_key)
        done = out.done
        env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, env_state)
        ts = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_ts, out.next)
        return env_state, out, ts


@functools.lru_cache(maxsize=16)
def make_env(map_name: str) -> SmaxEnv:
    """A cached SmaxEnv per map (construction traces the env, which takes a moment)."""
    return SmaxEnv(map_name)
