import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eaq.env import SmaxEnv, UnknownMapError, make_env
from eaq.env.rollout import make_rollout

# (obs per agent, world state, actions, agents) from DESIGN.md
EXPECTED = {
    "3m": (75, 72, 8, 3),
    "2s3z": (127, 120, 10, 5),
    "5m_vs_6m": (140, 132, 11, 5),
    "8m": (205, 192, 13, 8),
}


@pytest.mark.parametrize("map_name", sorted(EXPECTED))
def test_spec_matches_design(map_name):
    spec = make_env(map_name).spec
    o, s, a, n = EXPECTED[map_name]
    assert (spec.obs_dim, spec.state_dim, spec.n_actions, spec.n_agents) == (o, s, a, n)
    assert spec.max_steps == 100
    assert spec.max_return == 2.0
    # the from_state diffusion layout sizes its enemy channels from the spec alone
    from eaq.env.project import enemy_count

    assert enemy_count(spec) == {"3m": 3, "2s3z": 5, "5m_vs_6m": 6, "8m": 8}[map_name]


def test_unknown_map_lists_valid_names():
    with pytest.raises(UnknownMapError) as e:
        SmaxEnv("4m_vs_a_dragon")
    assert "3m" in str(e.value) and "5m_vs_6m" in str(e.value)


def test_reset_step_shapes_and_vmap(env3m):
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    states, ts = jax.jit(jax.vmap(env3m.reset))(keys)
    assert ts.obs.shape == (4, 3, 75) and ts.state.shape == (4, 72) and ts.legals.shape == (4, 3, 8)
    assert ts.legals.dtype == jnp.bool_
    actions = jnp.full((4, 3), 4, jnp.int32)  # stop is always legal
    _, out = jax.jit(jax.vmap(env3m.step))(keys, states, actions)
    assert out.reward.shape == (4,) and out.terminal.shape == (4,)


def test_random_rollouts_respect_max_return(env3m, random_rollout_3m):
    ep = random_rollout_3m((), jax.random.PRNGKey(3), 64)
    returns = np.asarray((ep.rewards * ep.mask).sum(1))
    assert (returns <= env3m.spec.max_return + 1e-5).all()
    assert (returns >= 0).all()
    # every episode ends exactly once, and only where the mask is set
    ends = np.asarray(ep.terminals | ep.truncations)
    assert (ends.sum(1) == 1).all()
    assert not (ends & ~np.asarray(ep.mask)).any()


def test_time_limit_is_truncation_not_terminal():
    # A 5-step limit with everyone standing still: nobody can win or die that fast.
    env = SmaxEnv("3m", max_steps=5)
    stop = lambda params, carry, ts, key: (jnp.full((3,), 4, jnp.int32), carry)  # noqa: E731
    ep = jax.jit(make_rollout(env, stop), static_argnums=2)((), jax.random.PRNGKey(0), 4)
    assert np.asarray(ep.mask).sum(1).tolist() == [5, 5, 5, 5]
    assert np.asarray(ep.truncations)[:, 4].all()
    assert not np.asarray(ep.terminals).any()
    assert not np.asarray(ep.won).any()


def test_auto_reset_step_resets_after_ending():
    env = SmaxEnv("3m", max_steps=2)
    state, ts = env.reset(jax.random.PRNGKey(0))
    stop = jnp.full((3,), 4, jnp.int32)
    step = jax.jit(env.auto_reset_step)
    state, out, ts = step(jax.random.PRNGKey(1), state, stop)
    assert not bool(out.done)
    state, out, ts = step(jax.random.PRNGKey(2), state, stop)
    assert bool(out.truncated)
    # after the reset the step counter starts again: two more steps to the next truncation
    state, out, ts = step(jax.random.PRNGKey(3), state, stop)
    assert not bool(out.done)


