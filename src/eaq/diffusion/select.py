"""Keeping the synthetic episodes the frozen Q_tot rates highest (best n of k*n samples).

EAQ's Q_tot loss only steers training; the samples still include episodes that the critic
trained on the real data rates far below the real ones (on 3m Good the synthetic mean was
0.68 against the real 0.80, docs/benchmark.md). Oversampling and keeping the best-rated
episodes applies the same critic once more, at sampling time, without changing the number of
synthetic episodes a learner sees.
"""

from __future__ import annotations

import numpy as np

from eaq.data.batch import EpisodeBatch
from eaq.diffusion.fidelity import episode_q_tot


def select_by_qtot(candidates: EpisodeBatch, qtot, n_keep: int) -> tuple[EpisodeBatch, dict]:
    """The ``n_keep`` candidates with the highest mean Q_tot of their own actions (in their
    sampled order) and what the selection did: ``{n_candidates, n_kept, rating_candidates,
    rating_kept, threshold}`` (mean ratings; ``threshold``: the lowest kept rating).

    ``qtot``: a QtotFunction of the candidates' map (eaq.offline.qtot); ratings that are not
    finite count as the worst, so a broken critic cannot smuggle an episode in."""
    if n_keep < 1:
        raise ValueError(f"n_keep={n_keep} must be >= 1")
    rating = episode_q_tot(qtot, candidates)  # [E]
    if rating.shape != (candidates.n_episodes,):
        raise ValueError(f"Q_tot ratings have shape {rating.shape}, expected ({candidates.n_episodes},)")
    score = np.where(np.isfinite(rating), rating, -np.inf)
    order = np.argsort(-score, kind="stable")[:n_keep]
    keep = np.sort(order)
    info = {
        "n_candidates": int(candidates.n_episodes),
        "n_kept": int(keep.size),
        "rating_candidates": float(np.nanmean(rating)),
        "rating_kept": float(np.nanmean(rating[keep])),
        "threshold": float(score[keep].min()),
    }
    return candidates.select(keep), info
