"""``eaq collect``: a Poor / Medium / Good dataset from a trained (cached) behaviour policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Collect:
    """Collect a Poor / Medium / Good dataset from a trained (cached) IPPO behaviour.

    Trains or reuses the behaviour run, picks the checkpoint whose greedy normalized return is
    in the quality band, and records epsilon-greedy episodes; exits non-zero (naming the
    nearest checkpoint) when no checkpoint is in the band."""

    map: str = "3m"
    """SMAX map (3m, 2s3z, 8m, 5m_vs_6m, ...)."""
    quality: Literal["poor", "medium", "good"] = "medium"
    """Quality band of the behaviour's greedy normalized return: poor 20-35 %, medium 45-60 %,
    good >= 80 %."""
    episodes: int = 1000
    """Episodes to collect."""
    seed: int = 0
    """Seed of the behaviour training run and of the collection."""
    out: Path | None = None
    """Dataset directory to write (the dataset is always also kept in the cache)."""
    cache_dir: Path | None = None
    """Cache directory for behaviour runs and datasets (default: $EAQ_CACHE_DIR or ~/.cache/eaq)."""
    force: bool = False
    """Overwrite --out and re-collect the cached dataset (the trained behaviour is reused)."""
    epsilon: float = 0.05
    """Probability that an agent acts uniformly over its legal actions instead of greedily."""
    preset: Literal["default", "tiny"] = "default"
    """Training config: the per-map default, or a tiny one for smoke runs (learns little)."""
    updates: int | None = None
    """Override the training step budget (in PPO updates)."""
    progress: bool = True
    """Show the training progress bar (on stderr)."""

    def run(self) -> int:
        import json

        from eaq.behaviour import collect_dataset, dataset_dir, default_config, tiny_config
        from eaq.data import save_dataset
        from eaq.data.card import dataset_card, render_card

        if self.out is not None and self.out.exists() and not self.force:
            raise FileExistsError(f"{self.out} already exists; pass --force to overwrite it")
        config = tiny_config() if self.preset == "tiny" else default_config(self.map)
        if self.updates is not None:
            config = config.replace(num_updates=self.updates)
        batch = collect_dataset(
            self.map, self.quality, self.episodes, self.seed, self.cache_dir, config,
            epsilon=self.epsilon, force=self.force, progress=self.progress,
        )
        cached = dataset_dir(self.map, self.quality, self.episodes, self.seed, config,
                             self.epsilon, self.cache_dir)
        title = f"{self.map} {self.quality} ({cached})"
        if self.out is not None:
            save_dataset(batch, self.out, force=self.force)
            title = f"{self.map} {self.quality} -> {self.out}"
        render_card(dataset_card(batch), title=title)
        print(json.dumps({"dataset": str(self.out or cached), "cached": str(cached)}))
        return 0
