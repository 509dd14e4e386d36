"""``eaq report``: one table (and goal check) over several finished benchmark runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass(frozen=True)
class Report:
    """Merge the finished cells of several benchmark runs into one table and goal check
    (e.g. Poor, Medium and Good from separate runs). Each run's differing settings are listed."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Benchmark run directories (results/<run>), each with config.json and its cell files (cells/*.json,
    or results.json); the cells of one map and quality must come from one learner (kind, updates, CQL weight) and one dataset."""
    out: Path | None = None
    """Also write results.csv, results.json, table.md and bars.png here."""

    def run(self) -> int:
        from eaq.pipeline.report import (
            merge_runs,
            plot_bars,
            summarize,
            table_markdown,
            write_report,
        )

        cells, header = merge_runs(list(self.runs))
        rows = summarize(cells)
        print(table_markdown(rows, header, cells))
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            paths = write_report(cells, self.out, header)
            paths["bars"] = plot_bars(rows, self.out / "bars.png")
            print("\n".join(f"wrote {p}" for p in paths.values()))
        return 0
