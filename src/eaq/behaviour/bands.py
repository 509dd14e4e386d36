"""Quality bands (OG-MARL's Poor / Medium / Good, as greedy normalized return) and the choice
of the behaviour checkpoint for each. A dataset is never labelled with a band its behaviour
checkpoint does not fall in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Band:
    """A quality band of greedy normalized return, in % of the maximum return."""

    name: str
    """poor / medium / good."""
    lo: float
    """Lowest normalized return inside the band (inclusive)."""
    hi: float
    """Highest normalized return inside the band (inclusive)."""
    target: float
    """Preferred value when several checkpoints fall inside (OG-MARL's levels are ~25/50/80 %)."""

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def distance(self, value: float) -> float:
        """How far ``value`` lies outside the band (0 inside)."""
        return max(self.lo - value, value - self.hi, 0.0)

    def __str__(self) -> str:
        return f"{self.name} [{self.lo:g}, {self.hi:g}] %"


BANDS: dict[str, Band] = {
    "poor": Band("poor", 20.0, 35.0, 27.5),
    "medium": Band("medium", 45.0, 60.0, 52.5),
    "good": Band("good", 80.0, 100.0, 90.0),
}


def get_band(quality: str) -> Band:
    try:
        return BANDS[quality]
    except KeyError:
        raise ValueError(
            f"unknown quality {quality!r}; choose one of {', '.join(BANDS)}"
        ) from None


@dataclass(frozen=True)
class CheckpointEval:
    """A saved behaviour checkpoint and its greedy evaluation (from EvalResult.to_dict)."""

    step: int
    """Training updates done when it was saved (the Orbax step)."""
    timesteps: int
    """Joint environment steps done when it was saved."""
    eval: dict[str, Any]
    """Greedy evaluation: win_rate, return, normalized_return (each mean/lo/hi/n), ..."""
    store: str = "checkpoints"
    """The run's sub-directory holding it: ``checkpoints`` (the main line) or
    ``refine-<band>`` (band refinement)."""
    origin: dict[str, Any] = field(default_factory=dict)
    """For refinement checkpoints: the main-line step it branched from and its lr scale."""

    @property
    def normalized_return(self) -> float:
        return float(self.eval["normalized_return"]["mean"])

    @property
    def win_rate(self) -> float:
        return float(self.eval["win_rate"]["mean"])

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "timesteps": self.timesteps, "eval": self.eval,
                "store": self.store, "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointEval:
        return cls(step=int(d["step"]), timesteps=int(d["timesteps"]), eval=dict(d["eval"]),
                   store=d.get("store", "checkpoints"), origin=dict(d.get("origin", {})))

    @property
    def name(self) -> str:
        return f"{self.store}/{self.step}"


class NoCheckpointInBand(ValueError):
    """No checkpoint's greedy normalized return falls inside the requested band."""

    def __init__(self, band: Band, nearest: CheckpointEval | None, where: str = ""):
        self.band = band
        self.nearest = nearest
        if nearest is None:
            detail = "there are no evaluated checkpoints"
        else:
            detail = (
                f"the nearest is {nearest.name} ({nearest.timesteps} env steps) with "
                f"{nearest.normalized_return:.1f} % normalized return, "
                f"{100 * nearest.win_rate:.1f} % wins"
            )
        super().__init__(
            f"no behaviour checkpoint{where} has a greedy normalized return in the {band} band; "
            f"{detail}. The dataset was not written (quality is never mislabelled); "
            f"train longer or with another seed/config."
        )


def select_checkpoint(evals: Sequence[CheckpointEval], band: Band, where: str = "") -> CheckpointEval:
    """The checkpoint inside ``band`` closest to its target (earliest on ties); raises
    NoCheckpointInBand naming the nearest one otherwise."""
    inside = [e for e in evals if band.contains(e.normalized_return)]
    if inside:
        return min(inside, key=lambda e: (abs(e.normalized_return - band.target), e.step))
    nearest = min(evals, key=lambda e: (band.distance(e.normalized_return), e.step), default=None)
    raise NoCheckpointInBand(band, nearest, where)


def reached(evals: Sequence[CheckpointEval], normalized_return: float) -> bool:
    """Some checkpoint's greedy normalized return is at least ``normalized_return``."""
    return any(e.normalized_return >= normalized_return for e in evals)


def crossing(evals: Sequence[CheckpointEval], band: Band) -> CheckpointEval | None:
    """The checkpoint just below ``band`` whose successor (by step) is already above it: the
    place to restart from with smaller steps. None if the band holds a checkpoint, or the
    run never rose above it from below."""
    ordered = sorted(evals, key=lambda e: e.step)
    if any(band.contains(e.normalized_return) for e in ordered):
        return None
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.normalized_return < band.lo and after.normalized_return > band.hi:
            return before
    return None
