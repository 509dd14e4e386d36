"""Episode diffusion model: codec, U-Net, training, sampling, decoding/filtering, data parallelism.

Everything runs for real on tiny configs (a U-Net of width 8, a few updates, 16 random 3m
episodes); the Q_tot-guided parts are in test_diffusion_qtot.py.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from eaq.data.validate import validate_batch
from eaq.diffusion.augment import augment, make_sampler, sample_episodes
from eaq.diffusion.codec import EpisodeLayout, encode, fit_normaliser
from eaq.diffusion.config import PRESETS, DiffusionConfig
from eaq.diffusion.decode import decode, to_batch
from eaq.diffusion.diffusion import cosine_alpha_bars, ddim_sample, diffusion_loss
from eaq.diffusion.fidelity import dynamics_consistency
from eaq.diffusion.inpaint import Inpainting, inpaint_targets
from eaq.diffusion.relabel import fit_reward_model, relabel_rewards
from eaq.diffusion.train import load_model, make_train, replicate, train_diffusion
from eaq.diffusion.unet import TemporalUNet, padded_length

N_SEG = 10  # every segment call below uses the same length: one compilation per trainer
# make_train is cached on the compile-relevant config, so the fixtures share compilations.
TINY = dataclasses.replace(PRESETS["tiny"], learning_rate=1e-3, n_updates=N_SEG, updates_per_segment=N_SEG)


def test_codec_round_trip_is_exact_on_real_data(random_batch_3m):
    batch = random_batch_3m
    norm = fit_normaliser(batch)
    x = encode(batch, norm, length=104)
    assert x.shape == (16, 104, EpisodeLayout(batch.spec).n_channels) == (16, 104, 348)
    decoded = decode(x, norm, batch.spec)
    assert (decoded.broken == "").all()
    back, dropped = to_batch(decoded, batch.meta)
    assert dropped == {}
    validate_batch(back)
    for name in ("actions", "legals", "rewards", "terminals", "truncations", "mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name), err_msg=name)
    np.testing.assert_allclose(back.observations, batch.observations, atol=1e-5)
    np.testing.assert_allclose(back.state, batch.state, atol=1e-5)
    # the raw argmax of real one-hot actions is always legal
    assert decoded.raw_legal[batch.mask].all()


def test_constant_channels_decode_to_their_constant_whatever_the_model_says(random_batch_3m):
    batch = random_batch_3m
    norm = fit_normaliser(batch)
    constant = norm.scale == 0
    kinds = EpisodeLayout(batch.spec).channel_kinds()
    assert constant.any() and set(kinds[constant]) <= {"obs", "state"}
    x = encode(batch, norm)
    assert (x[batch.mask][:, constant] == 0).all()
    noisy = x + np.random.default_rng(0).normal(0, 0.3, x.shape).astype(np.float32)
    raw = norm.denormalise(noisy)
    np.testing.assert_array_equal(raw[..., constant], np.broadcast_to(norm.mean[constant], raw[..., constant].shape))
    # a checkpoint's normaliser keeps the zeros through its tree form
    assert (type(norm).from_tree(norm.to_tree()).scale == 0).sum() == constant.sum()


def test_layout_split_finds_each_quantity(random_batch_3m):
    batch = random_batch_3m
    layout = EpisodeLayout(batch.spec)
    norm = fit_normaliser(batch)
    parts = layout.split(norm.denormalise(encode(batch, norm)))
    # inside episodes (padding of a constant channel decodes to its constant; decode masks it)
    np.testing.assert_allclose(parts["state"][batch.mask], batch.state[batch.mask], atol=1e-5)
    np.testing.assert_array_equal(parts["alive"], batch.mask.astype(np.float32))
    np.testing.assert_array_equal(parts["legal"], batch.legals.astype(np.float32))


def test_unet_shapes_and_padding():
    assert padded_length(100, 4) == 104 and padded_length(100, 3) == 100 and padded_length(100, 1) == 100
    model = TemporalUNet(out_channels=12, base_channels=8, channel_mults=(1, 2, 4, 8))
    x = jnp.zeros((2, 104, 12))
    t = jnp.array([0, 5])
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, t)  # shapes only: no compile
    assert jax.eval_shape(model.apply, params, x, t).shape == (2, 104, 12)
    with pytest.raises(ValueError, match="multiple of 8"):
        jax.eval_shape(model.apply, params, jnp.zeros((2, 100, 12)), t)


@pytest.mark.parametrize(
    ("flax_cls", "ours", "kwargs"),
    [
        ("Conv", "Conv", {"kernel_size": (5,)}),
        ("Conv", "Conv", {"kernel_size": (1,)}),
        ("Conv", "Conv", {"kernel_size": (3,), "strides": (2,)}),
        ("ConvTranspose", "ConvTranspose", {"kernel_size": (4,), "strides": (2,)}),
    ],
)
@pytest.mark.parametrize("length", [25, 50, 13])
def test_matmul_convs_equal_flax_convs(flax_cls, ours, kwargs, length):
    """Same parameters, same initial values, same outputs as flax's XLA convolutions."""
    import flax.linen as nn

    from eaq.diffusion import conv

    x = jax.random.normal(jax.random.PRNGKey(1), (2, length, 6))
    reference, module = getattr(nn, flax_cls)(7, padding="SAME", **kwargs), getattr(conv, ours)(7, **kwargs)
    p_ref, p_ours = reference.init(jax.random.PRNGKey(0), x), module.init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_ours)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_ours), strict=True):
        np.testing.assert_array_equal(a, b)
    y_ref, y_ours = reference.apply(p_ref, x), module.apply(p_ref, x)
    assert y_ref.shape == y_ours.shape
    np.testing.assert_allclose(y_ours, y_ref, atol=1e-5)
    with pytest.raises(ValueError, match="SAME"):
        getattr(conv, ours)(7, padding="VALID", **kwargs).init(jax.random.PRNGKey(0), x)


