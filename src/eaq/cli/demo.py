"""``eaq demo``: the main job on a small embedded default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro


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
    """Results root (the run is written to OUT/RUN)."""
    run_name: Annotated[str, tyro.conf.arg(name="run")] = "demo"
    """Run name; re-running resumes it. A run made with another configuration (e.g. by an
    older version of eaq) is refused: pick another name."""
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
            run=self.run_name,
            cache_dir=self.cache_dir,
        )
        command = "eaq demo" if self.run_name == "demo" else f"eaq demo --run {self.run_name}"
        paths = run_benchmark(config, command=command)
        print("\n".join(f"wrote {p}" for p in paths.values()))
        return 0
