"""OG-MARL Vault interoperability (flashbax ``Vault``).

OG-MARL stores a dataset as one long time axis: every leaf is ``(1, T_total, ...)``::

    observations [1, T, N, O]   actions [1, T, N]    rewards [1, T, N] (per agent)
    terminals    [1, T, N]      truncations [1, T, N]
    infos.legals [1, T, N, A]   infos.state [1, T, S]

Episodes end where ``terminals`` or ``truncations`` is set (for any agent). A Vault lives at
``{rel_dir}/{vault_name}/{uid}``, e.g. ``vaults/smac_v1/3m.vlt/Good``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from eaq.data.batch import DatasetMeta, EpisodeBatch
from eaq.data.errors import DatasetError
from eaq.data.validate import validate_arrays
from eaq.env.smax import EnvSpec

VAULT_KEYS = ("observations", "actions", "rewards", "terminals", "truncations", "infos")


def _open_vault(vault_dir: Path, uid: str, structure=None):
    from flashbax.vault import Vault

    # flashbax prints on open/create; keep the CLI output ours.
    with contextlib.redirect_stdout(io.StringIO()):
        return Vault(
            vault_name=vault_dir.name,
            experience_structure=structure,
            rel_dir=str(vault_dir.parent.resolve()),
            vault_uid=uid,
        )


def _per_step(flag: np.ndarray, name: str, where: Path) -> np.ndarray:
    """Terminal-like flags may be per agent ([T, N]) or per step ([T]); any agent ends it."""
    if flag.ndim == 2:
        return flag.astype(bool).any(axis=1)
    if flag.ndim == 1:
        return flag.astype(bool)
    raise DatasetError(where, name, f"expected shape (1, T) or (1, T, N), got (1,) + {flag.shape}")


def import_vault(vault_dir: str | Path, uid: str, spec: EnvSpec, quality: str = "unknown") -> EpisodeBatch:
    """Reads an OG-MARL Vault and splits it into padded episodes for ``spec``'s map."""
    vault_dir = Path(vault_dir)
    where = vault_dir / uid
    if not where.is_dir():
        raise DatasetError(where, None, "no such Vault (expected VAULT_DIR/UID, e.g. vaults/smac_v1/3m.vlt/Good)")
    try:
        exp = _open_vault(vault_dir, uid).read().experience
    except Exception as e:  # flashbax/tensorstore raise many types for broken vaults
        raise DatasetError(where, None, f"cannot read Vault ({type(e).__name__}: {e})") from e
    exp = dict(exp)
    for k in VAULT_KEYS:
        if k not in exp:
            raise DatasetError(where, k, f"missing Vault leaf; OG-MARL layout has {list(VAULT_KEYS)}")
    infos = dict(exp["infos"])
    for k in ("legals", "state"):
        if k not in infos:
            raise DatasetError(where, f"infos.{k}", "missing Vault leaf")
    leaves = {
        "observations": np.asarray(exp["observations"]),
        "actions": np.asarray(exp["actions"]),
        "rewards": np.asarray(exp["rewards"]),
        "terminals": np.asarray(exp["terminals"]),
        "truncations": np.asarray(exp["truncations"]),
        "infos.legals": np.asarray(infos["legals"]),
        "infos.state": np.asarray(infos["state"]),
    }
    for k, v in leaves.items():
        if v.ndim < 2 or v.shape[0] != 1:
            raise DatasetError(where, k, f"expected a leading (1, T_total) axis, got shape {v.shape}")
    leaves = {k: v[0] for k, v in leaves.items()}
    total = leaves["observations"].shape[0]
    if total == 0:
        raise DatasetError(where, "observations", "the Vault holds no timesteps (empty or never written)")
    N, O, S, A = spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions
    want = {
        "observations": (total, N, O),
        "actions": (total, N),
        "rewards": (total, N),
        "infos.legals": (total, N, A),
        "infos.state": (total, S),
    }
    for k, shape in want.items():
        got = leaves[k].shape
        if k == "actions" and got == (total, N, 1):
            leaves[k] = leaves[k][..., 0]
            continue
        if got != shape:
            raise DatasetError(
                where, k, f"shape (1,) + {got}, expected (1,) + {shape} for map {spec.map_name} (N={N}, O={O}, S={S}, A={A})"
            )
    term = _per_step(leaves["terminals"], "terminals", where)
    trunc = _per_step(leaves["truncations"], "truncations", where) & ~term
    ends = np.flatnonzero(term | trunc)
    if ends.size == 0:
        raise DatasetError(where, "terminals", "no terminal or truncation anywhere: cannot split into episodes")
    if ends[-1] != total - 1:
        # A trailing partial episode has no ending; drop it rather than invent one.
        total = int(ends[-1]) + 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    T = spec.max_steps
    if lengths.max() > T:
        e = int(np.argmax(lengths > T))
        raise DatasetError(
            where, "terminals", f"episode {e} is {int(lengths[e])} steps long, longer than {spec.map_name}'s limit {T}"
        )
    E = len(starts)
    t_idx = np.arange(T)
    mask = t_idx[None, :] < lengths[:, None]
    src = np.where(mask, starts[:, None] + t_idx[None, :], 0)

    def gather(a: np.ndarray, dtype) -> np.ndarray:
        out = a[src].astype(dtype)
        m = mask.reshape(mask.shape + (1,) * (out.ndim - 2))
        return np.where(m, out, np.zeros((), dtype))

    rewards = leaves["rewards"]
    # OG-MARL repeats the shared team reward for every agent; take it exactly when it is shared.
    team_reward = rewards[:, 0] if (rewards == rewards[:, :1]).all() else rewards.mean(axis=1)
    arrays = {
        "observations": gather(leaves["observations"], np.float32),
        "state": gather(leaves["infos.state"], np.float32),
        "actions": gather(leaves["actions"], np.int32),
        "legals": gather(leaves["infos.legals"], bool),
        "rewards": gather(team_reward, np.float32),
        "terminals": gather(term, bool),
        "truncations": gather(trunc, bool),
        "mask": mask,
    }
    validate_arrays(arrays, spec, where)
    meta = DatasetMeta(
        spec=spec,
        quality=quality,
        source="ogmarl",
        generator={"vault": str(vault_dir), "uid": uid, "episodes": E},
    )
    return EpisodeBatch(**arrays, meta=meta)