def test_motion_reads_real_actions_back_from_the_states(random_batch_3m):
    """The inverse dynamics: where a unit's motion is known, it gives the stored move (or says
    it did not move), and every real move is physically possible."""
    from eaq.env.project import STOP_ACTION, projector

    batch = random_batch_3m
    moves, known, plausible = projector("3m").motion(batch.state, batch.mask)
    assert known.sum() > 500 and not known[~batch.mask].any()
    agree = np.where(moves >= 0, moves == batch.actions, batch.actions >= STOP_ACTION)
    assert agree[known].mean() > 0.99
    assert (moves[known] >= 0).any() and (moves[known] < 0).any()  # random units move and stand
    assert plausible[known].mean() > 0.95 and not plausible[~known].any()
    jumped = batch.state.copy()
    jumped[:, 1::2, 1] += 5.0  # ally 0's x jumps 5 units back and forth: over 3 steps' worth
    _, _, plausible = projector("3m").motion(jumped, batch.mask)
    assert not plausible[..., 0].any() and plausible[..., 1:][known[..., 1:]].mean() > 0.95


def test_snapping_keeps_real_motion_and_follows_blurred_paths_with_possible_moves(random_batch_3m):
    """Snapping real displacements to SMAX's moves changes (nearly) nothing; snapping shrunken
    ones (scaled by 0.3) gives every unit step a possible length and keeps each path within
    a step of the shrunken one, so units still travel (fewer steps, not none)."""
    from eaq.env.project import projector

    batch, proj = random_batch_3m, projector("3m")
    motion = proj.unit_motion(batch.state, batch.mask)  # [E, T, U, 2]
    known = proj.motion(batch.state, batch.mask).known  # allies
    snapped = proj.snap_motion(batch.state, motion)
    step = proj.unit_step_length(batch.state)[..., None]
    assert np.abs(snapped - motion)[..., :3, :][known].max() < 0.3 * step.max()  # collisions push a little
    np.testing.assert_allclose(proj.ally_step_length(batch.state), proj.unit_step_length(batch.state)[..., :3])
    shrunk = 0.3 * motion
    snapped = proj.snap_motion(batch.state, shrunk)
    length = np.linalg.norm(snapped, axis=-1)
    assert np.all(np.isclose(length, 0.0) | np.isclose(length, step[..., 0], rtol=1e-5))
    lag = np.linalg.norm(np.cumsum(snapped - shrunk, axis=1), axis=-1)  # snapped path - shrunken path
    assert lag.max() < step.max()  # (a diagonal remainder can reach ~0.7 of a step)
    def move_share(m):  # of the known ally steps
        return (np.linalg.norm(m, axis=-1)[..., :3] > 0.5 * step[..., :3, 0])[known].mean()

    assert 0.2 * move_share(motion) < move_share(snapped) < 0.45 * move_share(motion)  # ~30 % of the real moves


def test_projection_reproduces_real_observations_states_and_legals(random_batch_3m):
    """On real data, recomputing everything from the world state (and the previous actions)
    gives back exactly what SMAX stored; only the enemies' previous actions come from the hint."""
    from eaq.env.project import previous_actions, projector

    batch = random_batch_3m
    proj = projector("3m")
    m = batch.mask
    state, legals, fighting = map(np.asarray, proj.view(batch.state))
    np.testing.assert_array_equal(state[m], batch.state[m])
    np.testing.assert_array_equal(legals[m], batch.legals[m])
    assert fighting[m].all()  # every stored step is one both teams still act in
    # A hint that is wrong everywhere: all but the enemy-action slots are recomputed from state.
    noise = np.random.default_rng(0).normal(size=batch.observations.shape).astype(np.float32)
    hint = batch.observations + noise
    obs = np.asarray(proj.observe(batch.state, previous_actions(batch.actions), hint))
    slots = np.asarray(proj._enemy_action_slots)
    assert slots.sum() == 3 * 3 * 3  # 3 agents see 3 enemies' move (2) and attack (1)
    blocks = batch.observations[..., : 5 * 13].reshape(*batch.observations.shape[:-1], 5, 13)
    visible = np.repeat((blocks[..., 7:] != 0).any(-1), 13, axis=-1)  # unit-type bits set
    visible = np.pad(visible, [(0, 0)] * 3 + [(0, 10)])
    expected = np.where(slots, np.where(visible, hint, 0.0), batch.observations)
    np.testing.assert_allclose(obs[m], expected[m], atol=1e-6)
    assert (slots & visible)[m].any()
    # A state with every enemy dead is one SMAX no longer acts from.
    dead = batch.state.copy()
    dead[..., 30:60] = 0.0  # units 3-5 (the enemies) in 3m: 10 features each
    assert not np.asarray(proj.view(dead)[2]).any()
