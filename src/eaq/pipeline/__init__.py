"""The EAQ benchmark pipeline: every stage end to end, resumable, with a report."""

from eaq.pipeline.config import PRESETS, Cell, Preset
from eaq.pipeline.run import Benchmark, BenchmarkConfig, run_benchmark

__all__ = ["PRESETS", "Benchmark", "BenchmarkConfig", "Cell", "Preset", "run_benchmark"]
