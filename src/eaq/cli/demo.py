"""``eaq demo``: the main job on a small embedded default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Demo:
    """The main job, small: the smoke benchmark on 3m Medium with one seed, and its table."""

    map: str = "3m"
    """SMAX map."""
    quality: str = "medium"
    """Dataset quality."""
    seeds: int = 1
    """Seeds per cell."""
    out: Path = Path("results")
    """Results root (the run is written to OUT/demo)."""
    cache_dir: Path | None = None
    """Cache for behaviour runs and datasets (default: $EAQ_CACHE_DIR or ~/.cache/eaq)."""

    def run(self) -> int:
        from eaq.pipeline import BenchmarkConfig, run_benchmark

        config = BenchmarkConfig(
            maps=(self.map,),
            qualities=(self.quality,),
            seeds=self.seeds,
            preset="smoke",
            out=self.out,
            run="demo",
            cache_dir=self.cache_dir,
        )
        paths = run_benchmark(config, command="eaq demo")
        print("\n".join(f"wrote {p}" for p in paths.values()))
        return 0
