"""Keeping the best of k*n synthetic episodes by a rating: Q_tot, or physical plausibility.

EAQ's Q_tot loss only steers training; the samples still include episodes that the critic
trained on the real data rates far below the real ones (on 3m Good the synthetic mean was
0.68 against the real 0.80, docs/benchmark.md), and episodes whose units move in ways SMAX
cannot (16-23 % of 3m Good's synthetic unit moves against 3 % of real ones). Oversampling and
keeping the best-rated episodes applies a rating at sampling time without changing the number
of synthetic episodes a learner sees:

- ``"qtot"``: the mean Q_tot of the episode's own actions under the frozen critic that guides EAQ;
- ``"plausible"``: the share of the episode's known ally moves that are physically possible
  (eaq.env.project's inverse dynamics: no move, or one step of the unit's speed).

Optionally the kept episodes keep the real data's share of wins (3m Good's samples won 91 % of
the time against the data's 69 %).
"""

from __future__ import annotations

import numpy as np

from eaq.data.batch import EpisodeBatch
from eaq.diffusion.config import SELECT_BY, SelectBy
from eaq.diffusion.fidelity import episode_q_tot


def plausible_share(batch: EpisodeBatch) -> np.ndarray:
    """[E] share of each episode's known ally moves (alive at t and t + 1, both in the episode)
    that are physically possible; 0 for an episode with no known move."""
    from eaq.env.project import projector

    motion = projector(batch.spec.map_name).motion(batch.state, batch.mask)
    known = motion.known.sum(axis=(1, 2))
    return np.where(known > 0, motion.plausible.sum(axis=(1, 2)) / np.maximum(known, 1), 0.0)


def _best(score: np.ndarray, among: np.ndarray, k: int) -> np.ndarray:
    """Indices (into ``score``) of the ``k`` highest scores among the indices ``among``."""
    return among[np.argsort(-score[among], kind="stable")[:k]]


def select_best(
    candidates: EpisodeBatch, n_keep: int, by: SelectBy = "qtot", qtot=None, win_share: float | None = None
) -> tuple[EpisodeBatch, dict]:
    """The ``n_keep`` best-rated candidates (in their sampled order) and what the selection did:
    ``{by, n_candidates, n_kept, rating_candidates, rating_kept, threshold,
    win_share_candidates, win_share_kept}`` (mean ratings; ``threshold``: the lowest kept rating).

    ``by``: the rating (module docstring); ``"qtot"`` needs ``qtot``, a QtotFunction of the
    candidates' map (eaq.offline.qtot). ``win_share``: keep ``round(win_share * n_keep)`` won
    episodes and the rest not won, each the best-rated of its kind (where one kind runs short,
    the other fills in, so ``n_keep`` still holds when enough candidates exist); None: rank all
    together. Ratings that are not finite count as the worst, so a broken critic cannot smuggle
    an episode in."""
    if n_keep < 1:
        raise ValueError(f"n_keep={n_keep} must be >= 1")
    if win_share is not None and not 0.0 <= win_share <= 1.0:
        raise ValueError(f"win_share={win_share} must be in [0, 1]")
    if by not in SELECT_BY:
        raise ValueError(f"select by {by!r}: choose one of {SELECT_BY}")
    if by == "qtot" and qtot is None:
        raise ValueError("selecting by Q_tot needs a Q_tot (qtot=...)")
    rating = episode_q_tot(qtot, candidates) if by == "qtot" else plausible_share(candidates)  # [E]
    if rating.shape != (candidates.n_episodes,):
        raise ValueError(f"{by} ratings have shape {rating.shape}, expected ({candidates.n_episodes},)")
    score = np.where(np.isfinite(rating), rating, -np.inf)
    everyone = np.arange(candidates.n_episodes)
    won = candidates.wins()
    if win_share is None:
        keep = _best(score, everyone, n_keep)
    else:
        n_won = min(int(round(win_share * n_keep)), int(won.sum()))
        n_lost = min(n_keep - n_won, int((~won).sum()))
        n_won = min(n_keep - n_lost, int(won.sum()))  # losses ran short: wins fill in
        keep = np.concatenate([_best(score, everyone[won], n_won), _best(score, everyone[~won], n_lost)])
    keep = np.sort(keep)
    info = {
        "by": by,
        "n_candidates": int(candidates.n_episodes),
        "n_kept": int(keep.size),
        "rating_candidates": float(np.nanmean(rating)),
        "rating_kept": float(np.nanmean(rating[keep])),
        "threshold": float(score[keep].min()),
        "win_share_candidates": float(won.mean()),
        "win_share_kept": float(won[keep].mean()),
    }
    if win_share is not None:
        info["win_share_target"] = float(win_share)
    return candidates.select(keep), info
