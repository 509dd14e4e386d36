"""The frozen, differentiable Q_tot of a trained QMIX+CQL (what guides the EAQ diffusion model)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eaq.offline import OfflineConfig, load_qtot, qmix_cql, qtot_from_params, train_offline

TINY = dict(steps=4, batch_size=4, segment=2, eval_every=2, eval_episodes=0, final_eval_episodes=0, data_parallel=False)


@pytest.fixture(scope="module")
def trained(random_batch_3m, tmp_path_factory):
    out = tmp_path_factory.mktemp("qmix") / "run"
    cfg = OfflineConfig(learner="qmix-cql", **TINY)
    return train_offline(cfg, [random_batch_3m], out_dir=out), out


@pytest.fixture(scope="module")
def episodes(random_batch_3m):
    b = random_batch_3m.select(np.arange(3))
    return jnp.asarray(b.observations), jnp.asarray(b.actions), jnp.asarray(b.state), b


def test_one_hot_actions_give_the_learners_own_q_tot(trained, episodes):
    result, _ = trained
    obs, actions, state, _ = episodes
    q = qtot_from_params(result.spec, result.config, result.params)
    probs = jax.nn.one_hot(actions, result.spec.n_actions)
    got = jax.jit(q.apply)(q.params, obs, probs, state)
    want = qmix_cql.q_tot_of_actions(result.spec, result.config, result.params, obs, actions, state)
    assert got.shape == actions.shape[:2]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # Another joint action gives another value: the function depends on the actions.
    other = jax.nn.one_hot((actions + 1) % result.spec.n_actions, result.spec.n_actions)
    assert not np.allclose(np.asarray(q(obs, other, state)), np.asarray(got))


def test_gradients_wrt_relaxed_actions_and_observations_are_finite_and_nonzero(trained, episodes):
    result, _ = trained
    obs, actions, state, _ = episodes
    q = qtot_from_params(result.spec, result.config, result.params)
    logits = jax.random.normal(jax.random.PRNGKey(1), actions.shape + (result.spec.n_actions,))

    def objective(logits, obs, state):
        return q(obs, jax.nn.softmax(logits), state).mean()

    g_logits, g_obs, g_state = jax.jit(jax.grad(objective, argnums=(0, 1, 2)))(logits, obs, state)
    for g in (g_logits, g_obs, g_state):
        assert np.all(np.isfinite(np.asarray(g)))
        assert float(jnp.abs(g).max()) > 0
    # Gradient w.r.t. the frozen parameters through __call__ is zero (they are constants).
    g_params = jax.grad(lambda p: qtot_from_params(result.spec, result.config, p)(obs, jax.nn.softmax(logits), state).mean())(result.params)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g_params))


def test_load_qtot_matches_the_trained_params(trained, episodes):
    result, out = trained
    obs, actions, state, _ = episodes
    loaded = load_qtot(out)
    assert loaded.spec == result.spec
    probs = jax.nn.one_hot(actions, result.spec.n_actions)
    want = qtot_from_params(result.spec, result.config, result.params)(obs, probs, state)
    np.testing.assert_allclose(np.asarray(loaded(obs, probs, state)), np.asarray(want), rtol=1e-6)


def test_load_qtot_rejects_missing_dirs_and_other_learners(random_batch_3m, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_qtot(tmp_path / "nope")
    with pytest.raises(ValueError, match="not an offline-training checkpoint"):
        load_qtot(tmp_path)
    bc_cfg = OfflineConfig(learner="bc", **{**TINY, "steps": 2})
    train_offline(bc_cfg, [random_batch_3m], out_dir=tmp_path / "bc")
    with pytest.raises(ValueError, match="trained by learner 'bc'"):
        load_qtot(tmp_path / "bc")
