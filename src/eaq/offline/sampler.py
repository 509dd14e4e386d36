"""Training data for the offline learners: one or several datasets, sampled by whole episodes.

Datasets are concatenated into one device-resident ``EpisodeData`` and each episode gets a
sampling probability: dataset i receives weight ``w_i`` (default: proportional to its size),
spread evenly over its episodes. ``sample_episodes`` draws a batch of whole padded episodes
(with replacement) inside jit.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from eaq.data.batch import ARRAY_FIELDS, EpisodeBatch
from eaq.env.smax import EnvSpec


@struct.dataclass
class EpisodeData:
    """Padded episodes as jax arrays (E episodes, or B in a sampled batch).

    observations: [E, T, N, O] f32; state: [E, T, S] f32; actions: [E, T, N] i32;
    legals: [E, T, N, A] bool; rewards: [E, T] f32; terminals, truncations, mask: [E, T] bool;
    synthetic: [E] bool, the episode comes from a dataset whose source is "synthetic".
    """

    observations: jax.Array
    state: jax.Array
    actions: jax.Array
    legals: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    truncations: jax.Array
    mask: jax.Array
    synthetic: jax.Array


def describe(batch: EpisodeBatch, name: str | None = None) -> dict:
    """A JSON-able description of a dataset for resolved configs."""
    return {
        "name": name,
        "map": batch.spec.map_name,
        "quality": batch.meta.quality,
        "source": batch.meta.source,
        "episodes": batch.n_episodes,
        "transitions": batch.n_transitions,
        "mean_normalized_return": float(batch.normalized_returns().mean()) if batch.n_episodes else None,
    }


def check_datasets(
    datasets: Sequence[EpisodeBatch], names: Sequence[str] | None = None, spec: EnvSpec | None = None
) -> EnvSpec:
    """Checks the datasets can be trained on together and returns their env spec.

    Raises ValueError naming the dataset for: no dataset, an empty dataset, or a dataset from
    another map than the first one (or than ``spec``).
    """
    if not datasets:
        raise ValueError("no training dataset given")
    names = list(names) if names is not None else [f"dataset #{i}" for i in range(len(datasets))]
    want = spec or datasets[0].spec
    for name, batch in zip(names, datasets, strict=True):
        if batch.n_episodes == 0 or batch.n_transitions == 0:
            raise ValueError(f"{name}: the dataset is empty (no episodes to train on)")
        if batch.spec != want:
            raise ValueError(
                f"{name}: dataset is for map {batch.spec.map_name!r} "
                f"(obs {batch.spec.obs_dim}, state {batch.spec.state_dim}, actions {batch.spec.n_actions}) "
                f"but training is for map {want.map_name!r} "
                f"(obs {want.obs_dim}, state {want.state_dim}, actions {want.n_actions})"
            )
    return want


def episode_probabilities(sizes: Sequence[int], weights: Sequence[float] | None) -> np.ndarray:
    """[sum(sizes)] probability of each episode: dataset i gets ``weights[i]`` of the mass."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if weights is None:
        w = sizes.astype(np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != sizes.shape:
            raise ValueError(f"got {w.size} sampling weights for {sizes.size} datasets")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"sampling weights must be non-negative with a positive sum, got {list(w)}")
    w = w / w.sum()
    return np.concatenate([np.full(n, wi / n) for n, wi in zip(sizes, w, strict=True)])


def to_episode_data(datasets: Sequence[EpisodeBatch], trim: bool = True) -> EpisodeData:
    """Concatenates datasets (same map, already checked) into host numpy-backed EpisodeData.

    With ``trim``, the time axis is cut to the longest episode: steps past every episode's end
    are padding in every row, and the recurrent networks' cost is linear in T.
    """
    arrays = {k: np.concatenate([getattr(b, k) for b in datasets]) for k in ARRAY_FIELDS}
    if trim:
        t_max = max(1, int(arrays["mask"].sum(axis=1).max()))
        arrays = {k: v[:, :t_max] for k, v in arrays.items()}
    synthetic = np.concatenate([np.full(b.n_episodes, b.meta.source == "synthetic") for b in datasets])
    return EpisodeData(**arrays, synthetic=synthetic)


def sample_episodes(data: EpisodeData, probs: jax.Array, key: jax.Array, batch_size: int) -> EpisodeData:
    """``batch_size`` whole episodes drawn with replacement with probabilities ``probs: [E]``."""
    idx = jax.random.choice(key, probs.shape[0], shape=(batch_size,), replace=True, p=probs)
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)


def next_step_valid(batch: EpisodeData) -> jax.Array:
    """[B, T] bool: the step has a usable TD target.

    A step inside the episode is usable when it is a real ending (target = reward) or its next
    step is inside the episode (bootstrap). A truncated last step has no stored next
    observation, so it is left out of TD losses, never treated as terminal.
    """
    next_mask = jnp.concatenate([batch.mask[:, 1:], jnp.zeros_like(batch.mask[:, :1])], axis=1)
    return batch.mask & (batch.terminals | next_mask)


def shift_left(x: jax.Array) -> jax.Array:
    """``x[:, t + 1]`` at position t along axis 1, zeros at the last step."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)
