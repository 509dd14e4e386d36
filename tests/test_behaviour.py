"""Behaviour policies and datasets, on real tiny IPPO runs in SMAX 3m (no mocks).

One tiny run is trained without interruption (cache A) and one is interrupted and resumed
(cache B); both compile once per process (eaq.behaviour.training.compiled)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from eaq.behaviour import (
    BANDS,
    Band,
    CheckpointEval,
    NoCheckpointInBand,
    cache_root,
    collect_dataset,
    crossing,
    select_checkpoint,
    tiny_config,
    train_behaviour,
)
from eaq.behaviour.cache import CACHE_ENV_VAR
from eaq.behaviour.config import IPPOConfig
from eaq.behaviour.training import compiled, runner_template
from eaq.data import load_dataset
from eaq.data.batch import ARRAY_FIELDS

MAP = "3m"
CONFIG = tiny_config()


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return tmp_path_factory.mktemp("cacheA"), tmp_path_factory.mktemp("cacheB")


@pytest.fixture(scope="module")
def full_run(caches):
    return train_behaviour(MAP, 0, CONFIG, caches[0], progress=False)


@pytest.fixture(scope="module")
def resumed_run(caches):
    partial = train_behaviour(MAP, 0, CONFIG, caches[1], progress=False, stop_after_updates=2)
    assert partial.finished is None
    assert [e.step for e in partial.evals] == [0, 2]
    return train_behaviour(MAP, 0, CONFIG, caches[1], progress=False)


def _eval(step: int, nr: float) -> CheckpointEval:
    est = {"mean": nr, "lo": nr - 1, "hi": nr + 1, "n": 128}
    win = {"mean": nr / 100, "lo": 0.0, "hi": 1.0, "n": 128}
    return CheckpointEval(step, step * 10, {"normalized_return": est, "win_rate": win, "episodes": 128})


def test_band_choice_prefers_target_and_never_mislabels():
    evals = [_eval(0, 5.0), _eval(1, 22.0), _eval(2, 30.0), _eval(3, 41.0), _eval(4, 85.0), _eval(5, 97.0)]
    assert select_checkpoint(evals, BANDS["poor"]).step == 2  # 30 is nearest the 27.5 target
    assert select_checkpoint(evals, BANDS["good"]).step == 4  # 85 is nearest 90
    with pytest.raises(NoCheckpointInBand) as e:
        select_checkpoint(evals, BANDS["medium"])
    assert e.value.nearest.step == 3 and "41.0 %" in str(e.value)
    # the main line jumped over medium (41 -> 85): refinement restarts from step 3
    assert crossing(evals, BANDS["medium"]).step == 3
    assert crossing(evals, BANDS["poor"]) is None  # poor holds checkpoints
    assert crossing(evals[:4], BANDS["good"]) is None  # never rose above good
    assert BANDS["poor"].contains(20.0) and BANDS["poor"].contains(35.0)
    assert not BANDS["medium"].contains(44.99) and not BANDS["medium"].contains(60.01)


def test_run_checkpoints_carry_greedy_evaluations(full_run):
    assert full_run.finished == "step budget"
    steps = [e.step for e in full_run.evals]
    assert steps == [0, 2, 4, 6] == full_run.checkpoints.steps()
    for e in full_run.evals:
        assert e.eval["episodes"] >= 128
        assert 0.0 <= e.normalized_return <= 100.0
        assert e.timesteps == e.step * CONFIG.num_envs * CONFIG.num_steps
    saved = json.loads((full_run.directory / "config.json").read_text())
    assert IPPOConfig.from_dict(saved["config"]) == CONFIG and saved["seed"] == 0


def test_resume_continues_bit_identically(full_run, resumed_run):
    assert resumed_run.finished == "step budget"
    assert [e.to_dict() for e in resumed_run.evals] == [e.to_dict() for e in full_run.evals]
    ippo, _, _ = compiled(CONFIG, MAP)
    template = runner_template(ippo, 0)
    a = full_run.checkpoints.restore_state(6, template)
    b = resumed_run.checkpoints.restore_state(6, template)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if jax.local_device_count() > 1:  # conftest makes 2 CPU devices: training is data-parallel
        assert len(a.ts.obs.sharding.device_set) == jax.local_device_count()
        assert a.ts.obs.sharding.spec[0] == "data"
    # a finished run is reused, not retrained
    again = train_behaviour(MAP, 0, CONFIG, resumed_run.directory.parents[2], progress=False)
    assert [e.step for e in again.evals] == [0, 2, 4, 6]


def test_no_checkpoint_in_band_refuses_and_names_nearest(full_run, caches):
    # A few tiny updates cannot reach the good band: the collection must refuse, not mislabel.
    with pytest.raises(NoCheckpointInBand) as e:
        collect_dataset(MAP, "good", 8, 0, caches[0], CONFIG, progress=False)
    assert e.value.nearest is not None and "the nearest is checkpoints/" in str(e.value)
    assert not (caches[0] / "datasets").exists() or not any((caches[0] / "datasets").rglob("meta.json"))


def test_same_seed_and_config_give_bit_identical_dataset(full_run, resumed_run, caches):
    # A band around a real checkpoint of this tiny run (the standard bands are out of reach).
    chosen = full_run.evals[-1]
    band = Band("unknown", chosen.normalized_return - 0.5, chosen.normalized_return + 0.5,
                chosen.normalized_return)
    a = collect_dataset(MAP, "unknown", 12, 0, caches[0], CONFIG, progress=False, band=band)
    b = collect_dataset(MAP, "unknown", 12, 0, caches[1], CONFIG, progress=False, band=band)
    picked = a.meta.generator["checkpoint_step"]
    assert band.contains(full_run.evals[[e.step for e in full_run.evals].index(picked)].normalized_return)
    assert a.meta.generator["epsilon"] == 0.05 and a.meta.source == "real" and a.meta.seed == 0
    assert a.n_episodes == 12
    for name in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # the cached copy loads back (validated) and is what a second call returns
    again = collect_dataset(MAP, "unknown", 12, 0, caches[0], CONFIG, progress=False, band=band)
    np.testing.assert_array_equal(again.actions, a.actions)


def test_collected_actions_are_legal_and_cached_copy_validates(full_run, caches):
    band = Band("unknown", -1.0, 101.0, 0.0)
    batch = collect_dataset(MAP, "unknown", 12, 0, caches[0], CONFIG, progress=False, band=band)
    taken = np.take_along_axis(batch.legals, batch.actions[..., None], -1)[..., 0]
    assert taken[batch.mask].all()
    assert not batch.legals[~batch.mask].any()
    cached = next((caches[0] / "datasets").rglob("unknown-12ep-eps0.05-band-1-101"))
    assert load_dataset(cached).n_episodes == 12


def test_cli_collect_exits_nonzero_without_a_checkpoint_in_band(full_run, caches, tmp_path, capsys):
    from eaq.cli import main

    out = tmp_path / "good"
    rc = main(["collect", "--map", MAP, "--quality", "good", "--episodes", "8", "--preset", "tiny",
               "--cache-dir", str(caches[0]), "--out", str(out), "--no-progress"])
    assert rc != 0
    assert "no behaviour checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_cache_root_option_then_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "opt") == tmp_path / "opt"
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert cache_root().name == "eaq" and cache_root().parent.name == ".cache"


def test_config_is_validated_and_keyed():
    with pytest.raises(ValueError, match="checkpoint_every"):
        IPPOConfig(updates_per_segment=4, checkpoint_every=10)
    assert IPPOConfig().training_key() != IPPOConfig(lr=1e-3).training_key()
    assert IPPOConfig().training_key() == IPPOConfig().training_key()


def test_gru_actor_resets_and_masks_illegal_actions():
    import jax.numpy as jnp

    from eaq.behaviour.networks import ActorCritic

    net = ActorCritic(n_actions=5, hidden_dim=16, recurrent=True, gru_dim=8)
    T, B, D = 6, 3, 7
    obs = jax.random.normal(jax.random.PRNGKey(0), (T, B, D))
    legals = jnp.ones((T, B, 5), bool).at[..., 1].set(False)
    resets = jnp.zeros((T, B), bool).at[3].set(True)
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((B, 8)), obs, resets, legals)
    _, logits, value = net.apply(params, jnp.zeros((B, 8)), obs, resets, legals)
    assert logits.shape == (T, B, 5) and value.shape == (T, B)
    assert float(jax.nn.softmax(logits)[..., 1].max()) < 1e-6  # illegal action never sampled
    # after the reset at t=3 the outputs do not depend on what came before
    other = obs.at[:3].set(-obs[:3])
    _, logits2, _ = net.apply(params, jnp.ones((B, 8)), other, resets, legals)
    np.testing.assert_allclose(logits[3:], logits2[3:], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[:3], logits2[:3])  # ... while before it they do
