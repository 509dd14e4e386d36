"""Offline MARL learners (QMIX+CQL, MA-ICQ, BC) trained on episode datasets, and the frozen
differentiable Q_tot that guides the EAQ diffusion model.

Stage order (no stage imports a later one): env -> data -> evaluation -> behaviour -> offline
-> diffusion -> pipeline.
"""

from eaq.offline.config import LEARNERS, OfflineConfig
from eaq.offline.qtot import QtotFunction, load_qtot, qtot_from_params
from eaq.offline.train import (
    Checkpoint,
    TrainResult,
    load_checkpoint,
    make_policy_evaluator,
    make_train,
    train_offline,
)

__all__ = [
    "LEARNERS",
    "Checkpoint",
    "OfflineConfig",
    "QtotFunction",
    "TrainResult",
    "load_checkpoint",
    "load_qtot",
    "make_policy_evaluator",
    "make_train",
    "qtot_from_params",
    "train_offline",
]
