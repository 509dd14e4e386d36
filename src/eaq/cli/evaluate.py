"""``eaq evaluate``: greedy, legal-masked, vectorised SMAX evaluation of a trained learner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass(frozen=True)
class Evaluate:
    """Evaluate an offline-training checkpoint greedily in SMAX (win rate, return, 95 % CIs)."""

    checkpoint: tyro.conf.Positional[Path]
    """Run directory written by train-offline (its latest checkpoint is used)."""
    episodes: int = 256
    """Episodes to roll out."""
    seed: int = 0
    """Seed for the environment."""
    step: int | None = None
    """Evaluate this saved update instead of the latest."""
    json: bool = False
    """Print the result as JSON."""

    def run(self) -> int:
        import jax

        from eaq.offline.train import load_checkpoint, make_policy_evaluator

        if self.episodes < 1:
            raise ValueError("--episodes must be >= 1")
        ckpt = load_checkpoint(self.checkpoint, self.step)
        evaluate = make_policy_evaluator(ckpt.spec, ckpt.config)
        res = evaluate(ckpt.acting_params, jax.random.PRNGKey(self.seed), self.episodes)
        if self.json:
            out = {"checkpoint": str(self.checkpoint), "learner": ckpt.config.learner, "step": ckpt.step,
                   "seed": self.seed, **res.to_dict()}
            print(json.dumps(out, indent=2))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{ckpt.config.learner} @ update {ckpt.step} on {ckpt.spec.map_name} ({res.episodes} episodes)")
        for col in ("metric", "mean", "95 % CI"):
            table.add_column(col)
        for name, est in (("win rate", res.win_rate), ("return", res.ret), ("normalized return", res.normalized_return)):
            table.add_row(name, f"{est.mean:.3f}", f"[{est.lo:.3f}, {est.hi:.3f}]")
        table.add_row("mean length", f"{res.mean_length:.1f}", "")
        Console().print(table)
        return 0
