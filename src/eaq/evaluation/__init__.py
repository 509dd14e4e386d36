"""Evaluation: vectorised greedy rollouts of any policy in SMAX, and honest statistics.

Stage order (no stage imports a later one): env -> data -> evaluation -> behaviour -> offline
-> diffusion -> pipeline.
"""

from eaq.evaluation.policy_eval import EvalResult, evaluate_policy
from eaq.evaluation.stats import Estimate, mean_ci, proportion_ci

__all__ = ["EvalResult", "Estimate", "evaluate_policy", "mean_ci", "proportion_ci"]
