"""``eaq train-offline``: train QMIX+CQL, MA-ICQ or BC on one or more datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from eaq.offline.config import LearnerName


def parse_weights(text: str | None, n_datasets: int) -> list[float] | None:
    """``"0.5,0.5"`` -> [0.5, 0.5]; checks there is one weight per dataset."""
    if text is None:
        return None
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError as e:
        raise ValueError(f"--weights must be comma-separated numbers, got {text!r}") from e
    if len(weights) != n_datasets:
        raise ValueError(f"--weights has {len(weights)} values for {n_datasets} --data paths")
    return weights


@dataclass(frozen=True)
class TrainOffline:
    """Train an offline MARL learner (qmix-cql, maicq, bc) on datasets; resumable with the same --out."""

    data: tyro.conf.UseAppendAction[tuple[Path, ...]]
    """Dataset directory; repeat --data to mix several datasets."""
    out: Path
    """Run directory: checkpoints, config.json, curve.csv/png, result.json. Re-run to resume."""
    learner: LearnerName = "qmix-cql"
    """qmix-cql (QMIX + CQL), maicq (MA-ICQ) or bc (behaviour cloning)."""
    steps: int = 10_000
    """Gradient updates."""
    seed: int = 0
    """Seed for initialisation, sampling and evaluation."""
    weights: str | None = None
    """Sampling weight per --data, comma-separated (e.g. 0.5,0.5); default: by episode count."""
    batch_size: int = 32
    """Episodes per update."""
    lr: float = 3e-4
    """Adam learning rate."""
    cql_weight: float = 0.3
    """QMIX+CQL conservative weight: OG-MARL's 3 scaled to SMAX's 10x smaller rewards (3 was the default before 2026-11-27; docs/offline.md)."""
    cql_ood_actions: int = 10
    """QMIX+CQL: random legal joint actions per step in the CQL logsumexp (OG-MARL: 20)."""
    cql_on_synthetic: bool = True
    """QMIX+CQL: apply the CQL term to synthetic --data too; --no-cql-on-synthetic applies it to
    real episodes only (synthetic ones then add TD targets only)."""
    eval_every: int = 1000
    """Evaluate and checkpoint every this many updates."""
    eval_episodes: int = 64
    """Episodes per periodic evaluation (0: checkpoint only)."""
    final_eval_episodes: int = 256
    """Episodes for the final evaluation."""
    segment: int = 250
    """Updates per jitted segment."""

    def run(self) -> int:
        from eaq.data.store import load_dataset
        from eaq.offline.config import OfflineConfig
        from eaq.offline.train import train_offline

        if not self.data:
            raise ValueError("give at least one --data PATH")
        weights = parse_weights(self.weights, len(self.data))
        datasets = [load_dataset(p) for p in self.data]
        config = OfflineConfig(
            learner=self.learner,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            cql_weight=self.cql_weight,
            cql_on_synthetic=self.cql_on_synthetic,
            cql_ood_actions=self.cql_ood_actions,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            final_eval_episodes=self.final_eval_episodes,
            segment=self.segment,
            seed=self.seed,
        )
        result = train_offline(
            config, datasets, weights, out_dir=self.out, names=[str(p) for p in self.data], progress=True, log=print
        )
        if result.final is not None:
            f = result.final
            print(
                f"final ({f.episodes} episodes): win rate {f.win_rate}, return {f.ret}, "
                f"normalized return {f.normalized_return}"
            )
        print(f"saved {self.out} ({result.seconds_per_10k_updates:.1f} s per 10k updates)")
        return 0
