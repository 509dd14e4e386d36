"""Checks that an EpisodeBatch is well formed; every failure names the file and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eaq.data.batch import ARRAY_FIELDS, EpisodeBatch
from eaq.data.errors import DatasetError
from eaq.env.smax import EnvSpec


def expected_shape(template: str, n_episodes: int, spec: EnvSpec) -> tuple[int, ...]:
    sizes = {
        "E": n_episodes,
        "T": spec.max_steps,
        "N": spec.n_agents,
        "O": spec.obs_dim,
        "S": spec.state_dim,
        "A": spec.n_actions,
    }
    return tuple(sizes[c] for c in template)


def _first_bad(mask: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"first at index {idx}, {int(mask.sum())} in all"


def validate_arrays(
    arrays: dict[str, np.ndarray], spec: EnvSpec, where: Path | str, files: dict[str, str] | None = None
) -> None:
    """Raises DatasetError for the first problem found. ``files`` maps field -> file name."""
    where = Path(where)
    loc = lambda f: where / files[f] if files and f in files else where  # noqa: E731

    missing = set(ARRAY_FIELDS) - set(arrays)
    if missing:
        f = sorted(missing)[0]
        raise DatasetError(where, f, f"missing array(s) {sorted(missing)}")
    extra = set(arrays) - set(ARRAY_FIELDS)
    if extra:
        f = sorted(extra)[0]
        raise DatasetError(where, f, f"unexpected array(s) {sorted(extra)}; expected only {list(ARRAY_FIELDS)}")

    n_episodes = int(np.shape(arrays["mask"])[0]) if np.ndim(arrays["mask"]) else -1
    if n_episodes < 1:
        raise DatasetError(loc("mask"), "mask", f"expected at least one episode, shape {np.shape(arrays['mask'])}")
    for name, (dtype, template) in ARRAY_FIELDS.items():
        a = arrays[name]
        if a.dtype != dtype:
            raise DatasetError(loc(name), name, f"dtype {a.dtype}, expected {dtype}")
        want = expected_shape(template, n_episodes, spec)
        if a.shape != want:
            dims = ", ".join(f"{c}={n}" for c, n in zip(template, want, strict=True))
            raise DatasetError(
                loc(name), name, f"shape {a.shape}, expected {want} ({dims}) for map {spec.map_name}"
            )
        if dtype.kind == "f" and not np.isfinite(a).all():
            raise DatasetError(loc(name), name, f"non-finite values (NaN or inf), {_first_bad(~np.isfinite(a))}")

    mask = arrays["mask"]
    term, trunc = arrays["terminals"], arrays["truncations"]
    actions, legals = arrays["actions"], arrays["legals"]

    if (actions < 0).any() | (actions >= spec.n_actions).any():
        bad = (actions < 0) | (actions >= spec.n_actions)
        raise DatasetError(loc("actions"), "actions", f"actions outside [0, {spec.n_actions}), {_first_bad(bad)}")
    taken_legal = np.take_along_axis(legals, actions[..., None], axis=-1)[..., 0]
    illegal = mask[..., None] & ~taken_legal
    if illegal.any():
        raise DatasetError(loc("actions"), "actions", f"action not in its legal mask ('legals'), {_first_bad(illegal)}")
    no_legal = mask[..., None] & ~legals.any(axis=-1)
    if no_legal.any():
        raise DatasetError(loc("legals"), "legals", f"an agent with no legal action, {_first_bad(no_legal)}")

    if not mask[:, 0].all():
        raise DatasetError(loc("mask"), "mask", f"empty episode (mask[:, 0] false), {_first_bad(~mask[:, :1])}")
    # A mask must be a prefix: once false it stays false.
    gaps = ~mask[:, :-1] & mask[:, 1:]
    if gaps.any():
        raise DatasetError(loc("mask"), "mask", f"mask is not a prefix of the episode, {_first_bad(gaps)}")
    for name, flag in (("terminals", term), ("truncations", trunc)):
        outside = flag & ~mask
        if outside.any():
            raise DatasetError(loc(name), name, f"set outside the episode mask, {_first_bad(outside)}")
    both = term & trunc
    if both.any():
        raise DatasetError(loc("truncations"), "truncations", f"a step both terminal and truncated, {_first_bad(both)}")
    ends = term | trunc
    n_ends = ends.sum(axis=1)
    if (n_ends > 1).any():
        e = int(np.argmax(n_ends > 1))
        t = int(np.argwhere(ends[e])[0][0])
        raise DatasetError(
            loc("mask"), "mask", f"episode {e} has steps after its ending at t={t} still inside the mask"
        )
    lengths = mask.sum(axis=1)
    last = lengths - 1
    ended_at_last = ends[np.arange(n_episodes), last]
    if not ended_at_last.all():
        e = int(np.argmax(~ended_at_last))
        raise DatasetError(
            loc("terminals"),
            "terminals",
            f"episode {e} (length {int(lengths[e])}) has no terminal or truncation at its last step",
        )
    for name, (dtype, _) in ARRAY_FIELDS.items():
        if dtype.kind == "f":
            a = arrays[name]
            m = mask.reshape(mask.shape + (1,) * (a.ndim - 2))
            if (np.where(m, 0, a) != 0).any():
                raise DatasetError(loc(name), name, "non-zero values outside the episode mask (padding must be 0)")


def validate_batch(batch: EpisodeBatch, where: Path | str = "<memory>") -> EpisodeBatch:
    """Validates an in-memory batch; returns it for chaining."""
    validate_arrays(batch.arrays(), batch.spec, where)
    return batch
