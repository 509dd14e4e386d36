"""The offline learners' configuration (one typed, frozen dataclass for all learners)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

LearnerName = Literal["qmix-cql", "maicq", "bc"]
LEARNERS: tuple[str, ...] = ("qmix-cql", "maicq", "bc")


@dataclass(frozen=True)
class OfflineConfig:
    """Hyper-parameters of offline training (defaults: OG-MARL's QMIX+CQL recipe)."""

    learner: LearnerName = "qmix-cql"
    """Which learner: qmix-cql (QMIX + CQL), maicq (MA-ICQ) or bc (behaviour cloning)."""
    steps: int = 10_000
    """Number of gradient updates."""
    batch_size: int = 32
    """Whole padded episodes per update (split across local devices when divisible)."""
    lr: float = 3e-4
    """Adam learning rate."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    gamma: float = 0.99
    """Discount factor."""
    hidden_dim: int = 64
    """Width of the shared agent network (Dense and GRU)."""
    mixer_embed_dim: int = 32
    """QMIX mixer embedding size."""
    hypernet_dim: int = 64
    """Hidden size of the mixer's hypernetworks."""
    target_update_every: int = 200
    """Hard target-network update period, in updates."""
    cql_weight: float = 0.3
    """QMIX+CQL: weight of the conservative term. OG-MARL uses 3 on SMAC, whose rewards are 10x
    SMAX's; 0.3 keeps that balance here and reached the 3m Medium data (52.1 vs 45.9 with 3 at
    4000 updates, docs/offline.md). The default was 3 before 2026-11-27."""
    cql_on_synthetic: bool = True
    """QMIX+CQL: apply the conservative term to synthetic episodes too (as plain data mixing
    does). False: only real episodes' actions are pushed up, so synthetic episodes add TD
    targets without pulling the policy toward the generator's actions (docs/offline.md)."""
    cql_ood_actions: int = 10
    """QMIX+CQL: random legal joint actions sampled per step for the CQL logsumexp."""
    icq_policy_beta: float = 1.0
    """MA-ICQ: temperature of the advantage weights in the policy loss. OG-MARL uses 0.1 (with
    SMAC's 10x larger rewards and 10^5 updates); on 3m Medium at 1000 updates 0.1 gave 21.9 and
    1.0 gave 43.9 normalized return (docs/offline.md), so 1.0 is the default here."""
    icq_critic_beta: float = 1000.0
    """MA-ICQ: temperature of the in-sample importance weights in the critic target."""
    segment: int = 250
    """Updates per jitted segment (progress, checkpoints and evaluation happen between)."""
    eval_every: int = 1000
    """Evaluate greedily in SMAX (and checkpoint) every this many updates (rounded to segments)."""
    eval_episodes: int = 64
    """Episodes per periodic evaluation (the final evaluation uses final_eval_episodes)."""
    final_eval_episodes: int = 256
    """Episodes for the evaluation after the last update."""
    data_parallel: bool = True
    """Shard each batch over all local devices (a jax.sharding Mesh) when batch_size divides."""
    seed: int = 0
    """Seed for initialisation, sampling and evaluation."""

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; choose one of {', '.join(LEARNERS)}")
        if not self.cql_on_synthetic and self.learner != "qmix-cql":
            raise ValueError(f"cql_on_synthetic=False is a QMIX+CQL option; learner {self.learner!r} has no CQL term")
        for name in ("steps", "batch_size", "segment", "eval_every", "target_update_every", "cql_ood_actions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OfflineConfig:
        """A config from a saved record. A field missing from an older record takes its default,
        so a field added later must default to the behaviour from before it (cql_on_synthetic:
        True); records of resumed runs and copied Q_tot guides are compared this way."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
