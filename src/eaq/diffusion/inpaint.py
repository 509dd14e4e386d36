"""Conditioning the sampler on parts of real episodes (inpainting).

The diffusion model is trained unconditionally; at sampling time some entries of the episode
tensor can be fixed to values taken from a real episode, and the DDIM sampler fills in the
rest (``ddim_sample(known=..., known_mask=..., guidance=...)``: the predicted clean episode is
overwritten with the known values at every step, and reconstruction guidance pulls the free
entries toward agreeing with them).

Two things can be fixed, independently:

- ``lengths``: the alive and terminal channels of a randomly drawn real episode, over the
  whole time axis. Each synthetic episode then has a real episode's length and ending
  (terminal or truncation at the time limit, or at the model's horizon when it is shorter). Unconditioned samples are all short on 3m Medium
  (11-26 steps against real 11-100; docs/benchmark.md).
- ``prefix``: every channel of the first k steps of that real episode, with k drawn uniformly
  from 1..ceil(prefix * length) and at most length - 1, so that a synthetic episode branches
  from a real one and at least its last step is generated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from eaq.diffusion.codec import EpisodeLayout


@dataclass(frozen=True)
class Inpainting:
    """What the sampler copies from real episodes (nothing by default)."""

    lengths: bool = False
    """Fix the alive and terminal channels to a real episode's (its length and its ending)."""
    prefix: float = 0.0
    """Fix every channel of a real episode's first k steps, k uniform in 1..ceil(prefix * length)
    (and < length); 0 fixes no prefix. In [0, 1]."""
    guidance: float = 30.0
    """Reconstruction-guidance weight (eaq.diffusion.diffusion.ddim_sample) on the length
    channels; 0 is replacement only. On fast-v9's 3m Medium EAQ model with the lengths of real
    episodes of >= 40 steps, 0 leaves the synthetic lengths where they were (about 18 steps,
    uncorrelated with the real ones) and 30 makes them follow (docs/diffusion.md,
    benchmarks/inpainting.py). Prefix steps are fixed by replacement only: guiding on them too
    made the first generated step jump away from the last copied one (summed |state change| of
    that transition 199 against 28 with guidance on the length channels only; real: 12)."""

    def __post_init__(self):
        if not 0.0 <= self.prefix <= 1.0:
            raise ValueError(f"inpaint prefix={self.prefix} must be in [0, 1] (a share of each real episode)")
        if self.guidance < 0:
            raise ValueError(f"inpaint guidance={self.guidance} must be >= 0")

    @property
    def active(self) -> bool:
        return self.lengths or self.prefix > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inpaint_targets(
    real_x: np.ndarray,
    real_lengths: np.ndarray,
    layout: EpisodeLayout,
    inpainting: Inpainting,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Known values and where they apply, for ``n`` samples.

    ``real_x: [E, L, C]`` real episodes, normalised as the model sees them; ``real_lengths: [E]``.
    Returns ``known: [n, L, C]`` float32, ``known_mask: [n, L, C]`` bool (all False when
    ``inpainting`` is inactive), ``guide_mask: [n, L, C]`` bool (the length channels only) and
    statistics ``{source_episodes: [n], prefix_steps: [n]}``.
    """
    E, L, C = real_x.shape
    if E == 0:
        raise ValueError("inpainting needs at least one real episode")
    if real_lengths.shape != (E,):
        raise ValueError(f"real_lengths has shape {real_lengths.shape}, expected ({E},)")
    src = rng.integers(0, E, size=n)
    known = real_x[src].astype(np.float32)
    mask = np.zeros((n, L, C), bool)
    prefix = np.zeros(n, np.int64)
    if inpainting.lengths:
        mask[..., [layout.alive_channel, layout.terminal_channel]] = True
    guide = mask.copy()  # guidance on the length channels only (see Inpainting.guidance)
    if inpainting.prefix > 0:
        lengths = real_lengths[src]
        top = np.maximum(np.ceil(inpainting.prefix * lengths).astype(np.int64), 1)
        prefix = np.minimum(rng.integers(1, top + 1), lengths - 1).clip(min=0)
        mask |= (np.arange(L)[None, :] < prefix[:, None])[..., None]
    return known, mask, guide, {"source_episodes": src, "prefix_steps": prefix}
