"""Offline learners: TD targets, data mixing, training/eval/checkpoints/resume, data parallelism,
and the train-offline / evaluate commands (all on tiny configs over real random 3m episodes)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eaq.cli import main
from eaq.data import save_dataset
from eaq.env.smax import EnvSpec
from eaq.offline import OfflineConfig, load_checkpoint, make_train, train_offline
from eaq.offline.networks import state_scale_from_data
from eaq.offline.sampler import (
    check_datasets,
    episode_probabilities,
    next_step_valid,
    sample_episodes,
    to_episode_data,
)
from eaq.offline.train import make_mesh

# Single-device by default (fast on 2 CPU cores); data parallelism has its own test.
TINY = dict(steps=4, batch_size=4, segment=2, eval_every=2, eval_episodes=0, final_eval_episodes=0, data_parallel=False)


def leaves_close(a, b, **kw) -> bool:
    return all(np.allclose(np.asarray(x), np.asarray(y), **kw) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# ------------------------------------------------------------------ data and TD targets


def test_truncation_is_never_a_terminal_in_td_targets(random_batch_3m):
    data = to_episode_data([random_batch_3m], trim=False)
    T = data.mask.shape[1]
    # Episode 0 ends for real after 3 steps; episode 1 runs into the time limit.
    mask = np.zeros((2, T), bool)
    mask[0, :3] = True
    mask[1, :] = True
    terminals = np.zeros((2, T), bool)
    terminals[0, 2] = True
    truncations = np.zeros((2, T), bool)
    truncations[1, T - 1] = True
    batch = dataclasses.replace(
        jax.tree.map(lambda x: x[:2], data), mask=mask, terminals=terminals, truncations=truncations
    )
    valid = np.asarray(next_step_valid(batch))
    assert valid[0].tolist() == [True] * 3 + [False] * (T - 3)  # the terminal step keeps target r
    # The truncated last step has no stored successor: it is dropped, not treated as terminal,
    # and every earlier step bootstraps.
    assert valid[1, : T - 1].all() and not valid[1, T - 1]


def test_sampling_weights_mix_datasets(random_batch_3m):
    a = random_batch_3m.select(np.arange(4))
    b = random_batch_3m.select(np.arange(4, 16))
    p = episode_probabilities([a.n_episodes, b.n_episodes], [0.9, 0.1])
    assert np.isclose(p[:4].sum(), 0.9) and np.isclose(p[4:].sum(), 0.1)
    assert np.allclose(episode_probabilities([4, 12], None), 1 / 16)
    data = to_episode_data([a, b])
    idx_source = np.asarray(
        sample_episodes(jax.tree.map(jnp.asarray, data), jnp.asarray(p), jax.random.PRNGKey(0), 2000).observations[:, 0, 0, :]
    )
    first = np.asarray(data.observations[:4, 0, 0, :])
    from_a = np.mean([any(np.array_equal(r, f) for f in first) for r in idx_source])
    assert 0.85 < from_a < 0.95
    with pytest.raises(ValueError, match="2 datasets"):
        episode_probabilities([4, 12], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        episode_probabilities([4, 12], [1.0, -1.0])


def test_bad_datasets_get_clear_errors(random_batch_3m):
    with pytest.raises(ValueError, match="empty"):
        check_datasets([random_batch_3m, random_batch_3m.select(np.array([], dtype=int))], ["good.ds", "empty.ds"])
    other = EnvSpec("2s3z", 5, 127, 120, 10, 100, 2.0)
    with pytest.raises(ValueError, match=r"other\.ds: dataset is for map '2s3z'.*'3m'"):
        check_datasets([random_batch_3m, random_batch_3m.with_meta(spec=other)], ["a.ds", "other.ds"])
    with pytest.raises(ValueError, match="no training dataset"):
        check_datasets([])
    with pytest.raises(ValueError, match="unknown learner"):
        OfflineConfig(learner="dqn")
    with pytest.raises(ValueError, match="cql_ood_actions must be >= 1"):
        OfflineConfig(cql_ood_actions=0)


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("learner", ["qmix-cql", "maicq", "bc"])
def test_each_learner_trains_evaluates_and_checkpoints(learner, random_batch_3m, tmp_path):
    cfg = OfflineConfig(learner=learner, **{**TINY, "eval_episodes": 4, "final_eval_episodes": 4})
    res = train_offline(cfg, [random_batch_3m], out_dir=tmp_path)
    assert [int(r["step"]) for r in res.curve] == [2, 4]
    assert all(np.isfinite(float(r["loss"])) for r in res.curve)
    assert res.final is not None and res.final.episodes == 4 and 0 <= res.final.win_rate.mean <= 1
    for name in ("config.json", "curve.csv", "curve.png", "result.json"):
        assert (tmp_path / name).is_file(), name
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["learner"] == learner and record["config"]["steps"] == 4 and record["spec"]["map_name"] == "3m"
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 4 and leaves_close(ckpt.params, res.params)
    data = to_episode_data([random_batch_3m])
    init = make_train(cfg, res.spec).init(jax.random.PRNGKey(cfg.seed), state_scale_from_data(data.state, data.mask))
    assert not leaves_close(init.params, res.params)  # training moved the parameters


def test_resume_continues_exactly_where_it_stopped(random_batch_3m, tmp_path):
    cfg = OfflineConfig(learner="bc", **TINY)
    straight = train_offline(cfg, [random_batch_3m])
    part = train_offline(dataclasses.replace(cfg, steps=2), [random_batch_3m], out_dir=tmp_path)
    assert part.resumed_from == 0
    resumed = train_offline(cfg, [random_batch_3m], out_dir=tmp_path)
    assert resumed.resumed_from == 2
    assert leaves_close(resumed.params, straight.params, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="different config"):
        train_offline(dataclasses.replace(cfg, lr=1e-3), [random_batch_3m], out_dir=tmp_path)
    with pytest.raises(ValueError, match="holds a 'bc' run"):
        train_offline(dataclasses.replace(cfg, learner="maicq"), [random_batch_3m], out_dir=tmp_path)
    with pytest.raises(ValueError, match="different data"):
        train_offline(cfg, [random_batch_3m.select(np.arange(8))], out_dir=tmp_path)


def test_data_parallel_matches_single_device(random_batch_3m):
    assert len(jax.local_devices()) == 2  # conftest forces two host devices
    cfg = OfflineConfig(learner="bc", **{**TINY, "steps": 2, "data_parallel": True})

    assert make_mesh(cfg) is not None and make_mesh(dataclasses.replace(cfg, batch_size=3)) is None
    sharded = train_offline(cfg, [random_batch_3m])
    single = train_offline(dataclasses.replace(cfg, data_parallel=False), [random_batch_3m])
    assert leaves_close(sharded.params, single.params, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ command line


def test_train_offline_and_evaluate_commands(random_batch_3m, tmp_path, capsys):
    a = save_dataset(random_batch_3m.select(np.arange(8)), tmp_path / "a")
    b = save_dataset(random_batch_3m.select(np.arange(8, 16)), tmp_path / "b")
    out = tmp_path / "run"
    args = ["train-offline", "--learner", "bc", "--data", str(a), "--data", str(b), "--weights", "0.5,0.5",
            "--steps", "2", "--batch-size", "4", "--segment", "2", "--eval-every", "2", "--eval-episodes", "0",
            "--final-eval-episodes", "0", "--out", str(out)]
    assert main(args) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["weights"] == [0.5, 0.5] and [d["episodes"] for d in record["data"]] == [8, 8]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["learner"] == "bc" and res["episodes"] == 4 and set(res) >= {"win_rate", "return", "normalized_return"}
    assert res["normalized_return"]["lo"] <= res["normalized_return"]["mean"] <= res["normalized_return"]["hi"]

    assert main(args[:-2] + ["--weights", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--weights has 1 values for 2 --data paths" in " ".join(capsys.readouterr().err.split())
    assert main(["evaluate", str(tmp_path / "a"), "--episodes", "4"]) == 2
    assert "not an offline-training checkpoint" in " ".join(capsys.readouterr().err.split())


def test_cql_on_synthetic_false_keeps_synthetic_actions_out_of_the_cql_term(random_batch_3m):
    from eaq.offline import qmix_cql

    real = random_batch_3m.select(np.arange(8))
    synthetic = random_batch_3m.select(np.arange(8, 16)).with_meta(source="synthetic")
    data = to_episode_data([real, synthetic])
    assert np.asarray(data.synthetic).tolist() == [False] * 8 + [True] * 8
    rng = np.random.default_rng(0)
    other = np.asarray(data.actions).copy()
    other[8:] = rng.integers(0, random_batch_3m.spec.n_actions, other[8:].shape)  # other synthetic actions
    changed = dataclasses.replace(data, actions=other)
    spec = random_batch_3m.spec
    key = jax.random.PRNGKey(0)

    def cql(batch, on_synthetic):
        cfg = OfflineConfig(cql_on_synthetic=on_synthetic)
        params, target = qmix_cql.init(jax.random.PRNGKey(1), spec, cfg)
        return float(qmix_cql.loss(params, target, jax.tree.map(jnp.asarray, batch), key, spec, cfg)[1]["cql_loss"])

    assert cql(data, True) != pytest.approx(cql(changed, True))  # every episode's actions count
    assert cql(data, False) == pytest.approx(cql(changed, False))  # the synthetic ones' do not
    real_only = jax.tree.map(lambda x: x[:8], data)
    assert cql(data, False) != pytest.approx(cql(data, True))
    assert np.isfinite(cql(real_only, False))
    with pytest.raises(ValueError, match="QMIX"):
        OfflineConfig(learner="bc", cql_on_synthetic=False)
    with pytest.raises(ValueError, match="every dataset is synthetic"):
        train_offline(OfflineConfig(cql_on_synthetic=False, **TINY), [synthetic])
