"""Reward relabelling: synthetic rewards recomputed from the synthetic states.

SMAX's team reward on every step but an episode's last is a function of the state change (the
enemies' health lost). On 3m Medium a least-squares fit on (state, state change) explains it
exactly on held-out real transitions (R^2 = 1.000). The diffusion model's own rewards do not
follow its own states: they correlate only 0.63-0.65 with what those states imply, and at 0.063
per step they exceed it (0.053-0.059) and the real data's 0.034, so a learner sees rewards the
dynamics never paid. Relabelling
replaces the reward of every non-final synthetic step with the fitted model's prediction
(clipped at 0, as SMAX rewards are); the final step keeps the generated reward, which carries
the win bonus the state change cannot show.

The fit is used only when it explains the held-out real rewards (R^2 >= ``min_r2``); otherwise
the synthetic data is returned unchanged and the reason is recorded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from eaq.data.batch import EpisodeBatch
from eaq.diffusion.fidelity import heldout_split


def _features(batch: EpisodeBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [E, T-1, 2S]: state and state change, r [E, T-1], inside [E, T-1]: non-final steps)."""
    inside = batch.mask[:, :-1] & batch.mask[:, 1:]
    x = np.concatenate([batch.state[:, :-1], batch.state[:, 1:] - batch.state[:, :-1]], axis=-1)
    return x, batch.rewards[:, :-1], inside


@dataclasses.dataclass(frozen=True)
class RewardModel:
    """Linear reward model over the (state, state change) features that vary in real data."""

    keep: np.ndarray  # [2S] bool
    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    weights: np.ndarray  # [F + 1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``x: [..., 2S]`` -> rewards ``[...]``."""
        z = (x[..., self.keep] - self.mean) / self.std
        return z @ self.weights[:-1] + self.weights[-1]


def fit_reward_model(real: EpisodeBatch, holdout: float = 0.2, seed: int = 0) -> tuple[RewardModel, float]:
    """Fits on (1 - holdout) of the real episodes; returns the model and its held-out R^2."""
    train, test = heldout_split(real.n_episodes, holdout, seed)
    x, r, inside = _features(real)
    x_tr, r_tr = x[train][inside[train]], r[train][inside[train]]
    x_te, r_te = x[test][inside[test]], r[test][inside[test]]
    if len(x_tr) < 2 or len(x_te) < 1:
        raise ValueError(f"too few real transitions to fit a reward model ({len(x_tr)} train, {len(x_te)} held out)")
    keep = x_tr.std(0) > 1e-3
    mean, std = x_tr[:, keep].mean(0), x_tr[:, keep].std(0)
    z = np.c_[(x_tr[:, keep] - mean) / std, np.ones(len(x_tr))]
    weights = np.linalg.lstsq(z, r_tr, rcond=None)[0]
    model = RewardModel(keep=keep, mean=mean, std=std, weights=weights)
    resid = model.predict(x_te) - r_te
    r2 = 1.0 - float(np.mean(resid**2)) / max(float(np.var(r_te)), 1e-12)
    return model, r2


def relabel_rewards(
    synthetic: EpisodeBatch, real: EpisodeBatch, min_r2: float = 0.99, seed: int = 0
) -> tuple[EpisodeBatch, dict[str, Any]]:
    """Returns the synthetic batch with non-final rewards recomputed from its states, and a
    record: the fit's held-out R^2, whether it was applied, and the mean reward before/after."""
    model, r2 = fit_reward_model(real, seed=seed)
    x, r, inside = _features(synthetic)
    info: dict[str, Any] = {"heldout_r2": r2, "min_r2": min_r2, "steps": int(inside.sum())}
    before = float(r[inside].mean()) if inside.any() else 0.0
    if r2 < min_r2:
        return synthetic, {**info, "applied": False, "why": f"the reward model explains only R^2 = {r2:.3f} of held-out real rewards"}
    new = synthetic.rewards.copy()
    new[:, :-1] = np.where(inside, np.clip(model.predict(x), 0.0, None), r).astype(np.float32)
    after = float(new[:, :-1][inside].mean()) if inside.any() else 0.0
    corr = float(np.corrcoef(model.predict(x[inside]), r[inside])[0, 1]) if inside.sum() > 1 else float("nan")
    info.update(applied=True, mean_reward_before=before, mean_reward_after=after, generated_vs_implied_corr=corr)
    return dataclasses.replace(synthetic, rewards=new), info