def test_sample_chunk_is_rounded_to_the_device_count(trained_model):
    _, chunk = make_sampler(load_model(trained_model[0]), chunk=5)
    assert chunk == 6  # 2 devices; nothing is compiled until the sampler is called


def test_q_target_default_and_legacy_configs():
    assert DiffusionConfig().q_target == "actions"
    saved_before_the_field = {k: v for k, v in DiffusionConfig().to_dict().items() if k != "q_target"}
    assert DiffusionConfig.from_dict(saved_before_the_field).q_target == "episode"
    with pytest.raises(ValueError, match="q_target"):
        DiffusionConfig(q_target="states").validate()


def test_q_positions_default_and_legacy_configs():
    """Motion models with a Q loss saved before the field judged the model's own positions; the
    field is irrelevant to (and reads its default for) the other layouts and for EAQ^-Q models,
    so that an old EAQ^-Q motion model still resumes under today's default."""
    assert DiffusionConfig().q_positions_from_motion
    cases = (("from_state_motion", 0.03, False), ("from_state_motion", 0.0, True), ("from_state", 0.1, True),
             ("generated", 0.1, True))
    for observations, q_weight, legacy in cases:
        saved = DiffusionConfig(observations=observations, q_weight=q_weight).to_dict()
        del saved["q_positions_from_motion"]
        assert DiffusionConfig.from_dict(saved).q_positions_from_motion is legacy


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of 8"):
        DiffusionConfig(base_channels=12).validate()
    with pytest.raises(ValueError, match="sample_steps"):
        DiffusionConfig(n_diffusion_steps=10, sample_steps=20).validate()
    with pytest.raises(ValueError, match="sampler_eta"):
        DiffusionConfig(sampler_eta=1.5).validate()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_reaches_a_gaussian_with_its_exact_denoiser(eta):
    """Data x0 ~ N(0, 4): E[x0 | x_t] is linear, and both the deterministic (eta 0) and the
    ancestral (eta 1) sampler must end with the data's spread; eta 1 must also add noise."""
    ab = jnp.asarray(cosine_alpha_bars(100))
    var = 4.0

    def exact(params, x, t):
        a = ab[t][:, None, None]
        return jnp.sqrt(a) * var / (a * var + 1 - a) * x

    x = ddim_sample(exact, None, jax.random.PRNGKey(0), (2000, 4, 2), ab, 100, 100.0, eta=eta)
    assert float(x.std()) == pytest.approx(2.0, rel=0.05)
    if eta > 0:  # same start noise, different path
        x0 = ddim_sample(exact, None, jax.random.PRNGKey(0), (2000, 4, 2), ab, 100, 100.0)
        assert float(jnp.abs(x - x0).mean()) > 0.1


@pytest.fixture(scope="module")
def setup(random_batch_3m):
    """Encoded data and a 2-device trainer (tiny U-Net)."""
    batch = random_batch_3m
    layout = EpisodeLayout(batch.spec)
    norm = fit_normaliser(batch)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    trainer = make_train(TINY, layout, None, mesh)
    data = replicate(jnp.asarray(encode(batch, norm, trainer.length)), mesh)
    mask = replicate(jnp.asarray(batch.mask), mesh)
    norm_tree = replicate(norm.to_tree(), mesh)
    return batch, layout, norm_tree, mesh, trainer, data, mask


