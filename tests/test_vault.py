"""OG-MARL Vault interop, checked against flashbax's own Vault API."""

from __future__ import annotations

import contextlib
import io

import flashbax as fbx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flashbax.vault import Vault

from eaq.data import DatasetError
from eaq.data.vault import export_vault, import_vault


def write_ogmarl_vault(root, name, uid, exp):
    """Writes ``exp`` (leaves [T_total, ...]) with flashbax's buffer + Vault, as OG-MARL does."""
    total = jax.tree.leaves(exp)[0].shape[0]
    buf = fbx.make_flat_buffer(max_length=total, min_length=1, sample_batch_size=1, add_sequences=True, add_batch_size=None)
    state = buf.init(jax.tree.map(lambda a: jnp.asarray(a[0]), exp))
    state = buf.add(state, jax.tree.map(jnp.asarray, exp))
    with contextlib.redirect_stdout(io.StringIO()):
        v = Vault(vault_name=name, experience_structure=state.experience, rel_dir=str(root), vault_uid=uid)
        v.write(state, source_interval=(0, total))


def ogmarl_experience(batch):
    """Flatten episodes the way OG-MARL lays them out (per-agent rewards and flags)."""
    m = batch.mask
    N = batch.spec.n_agents
    per_agent = lambda a: np.repeat(a[m][:, None], N, axis=1)  # noqa: E731
    return {
        "observations": batch.observations[m],
        "actions": batch.actions[m],
        "rewards": per_agent(batch.rewards),
        "terminals": per_agent(batch.terminals).astype(np.float32),  # OG-MARL stores flags as floats
        "truncations": per_agent(batch.truncations).astype(np.float32),
        "infos": {"legals": batch.legals[m].astype(np.float32), "state": batch.state[m]},
    }


def test_import_flashbax_written_vault(tmp_path, env3m, random_batch_3m):
    write_ogmarl_vault(tmp_path, "3m.vlt", "Medium", ogmarl_experience(random_batch_3m))
    got = import_vault(tmp_path / "3m.vlt", "Medium", env3m.spec, quality="medium")
    assert got.meta.source == "ogmarl" and got.meta.quality == "medium"
    for k, v in random_batch_3m.arrays().items():
        np.testing.assert_array_equal(got.arrays()[k], v, err_msg=k)


def test_native_vault_native_is_exact(tmp_path, env3m, random_batch_3m):
    target = export_vault(random_batch_3m, tmp_path / "smax" / "3m.vlt", "Good")
    assert target.is_dir()
    # flashbax itself can read what we wrote, in OG-MARL's layout
    with contextlib.redirect_stdout(io.StringIO()):
        exp = Vault(vault_name="3m.vlt", rel_dir=str(tmp_path / "smax"), vault_uid="Good").read().experience
    assert exp["observations"].shape == (1, random_batch_3m.n_transitions, 3, 75)
    assert exp["infos"]["legals"].shape == (1, random_batch_3m.n_transitions, 3, 8)
    back = import_vault(tmp_path / "smax" / "3m.vlt", "Good", env3m.spec)
    for k, v in random_batch_3m.arrays().items():
        np.testing.assert_array_equal(back.arrays()[k], v, err_msg=k)
    with pytest.raises(FileExistsError):
        export_vault(random_batch_3m, tmp_path / "smax" / "3m.vlt", "Good")


def test_import_checks_sizes_against_map(tmp_path, random_batch_3m):
    from eaq.env import make_env

    write_ogmarl_vault(tmp_path, "3m.vlt", "Poor", ogmarl_experience(random_batch_3m))
    with pytest.raises(DatasetError) as e:
        import_vault(tmp_path / "3m.vlt", "Poor", make_env("8m").spec)
    assert e.value.field == "observations" and "8m" in str(e.value)


def test_import_missing_uid(tmp_path, env3m):
    with pytest.raises(DatasetError, match="no such Vault"):
        import_vault(tmp_path / "3m.vlt", "Good", env3m.spec)
