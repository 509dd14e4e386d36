"""Behaviour policies (IPPO on SMAX) and the Poor / Medium / Good datasets they collect.

Stage order (no stage imports a later one): env -> data -> evaluation -> behaviour -> offline
-> diffusion -> pipeline.
"""

from eaq.behaviour.bands import (
    BANDS,
    Band,
    CheckpointEval,
    NoCheckpointInBand,
    crossing,
    select_checkpoint,
)
from eaq.behaviour.cache import CACHE_ENV_VAR, cache_root, dataset_dir, run_dir
from eaq.behaviour.collect import EPSILON, collect_dataset, quick_dataset, rollout_behaviour
from eaq.behaviour.config import IPPOConfig, default_config, tiny_config
from eaq.behaviour.ippo import make_ippo, make_train
from eaq.behaviour.training import BehaviourRun, train_behaviour

__all__ = [
    "BANDS",
    "CACHE_ENV_VAR",
    "EPSILON",
    "Band",
    "BehaviourRun",
    "CheckpointEval",
    "IPPOConfig",
    "NoCheckpointInBand",
    "cache_root",
    "collect_dataset",
    "crossing",
    "dataset_dir",
    "default_config",
    "make_ippo",
    "make_train",
    "quick_dataset",
    "rollout_behaviour",
    "run_dir",
    "select_checkpoint",
    "tiny_config",
    "train_behaviour",
]