def _fixed_loss(trainer, params, data):
    """The diffusion loss on the whole fixed batch for 4 fixed noise draws."""
    ab = jnp.asarray(cosine_alpha_bars(TINY.n_diffusion_steps))
    valid = jnp.arange(trainer.length) < 100

    @jax.jit
    def loss(params):
        keys = jax.random.split(jax.random.PRNGKey(123), 4)
        one = lambda k: diffusion_loss(trainer.denoise, params, data, valid, k, ab)[0]  # noqa: E731
        return jax.lax.map(one, keys).mean()

    return float(loss(params))


def test_training_reduces_loss_on_a_fixed_batch(setup):
    _, _, norm, mesh, trainer, data, mask = setup
    state = replicate(trainer.init(jax.random.PRNGKey(0)), mesh)
    before = _fixed_loss(trainer, state.params, data)
    for _ in range(3):
        state, metrics = trainer.segment(state, data, mask, norm, None, N_SEG)
    after = _fixed_loss(trainer, state.params, data)
    assert int(state.step) == 3 * N_SEG
    assert np.isfinite(metrics["loss"]).all()
    assert after < 0.9 * before, (before, after)


def test_training_is_data_parallel_over_two_devices(setup):
    batch, layout, norm, mesh, trainer, data, mask = setup
    assert jax.device_count() == 2 and mesh.size == 2
    state = replicate(trainer.init(jax.random.PRNGKey(1)), mesh)
    state2, m2 = trainer.segment(state, data, mask, norm, None, N_SEG)
    leaf = jax.tree.leaves(state2.params)[0]
    assert len(leaf.sharding.device_set) == 2  # the model lives on both devices

    # The same updates on one device give the same result: the batch split is exact.
    mesh1 = Mesh(np.array(jax.devices()[:1]), ("data",))
    trainer1 = make_train(TINY, layout, None, mesh1)
    state1, m1 = trainer1.segment(
        replicate(trainer1.init(jax.random.PRNGKey(1)), mesh1),
        replicate(jax.device_get(data), mesh1),
        replicate(jax.device_get(mask), mesh1),
        replicate(jax.device_get(norm), mesh1),
        None,
        N_SEG,
    )
    # (Parameters are not compared: Adam's first steps amplify float-summation-order noise.)
    np.testing.assert_allclose(m1["loss_diffusion"], m2["loss_diffusion"], rtol=2e-3)
    assert int(state1.step) == int(state2.step) == N_SEG


def test_decode_filter_drops_and_counts_broken_samples(random_batch_3m):
    batch = random_batch_3m
    norm = fit_normaliser(batch)
    layout = EpisodeLayout(batch.spec)
    x = encode(batch, norm, 104)
    x[0, 3, 5] = np.nan  # non-finite
    x[1, 0, layout.alive_channel] = -1.0  # not even a first step
    x[5, 3, layout.alive_channel] = -1.0  # stops after t=2: a real ending there
    layout.split(x)["legal"][2, 0, 0, :] = -1.0  # agent 0 has no legal action at t=0 (a view)
    x[3, :, layout.terminal_channel] = -1.0  # no ending: runs to the time limit...
    x[3, :, layout.alive_channel] = 1.0  # ...and stays alive with a legal action: a valid
    layout.split(x)["legal"][3, :, :, 4] = 1.0  # truncated episode
    x[4, :, layout.reward_channel] = 10.0  # returns far above the maximum
    decoded = decode(x, norm, batch.spec)
    kept, dropped = to_batch(decoded, batch.meta)
    assert dropped == {
        "non-finite values": 1,
        "empty episode": 1,
        "agent without a legal action": 1,
        "implausible return": 1,
    }
    assert kept.n_episodes == 12
    validate_batch(kept)
    # sample 3 became a time-limit episode: full length, truncated at the last step
    j = 3 - 3  # samples 0-2 were dropped before it
    assert kept.mask[j].all() and kept.truncations[j, -1] and not kept.terminals[j].any()
    # sample 5 (kept index 1) ended where its alive channel switched off
    assert kept.lengths()[1] == 3 and kept.terminals[1, 2]


def _encoded(batch, seed: int):
    """(normaliser, x [E, 100, C], views of x by quantity, rng): real episodes to tamper with."""
    norm = fit_normaliser(batch)
    x = encode(batch, norm, 100)
    return norm, x, EpisodeLayout(batch.spec).split(x), np.random.default_rng(seed)


def test_decode_picks_legal_actions_only(random_batch_3m):
    batch = random_batch_3m
    norm, x, parts, rng = _encoded(batch, 0)
    parts["action"][...] = rng.normal(size=parts["action"].shape)  # views: edits x in place
    decoded = decode(x, norm, batch.spec)
    kept, _ = to_batch(decoded, batch.meta)
    validate_batch(kept)  # every chosen action is legal under the decoded legals
    assert decoded.raw_legal[batch.mask].mean() < 1.0  # random logits often prefer illegal ones