def export_vault(batch: EpisodeBatch, vault_dir: str | Path, uid: str, force: bool = False) -> Path:
    """Writes ``batch`` as an OG-MARL Vault at ``vault_dir/uid`` (atomically)."""
    import flashbax as fbx
    import jax.numpy as jnp

    vault_dir = Path(vault_dir)
    target = vault_dir / uid
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass --force to overwrite it")
    m = batch.mask
    N = batch.spec.n_agents
    flat = lambda a: a[m][None]  # noqa: E731  [E, T, ...] -> [1, T_total, ...]
    term = flat(batch.terminals)
    trunc = flat(batch.truncations)
    experience = {
        "observations": flat(batch.observations),
        "actions": flat(batch.actions),
        "rewards": np.repeat(flat(batch.rewards)[..., None], N, axis=-1),
        "terminals": np.repeat(term[..., None], N, axis=-1),
        "truncations": np.repeat(trunc[..., None], N, axis=-1),
        "infos": {"legals": flat(batch.legals), "state": flat(batch.state)},
    }
    total = experience["observations"].shape[1]
    buffer = fbx.make_flat_buffer(
        max_length=total, min_length=1, sample_batch_size=1, add_sequences=True, add_batch_size=None
    )
    one_step = {
        "observations": experience["observations"][0, 0],
        "actions": experience["actions"][0, 0],
        "rewards": experience["rewards"][0, 0],
        "terminals": experience["terminals"][0, 0],
        "truncations": experience["truncations"][0, 0],
        "infos": {"legals": experience["infos"]["legals"][0, 0], "state": experience["infos"]["state"][0, 0]},
    }
    import jax

    state = buffer.init(jax.tree.map(jnp.asarray, one_step))
    state = buffer.add(state, jax.tree.map(lambda a: jnp.asarray(a[0]), experience))
    vault_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(dir=vault_dir, prefix=f".{uid}.tmp-"))
    try:
        tmp_vault = tmp_root / vault_dir.name
        v = _open_vault(tmp_vault, uid, structure=state.experience)
        with contextlib.redirect_stdout(io.StringIO()):
            written = v.write(state, source_interval=(0, total))
        if written != total:
            raise RuntimeError(f"Vault wrote {written} of {total} steps")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp_vault / uid, target)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return target
