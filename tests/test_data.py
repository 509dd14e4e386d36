"""EpisodeBatch storage: round-trips and every kind of corruption gets a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eaq.data import DatasetError, DatasetMeta, EpisodeBatch, load_dataset, save_dataset
from eaq.data.store import _sha256
from eaq.env import EnvSpec

SPEC = EnvSpec("3m", n_agents=3, obs_dim=75, state_dim=72, n_actions=8, max_steps=100, max_return=2.0)
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def synthetic_batch(seed: int, lengths: list[int], truncated: list[bool]) -> EpisodeBatch:
    """A valid batch with random contents (not from the env: exercises storage only)."""
    rng = np.random.default_rng(seed)
    E, T, N, A = len(lengths), SPEC.max_steps, SPEC.n_agents, SPEC.n_actions
    mask = np.arange(T)[None] < np.asarray(lengths)[:, None]
    legals = rng.random((E, T, N, A)) < 0.5
    legals[..., 4] = True  # stop is always legal
    legals &= mask[..., None, None]
    logits = np.where(legals, rng.random((E, T, N, A)), -1.0)
    actions = np.where(mask[..., None], logits.argmax(-1), 0).astype(np.int32)
    ends = np.zeros((E, T), bool)
    ends[np.arange(E), np.asarray(lengths) - 1] = True
    trunc = ends & np.asarray(truncated)[:, None]
    arrays = {
        "observations": (rng.normal(size=(E, T, N, SPEC.obs_dim)) * mask[..., None, None]).astype(np.float32),
        "state": (rng.normal(size=(E, T, SPEC.state_dim)) * mask[..., None]).astype(np.float32),
        "actions": actions,
        "legals": legals,
        "rewards": (rng.random((E, T)) * 0.02 * mask).astype(np.float32),
        "terminals": ends & ~trunc,
        "truncations": trunc,
        "mask": mask,
    }
    return EpisodeBatch.from_arrays(arrays, DatasetMeta(spec=SPEC, quality="medium", seed=seed))


episodes = st.lists(st.tuples(st.integers(1, 100), st.booleans()), min_size=1, max_size=6)


@FAST
@given(seed=st.integers(0, 2**31 - 1), eps=episodes)
def test_round_trip_is_exact(tmp_path_factory, seed, eps):
    batch = synthetic_batch(seed, [n for n, _ in eps], [t for _, t in eps])
    path = save_dataset(batch, tmp_path_factory.mktemp("ds") / "d")
    back = load_dataset(path)
    for k, v in batch.arrays().items():
        assert back.arrays()[k].dtype == v.dtype
        np.testing.assert_array_equal(back.arrays()[k], v)
    assert back.meta == batch.meta


def test_real_env_round_trip(tmp_path, random_batch_3m):
    back = load_dataset(save_dataset(random_batch_3m, tmp_path / "r"))
    np.testing.assert_array_equal(back.observations, random_batch_3m.observations)
    assert back.n_transitions == random_batch_3m.n_transitions


def test_never_overwrites_without_force(tmp_path, random_batch_3m):
    p = save_dataset(random_batch_3m, tmp_path / "d")
    with pytest.raises(FileExistsError, match="--force"):
        save_dataset(random_batch_3m, p)
    save_dataset(random_batch_3m.select(np.arange(4)), p, force=True)
    assert load_dataset(p).n_episodes == 4
    assert [x.name for x in tmp_path.iterdir()] == ["d"]  # no temporary leftovers


# --- corruption: each case rewrites one array (keeping the checksum consistent, so the
# validator, not the checksum, must catch it) and checks the error names file and field.


def rewrite(path: Path, field: str, arr: np.ndarray) -> None:
    f = path / f"{field}.npz"
    np.savez_compressed(f, data=arr)
    meta = json.loads((path / "meta.json").read_text())
    meta["sha256"][f.name] = _sha256(f)
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.fixture
def saved(tmp_path):
    batch = synthetic_batch(0, [5, 100, 37], [False, True, False])
    return save_dataset(batch, tmp_path / "d"), batch


def expect_error(path, field, words):
    with pytest.raises(DatasetError) as e:
        load_dataset(path)
    assert e.value.field == field
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return e.value


def test_missing_array(saved):
    path, _ = saved
    (path / "rewards.npz").unlink()
    err = expect_error(path, "rewards", ["missing"])
    assert err.path.endswith("rewards.npz")


def test_extra_array(saved):
    path, _ = saved
    np.savez_compressed(path / "bonus.npz", data=np.zeros(3))
    expect_error(path, "bonus", ["unexpected"])


def test_wrong_dtype(saved):
    path, b = saved
    rewrite(path, "actions", b.actions.astype(np.int64))
    expect_error(path, "actions", ["int64", "int32"])


@pytest.mark.parametrize("field", ["observations", "state", "legals"])
def test_shape_inconsistent_with_spec(saved, field):
    path, b = saved
    rewrite(path, field, getattr(b, field)[..., :-1])
    expect_error(path, field, ["shape", "expected", "3m"])


@FAST
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), field=st.sampled_from(["observations", "state", "rewards"]),
       pos=st.integers(0, 4))
def test_non_finite(tmp_path_factory, bad, field, pos):
    path = save_dataset(synthetic_batch(1, [5, 9], [False, False]), tmp_path_factory.mktemp("nf") / "d")
    arr = load_dataset(path).arrays()[field].copy()
    arr[(0, pos) + (0,) * (arr.ndim - 2)] = bad
    rewrite(path, field, arr)
    expect_error(path, field, ["non-finite"])


@FAST
@given(e=st.integers(0, 2), data=st.data())
def test_illegal_action(tmp_path_factory, e, data):
    batch = synthetic_batch(2, [5, 100, 37], [False, True, False])
    path = save_dataset(batch, tmp_path_factory.mktemp("il") / "d")
    t = data.draw(st.integers(0, int(batch.lengths()[e]) - 1))
    legals = batch.legals.copy()
    legals[e, t, 0, batch.actions[e, t, 0]] = False
    legals[e, t, 0, 4 if batch.actions[e, t, 0] != 4 else 0] = True  # keep some legal action
    rewrite(path, "legals", legals)
    expect_error(path, "actions", ["legal"])


def test_steps_after_ending_inside_mask(saved):
    path, b = saved
    term = b.terminals.copy()
    term[2, 10] = True  # an ending in the middle of episode 2 (length 37)
    rewrite(path, "terminals", term)
    expect_error(path, "mask", ["after its ending", "t=10"])


def test_mask_with_gap(saved):
    path, b = saved
    mask = b.mask.copy()
    mask[1, 50] = False
    rewrite(path, "mask", mask)
    expect_error(path, "mask", ["prefix"])


def test_checksum_mismatch(saved):
    path, b = saved
    np.savez_compressed(path / "rewards.npz", data=b.rewards * 2)  # not re-checksummed
    expect_error(path, "rewards", ["checksum"])


def test_unknown_schema_version(saved):
    path, _ = saved
    meta = json.loads((path / "meta.json").read_text())
    meta["schema_version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    expect_error(path, "schema_version", ["99"])


@FAST
@given(cut=st.floats(0.05, 0.95))
def test_truncated_file(tmp_path_factory, cut):
    path = save_dataset(synthetic_batch(3, [7], [False]), tmp_path_factory.mktemp("tr") / "d")
    f = path / "observations.npz"
    raw = f.read_bytes()
    f.write_bytes(raw[: int(len(raw) * cut)])
    meta = json.loads((path / "meta.json").read_text())
    meta["sha256"][f.name] = _sha256(f)
    (path / "meta.json").write_text(json.dumps(meta))
    expect_error(path, "observations", ["truncated"])


def test_missing_meta_and_missing_dir(tmp_path, saved):
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "nope")
    path, _ = saved
    (path / "meta.json").unlink()
    with pytest.raises(DatasetError, match="meta.json"):
        load_dataset(path)


def test_cli_validate_and_info(saved, tmp_path):
    path, _ = saved
    eaq = [sys.executable, "-m", "eaq.cli"]
    ok = subprocess.run([*eaq, "dataset", "validate", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    png = tmp_path / "h.png"
    info = subprocess.run([*eaq, "dataset", "info", str(path), "--json", "--plot", str(png)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    card = json.loads(info.stdout[: info.stdout.rindex("}") + 1])
    assert card["episodes"] == 3 and card["truncated_episodes"] == 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    (path / "mask.npz").write_bytes(b"garbage")
    bad = subprocess.run([*eaq, "dataset", "validate", str(path)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "mask.npz" in bad.stderr and "checksum" in bad.stderr