@pytest.fixture(scope="module")
def trained_model(random_batch_3m, tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion") / "model"
    cfg = TINY
    train_diffusion(cfg, random_batch_3m, None, out, progress=False)
    return out, cfg


def test_train_diffusion_writes_checkpoint_and_resumes(trained_model, random_batch_3m):
    out, cfg = trained_model
    record = json.loads((out / "config.json").read_text())
    assert record["diffusion"]["n_updates"] == N_SEG and record["n_devices"] == 2
    assert load_model(out).step == N_SEG
    # re-running with more updates resumes from the checkpoint instead of starting over
    train_diffusion(dataclasses.replace(cfg, n_updates=2 * N_SEG), random_batch_3m, None, out, progress=False)
    model = load_model(out)
    assert model.step == 2 * N_SEG
    history = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in history] == [N_SEG, 2 * N_SEG]
    np.testing.assert_array_equal(model.normaliser.scale, fit_normaliser(random_batch_3m).scale)
    with pytest.raises(ValueError, match="differs"):
        train_diffusion(dataclasses.replace(cfg, base_channels=16), random_batch_3m, None, out, progress=False)
    with pytest.raises(ValueError, match="needs a Q_tot"):
        train_diffusion(dataclasses.replace(cfg, q_weight=0.1), random_batch_3m, None, out, progress=False)


def test_sampler_output_is_finite_with_the_right_shape(trained_model):
    out, _ = trained_model
    model = load_model(out)
    sample, chunk = make_sampler(model)  # the chunk augment uses too: one compilation
    assert chunk == TINY.sample_chunk == 32
    x = np.asarray(sample(jax.random.PRNGKey(0)))
    assert x.shape == (32, model.length, 348)
    assert np.isfinite(x).all()


def test_augment_sampler_overrides_are_recorded(trained_model, random_batch_3m):
    out, _ = trained_model
    synthetic, _ = augment(out, 4, seed=3, real=random_batch_3m, sample_steps=2, sampler_eta=1.0)
    assert synthetic.meta.generator["sample_steps"] == 2 and synthetic.meta.generator["sampler_eta"] == 1.0
    with pytest.raises(ValueError, match="sampler_eta"):
        augment(out, 4, seed=3, real=random_batch_3m, sampler_eta=-0.1)


def test_augment_writes_only_valid_synthetic_episodes(trained_model, random_batch_3m):
    out, _ = trained_model
    synthetic, report = augment(out, 8, seed=3, real=random_batch_3m)
    validate_batch(synthetic)
    assert synthetic.meta.source == "synthetic" and synthetic.meta.seed == 3
    assert 1 <= synthetic.n_episodes <= 8
    assert report.n_valid == synthetic.n_episodes
    assert report.n_generated - sum(report.dropped.values()) >= report.n_valid
    assert 0 <= report.validity_rate <= 1 and 0 <= report.legality_rate <= 1
    assert set(report.channel_distance) >= {"obs", "state", "reward", "action", "terminal"}
    assert len(report.per_channel_distance) == 348
    assert report.q_tot is None  # no Q_tot was given or recorded
    json.dumps(report.to_dict())


def test_inpainting_copies_real_lengths_and_prefixes_exactly(trained_model, random_batch_3m):
    """Fixed entries come out exactly as given; the decoded episodes have their source's length
    and ending, and their first k steps are the source's steps."""
    batch = random_batch_3m
    model = load_model(trained_model[0])
    layout = EpisodeLayout(batch.spec)
    sample, chunk = make_sampler(model, guidance=30.0)
    real_x = encode(batch, model.normaliser, model.length)
    lengths = batch.mask.sum(axis=1)
    inpainting = Inpainting(lengths=True, prefix=1.0)
    known, mask, guide, info = inpaint_targets(real_x, lengths, layout, inpainting, chunk, np.random.default_rng(0))
    src, k = info["source_episodes"], info["prefix_steps"]
    assert (mask[guide]).all() and set(np.flatnonzero(guide.any(axis=(0, 1)))) == {layout.alive_channel, layout.terminal_channel}
    assert ((k >= 1) & (k <= lengths[src] - 1)).all() and len(np.unique(k)) > 1
    x = np.asarray(sample(jax.random.PRNGKey(1), known, mask, guide))
    np.testing.assert_array_equal(x[mask], known[mask])
    assert not np.allclose(x[~mask], 0.0)  # the rest is generated
    d = decode(x, model.normaliser, batch.spec)
    np.testing.assert_array_equal(d.arrays["mask"].sum(axis=1), lengths[src])
    np.testing.assert_array_equal(d.arrays["terminals"], batch.terminals[src])
    np.testing.assert_array_equal(d.arrays["truncations"], batch.truncations[src])
    prefix = np.arange(batch.spec.max_steps)[None, :] < k[:, None]  # [chunk, T]
    np.testing.assert_array_equal(d.arrays["actions"][prefix], batch.actions[src][prefix])
    np.testing.assert_allclose(d.arrays["state"][prefix], batch.state[src][prefix], atol=1e-5)
    np.testing.assert_allclose(d.arrays["observations"][prefix], batch.observations[src][prefix], atol=1e-5)
    # nothing fixed: the same samples as the plain sampler (guidance has nothing to pull toward)
    none = np.zeros_like(mask)
    np.testing.assert_allclose(
        np.asarray(sample(jax.random.PRNGKey(1), known, none, none)), np.asarray(sample(jax.random.PRNGKey(1))), atol=1e-5
    )


