"""The Q_tot-guided parts of EAQ, with a real (tiny) QMIX+CQL trained offline in a fixture.

Also the command line end to end: train-diffusion --qtot, then augment with its fidelity report.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eaq.cli import main
from eaq.data.store import load_dataset, save_dataset
from eaq.diffusion.codec import EpisodeLayout, encode, fit_normaliser
from eaq.diffusion.qloss import q_loss, relaxed_episode
from eaq.diffusion.unet import TemporalUNet
from eaq.offline import OfflineConfig, load_qtot, train_offline

QMIX_TINY = dict(steps=4, batch_size=4, segment=2, eval_every=2, eval_episodes=0, final_eval_episodes=0)


@pytest.fixture(scope="module")
def qmix_dir(random_batch_3m, tmp_path_factory):
    """A QMIX+CQL trained for 4 updates on 16 random 3m episodes (its checkpoint directory)."""
    out = tmp_path_factory.mktemp("qmix") / "run"
    train_offline(OfflineConfig(learner="qmix-cql", **QMIX_TINY), [random_batch_3m], out_dir=out)
    return out


def test_relaxed_episode_recovers_one_hot_actions(random_batch_3m):
    batch = random_batch_3m.select(np.arange(2))
    norm = fit_normaliser(random_batch_3m)
    layout = EpisodeLayout(batch.spec)
    x = jnp.asarray(encode(batch, norm, 100))
    obs, probs, state = relaxed_episode(x, norm.mean, norm.scale, layout, temperature=0.05)
    m = batch.mask
    np.testing.assert_array_equal(np.asarray(probs).argmax(-1)[m], batch.actions[m])
    assert float(np.asarray(probs).max(-1)[m].min()) > 0.99
    # inside episodes: padding of a constant channel decodes to its constant, and the Q loss is masked
    np.testing.assert_allclose(np.asarray(obs)[m], batch.observations[m], atol=1e-5)
    np.testing.assert_allclose(np.asarray(state)[m], batch.state[m], atol=1e-5)


def test_q_loss_is_finite_and_its_gradient_reaches_the_denoiser(qmix_dir, random_batch_3m):
    qtot = load_qtot(qmix_dir)
    batch = random_batch_3m.select(np.arange(4))
    norm = fit_normaliser(random_batch_3m)
    layout = EpisodeLayout(batch.spec)
    x0 = jnp.asarray(encode(batch, norm, 100))
    model = TemporalUNet(out_channels=layout.n_channels, base_channels=8, channel_mults=(1, 2))
    t = jnp.full((4,), 3)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x0, t)
    mask = jnp.asarray(batch.mask)

    @jax.jit
    def loss(params):
        x0_hat = model.apply(params, x0 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x0.shape), t)
        return q_loss(qtot.apply, qtot.params, x0_hat, mask, norm.mean, norm.scale, layout, 0.25)

    (l_q, mean_q), grads = jax.value_and_grad(loss, has_aux=True)(params)
    assert np.isfinite(float(l_q)) and np.isfinite(float(mean_q))
    # scale-free: -mean(Q) / mean|Q| lies in [-1, 1]
    assert -1.0 - 1e-5 <= float(l_q) <= 1.0 + 1e-5
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


def test_q_target_actions_moves_only_the_action_channels(qmix_dir, random_batch_3m):
    """target="actions": the Q loss cannot push observations or state toward values that the
    frozen Q_tot extrapolates (the failure mode of "episode"); its gradient lives on actions."""
    qtot = load_qtot(qmix_dir)
    batch = random_batch_3m.select(np.arange(3))
    norm = fit_normaliser(random_batch_3m)
    layout = EpisodeLayout(batch.spec)
    x0_hat = jnp.asarray(encode(batch, norm, 100))
    mask = jnp.asarray(batch.mask)

    def grad_parts(target):
        g = jax.grad(lambda x: q_loss(qtot.apply, qtot.params, x, mask, norm.mean, norm.scale, layout, 0.25, target)[0])(x0_hat)
        return {k: float(jnp.abs(v).sum()) for k, v in layout.split(g).items()}

    episode, actions = grad_parts("episode"), grad_parts("actions")
    assert episode["obs"] > 0 and episode["state"] > 0 and episode["action"] > 0
    assert actions["obs"] == 0 and actions["state"] == 0 and actions["action"] > 0
    with pytest.raises(ValueError, match="q target"):
        relaxed_episode(x0_hat, norm.mean, norm.scale, layout, 0.25, "states")


def test_cli_train_with_qtot_then_augment(qmix_dir, random_batch_3m, tmp_path):
    data = save_dataset(random_batch_3m, tmp_path / "real")
    model = tmp_path / "model"
    # eta > 0 without a Q_tot is refused with a clean error
    assert main(["train-diffusion", "--data", str(data), "--out", str(model), "--preset", "tiny", "--q-weight", "0.1"]) == 2
    assert not (model / "checkpoints").exists()

    args = ["train-diffusion", "--data", str(data), "--out", str(model), "--preset", "tiny"]
    assert main([*args, "--qtot", str(qmix_dir), "--q-weight", "0.1", "--updates", "10"]) == 0
    history = json.loads((model / "metrics.json").read_text())
    assert {"loss_diffusion", "loss_q", "mean_q"} <= set(history[-1])
    assert all(np.isfinite(h["loss_q"]) and h["loss_q"] != 0 for h in history)
    record = json.loads((model / "config.json").read_text())
    assert record["diffusion"]["q_weight"] == 0.1 and record["qtot"] == str(qmix_dir)

    out = tmp_path / "synthetic-v1.2"  # a dot in the name must survive in the report's name
    assert main(["augment", "--model", str(model), "--episodes", "4", "--out", str(out), "--seed", "7"]) == 0
    synthetic = load_dataset(out)  # fully validated on load
    assert synthetic.meta.source == "synthetic" and synthetic.meta.generator["q_weight"] == 0.1
    report = json.loads((tmp_path / "synthetic-v1.2_fidelity.json").read_text())
    assert (tmp_path / "synthetic-v1.2_fidelity.png").stat().st_size > 0
    assert report["q_tot"] is not None
    assert np.isfinite(report["q_tot"]["real"]["mean"]) and np.isfinite(report["q_tot"]["synthetic"]["mean"])
    assert report["n_valid"] == synthetic.n_episodes
    # writing over an existing dataset needs --force
    assert main(["augment", "--model", str(model), "--episodes", "4", "--out", str(out)]) == 2

    # --oversample 2: twice the samples, the half the model's Q_tot rates highest kept
    best = tmp_path / "best"
    assert main(["augment", "--model", str(model), "--episodes", "3", "--out", str(best), "--oversample", "2"]) == 0
    chosen = load_dataset(best).meta.generator["selection"]
    report = json.loads((tmp_path / "best_fidelity.json").read_text())
    assert report["extra"]["selection"] == chosen and report["n_valid"] == chosen["n_kept"] == 3
    assert chosen["by"] == "qtot" and chosen["n_candidates"] == 6 and chosen["rating_kept"] >= chosen["rating_candidates"]
    plausible = tmp_path / "plausible"
    assert main(["augment", "--model", str(model), "--episodes", "3", "--out", str(plausible), "--oversample", "2",
                 "--select-by", "plausible"]) == 0
    chosen = load_dataset(plausible).meta.generator["selection"]
    assert chosen["by"] == "plausible" and chosen["n_kept"] == 3 and 0.0 <= chosen["rating_candidates"] <= chosen["rating_kept"] <= 1.0
    assert main(["augment", "--model", str(model), "--episodes", "3", "--out", str(tmp_path / "x"), "--oversample", "0.5"]) == 2
    assert main(["augment", "--model", str(model), "--episodes", "3", "--out", str(tmp_path / "x"), "--match-wins"]) == 2
    assert not (tmp_path / "x").exists()


def test_select_by_qtot_keeps_the_best_rated_in_their_order(qmix_dir, random_batch_3m):
    from eaq.diffusion.fidelity import episode_q_tot
    from eaq.diffusion.select import select_best

    qtot = load_qtot(qmix_dir)
    rating = episode_q_tot(qtot, random_batch_3m)
    kept, info = select_best(random_batch_3m, qtot=qtot, n_keep=5)
    best = np.sort(np.argsort(-rating, kind="stable")[:5])
    np.testing.assert_array_equal(kept.actions, random_batch_3m.actions[best])  # sampled order kept
    assert info["n_candidates"] == 16 and info["n_kept"] == 5
    assert info["threshold"] == pytest.approx(rating[best].min()) and rating[best].min() >= np.delete(rating, best).max()
    assert info["rating_kept"] > info["rating_candidates"]
    assert select_best(random_batch_3m, qtot=qtot, n_keep=40)[0].n_episodes == 16  # fewer candidates: all kept
    with pytest.raises(ValueError, match="n_keep"):
        select_best(random_batch_3m, qtot=qtot, n_keep=0)


def test_select_by_plausibility_keeps_the_episodes_whose_units_move_as_smax_allows(random_batch_3m):
    import dataclasses

    from eaq.diffusion.select import plausible_share, select_best
    from eaq.env.project import projector

    real = random_batch_3m
    share = plausible_share(real)
    assert share.shape == (16,) and share.min() > 0.9  # real SMAX moves are possible
    # in the first 4 episodes, every ally jumps (5, 5) away and back at alternate steps
    proj = projector("3m")
    n_units, n_own = proj._n_units, proj._n_own  # the state's layout: per-unit features first
    state = real.state.copy()
    units = state[..., : n_units * n_own].reshape(*state.shape[:-1], n_units, n_own)
    units[:4, 1::2, : real.spec.n_agents, 1:3] += 5.0  # features 1-2: the unit's position
    state[..., : n_units * n_own] = units.reshape(*state.shape[:-1], -1)
    broken = dataclasses.replace(real, state=state)
    share_broken = plausible_share(broken)
    assert share_broken[:4].max() < 0.05 and np.allclose(share_broken[4:], share[4:])
    kept, info = select_best(broken, 12, by="plausible")
    assert info["by"] == "plausible" and info["n_kept"] == 12 and info["rating_kept"] > info["rating_candidates"]
    np.testing.assert_array_equal(kept.state, broken.state[4:])  # the teleported ones are out
    with pytest.raises(ValueError, match="needs a Q_tot"):
        select_best(real, 4, by="qtot")
    with pytest.raises(ValueError, match="choose one of"):
        select_best(real, 4, by="nope")


def test_select_by_qtot_can_keep_the_real_share_of_wins(qmix_dir, random_batch_3m):
    import dataclasses

    from eaq.diffusion.fidelity import episode_q_tot
    from eaq.diffusion.select import select_best

    qtot = load_qtot(qmix_dir)
    # make 6 of the 16 episodes wins: each gets the maximum return on its last step
    b = random_batch_3m
    rewards, last = b.rewards.copy(), b.lengths() - 1
    rewards[:6] = 0.0
    rewards[np.arange(6), last[:6]] = b.spec.max_return
    b = dataclasses.replace(b, rewards=rewards)
    won = b.wins()
    assert won.sum() == 6, "every random 3m episode ends (terminal), so a full return is a win"
    rating = episode_q_tot(qtot, b)
    kept, info = select_best(b, qtot=qtot, n_keep=8, win_share=0.25)
    assert kept.wins().sum() == 2 and info["win_share_kept"] == 0.25 and info["win_share_target"] == 0.25
    best = lambda kind, k: np.flatnonzero(kind)[np.argsort(-rating[kind], kind="stable")[:k]]  # noqa: E731
    expected = np.sort(np.concatenate([best(won, 2), best(~won, 6)]))  # each kind's best-rated
    np.testing.assert_array_equal(kept.actions, b.actions[expected])
    # one kind short: the other fills in (only 6 wins exist; 10 asked at share 1.0)
    assert select_best(b, qtot=qtot, n_keep=10, win_share=1.0)[0].wins().sum() == 6
    with pytest.raises(ValueError, match="win_share"):
        select_best(b, qtot=qtot, n_keep=8, win_share=1.5)


def test_a_copied_qtot_counts_as_the_same_for_resuming(qmix_dir, tmp_path):
    """A diffusion model records its Q_tot's path; a benchmark run that was copied (or seeded by
    --extend-from) must still resume it, and a different Q_tot must still be refused."""
    import json
    import shutil

    from eaq.diffusion.train import _same_qtot

    copy = tmp_path / "copy"
    shutil.copytree(qmix_dir, copy)
    assert _same_qtot(str(qmix_dir), str(copy))
    record = json.loads((copy / "config.json").read_text())
    # a Q_tot recorded before a config field existed (here cql_on_synthetic) is the same Q_tot
    legacy = {**record, "config": {k: v for k, v in record["config"].items() if k != "cql_on_synthetic"}}
    (copy / "config.json").write_text(json.dumps(legacy))
    assert _same_qtot(str(qmix_dir), str(copy))
    record["config"]["lr"] = record["config"]["lr"] * 2
    (copy / "config.json").write_text(json.dumps(record))
    assert not _same_qtot(str(qmix_dir), str(copy))
    assert not _same_qtot(str(qmix_dir), str(tmp_path / "missing"))
    assert not _same_qtot(str(qmix_dir), None)


def test_relaxed_episode_from_state_layout_recomputes_observations(random_batch_3m):
    batch = random_batch_3m.select(np.arange(2))
    norm = fit_normaliser(random_batch_3m, obs_from_state=True)
    layout = EpisodeLayout(batch.spec, obs_from_state=True)
    x = jnp.asarray(encode(batch, norm, 100, obs_from_state=True))
    obs, probs, state = relaxed_episode(x, norm.mean, norm.scale, layout, temperature=0.05)
    m = batch.mask
    np.testing.assert_array_equal(np.asarray(probs).argmax(-1)[m], batch.actions[m])
    np.testing.assert_allclose(np.asarray(obs)[m], batch.observations[m], atol=1e-5)
    np.testing.assert_allclose(np.asarray(state)[m], batch.state[m], atol=1e-5)


def test_relaxed_episode_with_motion_sees_the_positions_the_decoder_builds(random_batch_3m):
    """With motion channels, Q_tot is shown each living unit's first position plus its
    displacements (what the synthetic data will hold), not the model's own position channels;
    positions_from_motion=False (models before the field) shows the latter."""
    batch = random_batch_3m.select(np.arange(4))
    norm = fit_normaliser(random_batch_3m, obs_from_state=True, motion=True)
    layout = EpisodeLayout(batch.spec, obs_from_state=True, motion=True)
    x = encode(batch, norm, 100, obs_from_state=True, motion=True)
    alive = batch.mask & (batch.state[..., 0] > 0)  # unit 0 alive, in the episode
    assert alive[:, 1:].any() and x.shape[1] == alive.shape[1]
    x_pos = layout.state_start + 1  # unit 0's x position channel (features: health, x, y, ...)
    x[:, 1:, x_pos] += alive[:, 1:] * 2.0 / norm.scale[x_pos]  # its own position 2 units off after t = 0
    x = jnp.asarray(x)
    _, _, state = relaxed_episode(x, norm.mean, norm.scale, layout, temperature=0.05)
    np.testing.assert_allclose(np.asarray(state)[batch.mask], batch.state[batch.mask], atol=1e-4)
    _, _, own = relaxed_episode(x, norm.mean, norm.scale, layout, 0.05, positions_from_motion=False)
    np.testing.assert_allclose(np.asarray(own)[:, 1:, 1][alive[:, 1:]], batch.state[:, 1:, 1][alive[:, 1:]] + 2.0, atol=1e-4)


def test_q_loss_with_motion_reaches_the_displacement_channels(qmix_dir, random_batch_3m):
    """Under jit, Q_tot's state holds the rebuilt positions: with target="episode" the Q loss's
    gradient flows into the displacement channels, and without positions_from_motion (where
    nothing reads them) it does not."""
    qtot = load_qtot(qmix_dir)
    batch = random_batch_3m.select(np.arange(3))
    norm = fit_normaliser(random_batch_3m, obs_from_state=True, motion=True)
    layout = EpisodeLayout(batch.spec, obs_from_state=True, motion=True)
    x0_hat = jnp.asarray(encode(batch, norm, 100, obs_from_state=True, motion=True))
    mask = jnp.asarray(batch.mask)

    def motion_grad(from_motion: bool) -> float:
        loss = jax.jit(lambda x: q_loss(qtot.apply, qtot.params, x, mask, norm.mean, norm.scale, layout, 0.25,
                                        "episode", from_motion)[0])
        return float(jnp.abs(layout.split(jax.grad(loss)(x0_hat))["motion"]).sum())

    assert motion_grad(True) > 0 and motion_grad(False) == 0


def test_cli_trains_a_q_guided_from_state_model(qmix_dir, random_batch_3m, tmp_path):
    """The Q_tot loss on the from_state layout: observations come from the predicted state."""
    data = save_dataset(random_batch_3m, tmp_path / "real")
    model = tmp_path / "model"
    args = ["train-diffusion", "--data", str(data), "--out", str(model), "--preset", "tiny", "--observations", "from_state"]
    assert main([*args, "--qtot", str(qmix_dir), "--q-weight", "0.1", "--updates", "10"]) == 0
    record = json.loads((model / "config.json").read_text())
    assert record["diffusion"]["observations"] == "from_state" and record["channels"] == 108
    history = json.loads((model / "metrics.json").read_text())
    assert all(np.isfinite(h["loss_q"]) and h["loss_q"] != 0 for h in history)
