"""The ``eaq`` command line: one subcommand per pipeline stage (thin wrappers over the library).

Each subcommand is a frozen dataclass (its fields are the options, documented by docstrings)
with a ``run() -> int`` method; ``main`` dispatches with tyro.
"""

from __future__ import annotations

import sys

import tyro

from eaq.cli._util import subcommand_union
from eaq.cli.benchmark import Benchmark
from eaq.cli.collect import Collect
from eaq.cli.dataset import DatasetCommand
from eaq.cli.demo import Demo
from eaq.cli.diffusion import Augment, TrainDiffusion
from eaq.cli.evaluate import Evaluate
from eaq.cli.report import Report
from eaq.cli.train_offline import TrainOffline

COMMANDS: dict[str, type] = {
    "demo": Demo,
    "dataset": DatasetCommand,
    "collect": Collect,
    "train-diffusion": TrainDiffusion,
    "augment": Augment,
    "train-offline": TrainOffline,
    "evaluate": Evaluate,
    "benchmark": Benchmark,
    "report": Report,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eaq`` command."""
    from eaq.data.errors import DatasetError

    cmd = tyro.cli(
        subcommand_union(COMMANDS),
        args=argv,
        prog="eaq",
        description="EAQ: diffusion-based episode augmentation for offline MARL on SMAX.",
        config=(tyro.conf.OmitArgPrefixes,),
    )
    try:
        return int(cmd.run() or 0)
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError) as e:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished stages and checkpoints are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