def test_augment_with_inpainting_records_it_and_needs_real_data(trained_model, random_batch_3m, capsys):
    out, _ = trained_model
    inpainting = Inpainting(lengths=True, prefix=0.5)
    synthetic, report = augment(out, 8, seed=3, real=random_batch_3m, inpainting=inpainting)
    validate_batch(synthetic)
    assert synthetic.meta.generator["inpainting"] == inpainting.to_dict()
    assert 0 < report.extra["inpainting"]["copied_step_share"] < 1
    report.render()
    assert "inpainted from real" in capsys.readouterr().out
    assert set(synthetic.mask.sum(axis=1)) <= set(random_batch_3m.mask.sum(axis=1))
    with pytest.raises(ValueError, match="real episodes"):
        sample_episodes(load_model(out), 4, inpainting=inpainting)
    with pytest.raises(ValueError, match=r"prefix=1.5 must be in \[0, 1\]"):
        Inpainting(prefix=1.5)


def test_dynamics_consistency_ignores_state_dims_that_never_change(random_batch_3m):
    """A wobble on state features that real data never changes (unit types, ...) is reported
    as drift, not divided by a ~0 std into a 10^4 ratio; scrambled dynamics still score worse."""
    real = random_batch_3m
    same = dynamics_consistency(real, real, n_updates=300)
    assert same["constant_state_dims"] > 0 and same["synthetic_change_on_constant_dims"] == 0.0
    constant = np.ptp(real.state[real.mask], axis=0) == 0
    rng = np.random.default_rng(0)
    wobble = real.state + np.where(constant, 0.05 * rng.standard_normal(real.state.shape), 0.0).astype(np.float32)
    wobbly = dynamics_consistency(real, dataclasses.replace(real, state=wobble), n_updates=300)
    assert wobbly["synthetic_change_on_constant_dims"] > 0.01
    assert wobbly["ratio"] < 10 * max(same["ratio"], 1.0)
    scrambled = dataclasses.replace(real, state=real.state[:, rng.permutation(real.state.shape[1])])
    assert dynamics_consistency(real, scrambled, n_updates=300)["ratio"] > 2 * same["ratio"]


def test_relabel_rewards_recovers_rewards_from_the_states(random_batch_3m):
    """SMAX pays for health lost: a model fit on real (state, change) gives back real rewards,
    repairs scrambled ones, keeps final-step rewards, and refuses to act when it cannot fit."""
    real = random_batch_3m
    model, r2 = fit_reward_model(real)
    assert r2 > 0.99
    inside = real.mask[:, :-1] & real.mask[:, 1:]
    rng = np.random.default_rng(0)
    scrambled = dataclasses.replace(real, rewards=np.where(real.mask, rng.permutation(real.rewards.ravel()).reshape(real.rewards.shape), 0).astype(np.float32))
    fixed, info = relabel_rewards(scrambled, real)
    assert info["applied"] and info["heldout_r2"] > 0.99
    np.testing.assert_allclose(fixed.rewards[:, :-1][inside], real.rewards[:, :-1][inside], atol=2e-3)
    last = real.lengths() - 1
    rows = np.arange(real.n_episodes)
    np.testing.assert_array_equal(fixed.rewards[rows, last], scrambled.rewards[rows, last])
    assert (fixed.rewards[~real.mask] == 0).all()
    noise_real = dataclasses.replace(real, rewards=(rng.random(real.rewards.shape) * real.mask).astype(np.float32))
    same, info = relabel_rewards(scrambled, noise_real)
    assert not info["applied"] and "R^2" in info["why"]
    assert same is scrambled


