"""Greedy, legal-masked, vectorised evaluation of a policy in SMAX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from eaq.env.rollout import Episodes, PolicyFn, make_rollout
from eaq.env.smax import SmaxEnv
from eaq.evaluation.stats import Estimate, mean_ci, proportion_ci


@dataclass(frozen=True)
class EvalResult:
    """Evaluation over n episodes: win rate, return and normalized return with 95 % CIs."""

    map_name: str
    episodes: int
    win_rate: Estimate
    ret: Estimate
    normalized_return: Estimate
    mean_length: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "map": self.map_name,
            "episodes": self.episodes,
            "win_rate": self.win_rate.to_dict(),
            "return": self.ret.to_dict(),
            "normalized_return": self.normalized_return.to_dict(),
            "mean_length": self.mean_length,
        }


def summarize(env: SmaxEnv, ep: Episodes) -> EvalResult:
    """Statistics of rolled-out episodes."""
    mask = np.asarray(ep.mask)
    returns = (np.asarray(ep.rewards) * mask).sum(1)
    return EvalResult(
        map_name=env.spec.map_name,
        episodes=int(mask.shape[0]),
        win_rate=proportion_ci(np.asarray(ep.won)),
        ret=mean_ci(returns),
        normalized_return=mean_ci(env.spec.normalized_return(returns)),
        mean_length=float(mask.sum(1).mean()),
    )


def make_evaluator(
    env: SmaxEnv, policy: PolicyFn, init_carry: Callable[[], Any] = lambda: ()
) -> Callable[[Any, jax.Array, int], EvalResult]:
    """Returns ``evaluate(params, key, n_episodes) -> EvalResult`` with the rollout compiled once."""
    rollout = jax.jit(make_rollout(env, policy, init_carry), static_argnums=2)

    def evaluate(params, key, n_episodes: int) -> EvalResult:
        return summarize(env, rollout(params, key, n_episodes))

    return evaluate


def evaluate_policy(
    env: SmaxEnv,
    policy: PolicyFn,
    params: Any,
    key: jax.Array,
    n_episodes: int = 256,
    init_carry: Callable[[], Any] = lambda: (),
) -> EvalResult:
    """One-off evaluation (compiles each call; use make_evaluator in loops)."""
    return make_evaluator(env, policy, init_carry)(params, key, n_episodes)
