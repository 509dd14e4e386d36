"""EpisodeBatch: E padded episodes of one SMAX map, in DESIGN.md's data model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eaq.env.smax import EnvSpec

SCHEMA_VERSION = 1
QUALITIES = ("poor", "medium", "good", "random", "mixed", "unknown")
SOURCES = ("real", "synthetic", "ogmarl")

# field name -> (dtype, shape template); letters come from (E, T, N, O, S, A).
ARRAY_FIELDS: dict[str, tuple[np.dtype, str]] = {
    "observations": (np.dtype(np.float32), "ETNO"),
    "state": (np.dtype(np.float32), "ETS"),
    "actions": (np.dtype(np.int32), "ETN"),
    "legals": (np.dtype(np.bool_), "ETNA"),
    "rewards": (np.dtype(np.float32), "ET"),
    "terminals": (np.dtype(np.bool_), "ET"),
    "truncations": (np.dtype(np.bool_), "ET"),
    "mask": (np.dtype(np.bool_), "ET"),
}


@dataclass(frozen=True)
class DatasetMeta:
    """Everything about a dataset that is not an array."""

    spec: EnvSpec
    """The map the episodes come from."""
    quality: str = "unknown"
    """poor / medium / good (behaviour bands), random, mixed or unknown."""
    source: str = "real"
    """real (collected in SMAX), synthetic (generated) or ogmarl (imported from a Vault)."""
    generator: dict[str, Any] = field(default_factory=dict)
    """What made the episodes: behaviour checkpoint and its evaluation, epsilon, model, ..."""
    seed: int | None = None
    """The seed that produced the data, when there is one."""
    schema_version: int = SCHEMA_VERSION
    """On-disk schema version."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetMeta:
        return cls(
            spec=EnvSpec.from_dict(d["spec"]),
            quality=d.get("quality", "unknown"),
            source=d.get("source", "real"),
            generator=dict(d.get("generator", {})),
            seed=d.get("seed"),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
        )


@dataclass(frozen=True)
class EpisodeBatch:
    """E episodes padded to T = spec.max_steps (N agents).

    observations: [E, T, N, O] float32 — per-agent observation before acting
    state:        [E, T, S] float32 — global state
    actions:      [E, T, N] int32 — action taken
    legals:       [E, T, N, A] bool — legal actions at that step
    rewards:      [E, T] float32 — team reward for the step
    terminals:    [E, T] bool — a real ending (win/loss) after this step
    truncations:  [E, T] bool — a time-limit ending after this step
    mask:         [E, T] bool — the step is inside the episode (a prefix of each row)
    """

    observations: np.ndarray
    state: np.ndarray
    actions: np.ndarray
    legals: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    mask: np.ndarray
    meta: DatasetMeta

    @classmethod
    def from_arrays(cls, arrays: Any, meta: DatasetMeta) -> EpisodeBatch:
        """Builds from any object or mapping with the array fields (e.g. rollout Episodes)."""
        get = arrays.__getitem__ if isinstance(arrays, dict) else lambda k: getattr(arrays, k)
        return cls(
            **{k: np.asarray(get(k)).astype(dt, copy=False) for k, (dt, _) in ARRAY_FIELDS.items()},
            meta=meta,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ARRAY_FIELDS}

    @property
    def spec(self) -> EnvSpec:
        return self.meta.spec

    @property
    def n_episodes(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_transitions(self) -> int:
        return int(self.mask.sum())

    def lengths(self) -> np.ndarray:
        """[E] number of steps inside each episode."""
        return self.mask.sum(axis=1)

    def returns(self) -> np.ndarray:
        """[E] undiscounted team return."""
        return (self.rewards * self.mask).sum(axis=1)

    def normalized_returns(self) -> np.ndarray:
        """[E] 100 x return / max return."""
        return self.spec.normalized_return(self.returns())

    def wins(self) -> np.ndarray:
        """[E] bool: the episode ended in a win.

        SMAX gives a win bonus equal to half the maximum return and at most the other half for
        damage, so a real ending above 3/4 of the maximum return is a win; a loss or draw stays
        at or below half.
        """
        ended = (self.terminals & self.mask).any(axis=1)
        return ended & (self.returns() > 0.75 * self.spec.max_return)

    def select(self, index: np.ndarray) -> EpisodeBatch:
        """The episodes at ``index`` (indices or a boolean [E] mask), same metadata."""
        return dataclasses.replace(self, **{k: v[index] for k, v in self.arrays().items()})

    def with_meta(self, **changes: Any) -> EpisodeBatch:
        return dataclasses.replace(self, meta=dataclasses.replace(self.meta, **changes))

    @staticmethod
    def concatenate(batches: list[EpisodeBatch], meta: DatasetMeta | None = None) -> EpisodeBatch:
        """Stacks episodes of the same map; metadata from ``meta`` or the first batch."""
        if not batches:
            raise ValueError("nothing to concatenate")
        spec = batches[0].spec
        for b in batches[1:]:
            if b.spec != spec:
                raise ValueError(f"cannot concatenate datasets of {spec.map_name} and {b.spec.map_name}")
        arrays = {k: np.concatenate([getattr(b, k) for b in batches]) for k in ARRAY_FIELDS}
        return EpisodeBatch(**arrays, meta=meta or batches[0].meta)