def test_decode_with_projection_gives_episodes_consistent_with_their_states(random_batch_3m):
    from eaq.env.project import previous_actions, projector

    batch = random_batch_3m
    norm, x, parts, rng = _encoded(batch, 1)
    parts["obs"][...] += rng.normal(size=parts["obs"].shape)  # observations off the state
    parts["legal"][...] = 1.0  # the model claims every action is legal
    parts["action"][...] = rng.normal(size=parts["action"].shape)
    proj = projector("3m")
    kept, dropped = to_batch(decode(x, norm, batch.spec, proj), batch.meta)
    assert kept.n_episodes == batch.n_episodes and not dropped
    validate_batch(kept)
    m = kept.mask
    np.testing.assert_array_equal(kept.mask, batch.mask)  # the real endings are kept
    np.testing.assert_array_equal(kept.legals[m], batch.legals[m])  # legal under the state again
    obs = np.asarray(proj.observe(kept.state, previous_actions(kept.actions), kept.observations))
    np.testing.assert_allclose(obs[m], kept.observations[m], atol=1e-6)  # a fixed point
    without = to_batch(decode(x, norm, batch.spec), batch.meta)[0]
    assert not np.allclose(without.observations[m], kept.observations[m])


def test_actions_from_motion_restores_the_moves_the_states_show(random_batch_3m):
    """With the action channels scrambled, reading actions off the states' motion gives back
    every real move (and a legal stop or attack where the unit stood); without it they stay off."""
    from eaq.env.project import STOP_ACTION, projector

    batch = random_batch_3m
    norm, x, parts, rng = _encoded(batch, 2)
    parts["action"][...] = rng.normal(size=parts["action"].shape)
    proj = projector("3m")
    moves, known, _ = proj.motion(batch.state, batch.mask)
    moved = known & (moves >= 0)
    decoded = decode(x, norm, batch.spec, proj, actions_from_motion=True)
    kept, dropped = to_batch(decoded, batch.meta)
    assert not dropped
    validate_batch(kept)  # still legal under the decoded legals
    np.testing.assert_array_equal(kept.actions[moved], batch.actions[moved])
    assert (kept.actions[known & ~moved] >= STOP_ACTION).all()
    assert decoded.from_motion.any() and not decoded.from_motion[~known].any()
    plain = to_batch(decode(x, norm, batch.spec, proj), batch.meta)[0]
    assert (plain.actions[moved] == batch.actions[moved]).mean() < 0.5
    np.testing.assert_array_equal(plain.actions[~known], kept.actions[~known])  # only known steps change
    with pytest.raises(ValueError, match="projection"):
        decode(x, norm, batch.spec, actions_from_motion=True)


@pytest.mark.parametrize("motion", [False, True])
def test_from_state_layout_round_trips_real_data_exactly(random_batch_3m, motion):
    """Without observation or legal channels, decoding rebuilds them from the state (and the
    enemies' action channels) exactly as SMAX stored them; with motion channels the positions
    are rebuilt from the first step's and the displacements, and come back too."""
    batch = random_batch_3m
    norm = fit_normaliser(batch, obs_from_state=True, motion=motion)
    layout = EpisodeLayout(batch.spec, obs_from_state=True, motion=motion)
    C = 3 * 8 + 72 + 3 * 3 + 3 + (2 * 6 if motion else 0)
    assert layout.n_channels == C == (120 if motion else 108)
    parts = {"action", "state", "enemy", "reward", "terminal", "alive"} | ({"motion"} if motion else set())
    assert set(layout.split(np.zeros((1, C)))) == parts
    x = encode(batch, norm, 104, obs_from_state=True, motion=motion)
    assert x.shape == (16, 104, C)
    back, dropped = to_batch(decode(x, norm, batch.spec, obs_from_state=True, motion=motion), batch.meta)
    assert dropped == {}
    for name in ("actions", "legals", "rewards", "terminals", "truncations", "mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name), err_msg=name)
    np.testing.assert_allclose(back.observations, batch.observations, atol=1e-5)
    np.testing.assert_allclose(back.state, batch.state, atol=1e-5)
    if motion:  # the positions really come from the motion channels
        x_motion = layout.split(np.arange(C))["motion"][0, 0]  # channel of unit 0's x displacement
        x[:, 3:, x_motion] += 1.0 / norm.scale[x_motion]  # one more unit to the east per step
        moved = to_batch(decode(x, norm, batch.spec, obs_from_state=True, motion=True), batch.meta)[0]
        m = moved.mask[:, 5:] & (batch.state[:, 5:, 0] > 0)  # unit 0 alive, in the episode
        assert m.any() and (moved.state[:, 5:, 1][m] > batch.state[:, 5:, 1][m] + 1.5).mean() > 0.5
    with pytest.raises(ValueError, match="obs_from_state"):
        EpisodeLayout(batch.spec, motion=True)


def test_snapped_motion_decodes_possible_moves_along_the_generated_paths(random_batch_3m):
    """Real displacements blurred (shrunk to 40 % plus noise) decode to impossible moves; snapped
    to SMAX's moves every known ally move is possible, and the positions stay near the blurred
    ones (median under half a step, where the map's edge does not clip them)."""
    from eaq.env.project import projector

    batch = random_batch_3m
    norm = fit_normaliser(batch, obs_from_state=True, motion=True)
    layout = EpisodeLayout(batch.spec, obs_from_state=True, motion=True)
    raw = norm.denormalise(encode(batch, norm, 104, obs_from_state=True, motion=True))
    motion = layout.split(np.arange(layout.n_channels))["motion"]
    raw[..., motion] = 0.4 * raw[..., motion] + np.random.default_rng(0).normal(0, 0.1, raw[..., motion].shape)
    x = norm.normalise(raw)
    proj = projector("3m")
    blurred = to_batch(decode(x, norm, batch.spec, obs_from_state=True, motion=True), batch.meta)[0]
    snapped = to_batch(decode(x, norm, batch.spec, obs_from_state=True, motion=True, snap_motion=True), batch.meta)[0]
    np.testing.assert_array_equal(snapped.mask, batch.mask)
    known = proj.motion(snapped.state, snapped.mask).known
    assert known.sum() > 500
    assert proj.motion(snapped.state, snapped.mask).plausible[known].mean() > 0.97  # edges clip a few
    assert proj.motion(blurred.state, blurred.mask).plausible[known].mean() < 0.5
    m = batch.mask & (batch.state[..., 0] > 0)  # unit 0 alive, in the episode
    gap = np.linalg.norm(snapped.state[..., 1:3] - blurred.state[..., 1:3], axis=-1)[m]
    step = proj.ally_step_length(batch.state)[..., 0][m]
    assert np.median(gap / step) < 0.5 and (gap > 0).any()
    with pytest.raises(ValueError, match="motion channels"):
        decode(encode(batch, norm_plain := fit_normaliser(batch, obs_from_state=True), 104, obs_from_state=True),
               norm_plain, batch.spec, obs_from_state=True, snap_motion=True)


@pytest.mark.parametrize("observations, channels", [("from_state", 108), ("from_state_motion", 120)])
def test_from_state_model_trains_and_samples_consistent_episodes(random_batch_3m, tmp_path, observations, channels):
    from eaq.env.project import previous_actions, projector

    cfg = dataclasses.replace(TINY, observations=observations)
    out = tmp_path / "model"
    train_diffusion(cfg, random_batch_3m, None, out, progress=False)
    model = load_model(out)
    assert model.config.obs_from_state and json.loads((out / "config.json").read_text())["channels"] == channels
    synthetic, report = augment(out, 8, seed=0, real=random_batch_3m, actions_from_motion=True)
    validate_batch(synthetic)
    assert synthetic.meta.generator["projected_to_env"] and report.extra["projected_to_env"]
    assert synthetic.meta.generator["actions_from_motion"]
    assert 0.0 <= report.extra["actions_from_motion"]["relabelled_share"] <= 1.0
    assert report.motion["real"]["action_agreement"] > 0.99
    real_known = projector("3m").motion(random_batch_3m.state, random_batch_3m.mask).known
    real_moves = (random_batch_3m.actions < 4)[real_known].mean()  # 0-3: SMAX's movement actions
    assert 0.0 < real_moves and abs(report.motion["real"]["move_share"] - real_moves) < 0.01
    proj, m = projector("3m"), synthetic.mask
    moves, known, _ = proj.motion(synthetic.state, m)
    assert report.motion["synthetic"]["known_steps"] == known.sum()  # (a tiny model's episodes may have none)
    if known.any():
        assert report.motion["synthetic"]["action_agreement"] == 1.0  # read off that very motion
    obs = np.asarray(proj.observe(synthetic.state, previous_actions(synthetic.actions), synthetic.observations))
    np.testing.assert_allclose(obs[m], synthetic.observations[m], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(proj.view(synthetic.state)[1])[m], synthetic.legals[m])
    with pytest.raises(ValueError, match="observations"):
        dataclasses.replace(TINY, observations="dreamt").validate()


def test_horizon_cuts_episodes_into_truncations_and_decodes_over_the_time_limit(random_batch_3m):
    """A model with a horizon H sees every episode's first H steps; decoding its output gives
    episodes over the whole time limit: those shorter than H exactly as they were, the others
    cut after step H - 1 and ending in a truncation."""
    from eaq.diffusion.config import resolve_horizon

    batch = random_batch_3m
    lengths = batch.lengths()
    H = int(np.median(lengths))
    assert (lengths > H).any() and (lengths <= H).any()
    norm = fit_normaliser(batch, obs_from_state=True, motion=True)
    x = encode(batch, norm, H, obs_from_state=True, motion=True)
    full = encode(batch, norm, None, obs_from_state=True, motion=True)
    np.testing.assert_array_equal(x, full[:, :H])
    back, dropped = to_batch(decode(x, norm, batch.spec, obs_from_state=True, motion=True), batch.meta)
    assert dropped == {} and back.mask.shape == batch.mask.shape
    np.testing.assert_array_equal(back.lengths(), np.minimum(lengths, H))
    short, cut = lengths <= H, lengths > H
    for name in ("actions", "rewards", "terminals", "truncations", "mask"):
        np.testing.assert_array_equal(getattr(back, name)[short], getattr(batch, name)[short], err_msg=name)
    assert back.truncations[cut, H - 1].all() and not back.terminals[cut].any()
    np.testing.assert_array_equal(back.actions[cut, :H], batch.actions[cut, :H])
    # the requests: -1 the longest real episode, 0 the time limit; the config rounds and caps
    assert resolve_horizon(-1, 23) == 23 and resolve_horizon(0, 23) == 0 and resolve_horizon(40, 23) == 40
    with pytest.raises(ValueError, match="horizon"):
        resolve_horizon(-2, 23)
    assert DiffusionConfig(channel_mults=(1, 1, 2), horizon=23).steps(100) == (24, 24)
    assert DiffusionConfig(channel_mults=(1, 1, 2)).steps(100) == (100, 100)
    assert DiffusionConfig(channel_mults=(1, 2, 4), horizon=500).steps(100) == (100, 100)
    assert DiffusionConfig(channel_mults=(1, 2, 4, 8), horizon=99).steps(100) == (104, 100)
    with pytest.raises(ValueError, match="horizon"):
        DiffusionConfig(horizon=-1).validate()
    with pytest.raises(ValueError, match="resolve"):
        DiffusionConfig(horizon=-1).steps(100)


def test_model_with_a_horizon_trains_and_samples_short_episodes(random_batch_3m, tmp_path):
    cfg = dataclasses.replace(TINY, observations="from_state_motion", horizon=int(np.median(random_batch_3m.lengths())))
    L, steps = cfg.steps(random_batch_3m.spec.max_steps)
    out = tmp_path / "model"
    train_diffusion(cfg, random_batch_3m, None, out, progress=False)
    model = load_model(out)
    assert model.length == L < 100 and json.loads((out / "config.json").read_text())["diffusion"]["horizon"] == cfg.horizon
    inpainting = Inpainting(lengths=True, prefix=0.5)  # real lengths beyond the horizon are cut
    synthetic, _ = augment(out, 8, seed=0, real=random_batch_3m, actions_from_motion=True, inpainting=inpainting)
    validate_batch(synthetic)
    assert synthetic.mask.shape[1] == 100 and synthetic.lengths().max() <= steps
    assert not synthetic.mask[:, steps:].any()


def test_min_snr_weights_move_the_loss_to_the_less_noisy_levels():
    from eaq.diffusion.diffusion import min_snr_weights

    ab = cosine_alpha_bars(100)
    w = min_snr_weights(ab, 5.0)
    snr = ab / (1 - ab)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w / w[-1], np.minimum(snr, 5.0) / min(snr[-1], 5.0), rtol=1e-4)
    assert w[0] == w.max() and w[-1] == w.min() and w[0] / w[-1] > 100
    # the weights enter the loss per sample by its level; all ones is the uniform loss
    x0 = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 3))
    denoise = lambda p, x, t: x * p  # noqa: E731
    valid, key, ab_j = jnp.ones(8, bool), jax.random.PRNGKey(1), jnp.asarray(ab)
    uniform = diffusion_loss(denoise, 0.5, x0, valid, key, ab_j)[0]
    assert float(diffusion_loss(denoise, 0.5, x0, valid, key, ab_j, jnp.ones(100))[0]) == pytest.approx(float(uniform))
    assert float(diffusion_loss(denoise, 0.5, x0, valid, key, ab_j, jnp.asarray(w))[0]) != pytest.approx(float(uniform))
    with pytest.raises(ValueError, match="min_snr_gamma"):
        DiffusionConfig(min_snr_gamma=-1.0).validate()
