"""Where trained behaviours and collected datasets live, so later calls (and the pipeline)
reuse them.

Root: an explicit ``cache_dir`` argument / ``--cache-dir``, else ``$EAQ_CACHE_DIR``, else
``~/.cache/eaq``. Layout::

    ROOT/behaviour/<map>/seed<S>-<config hash>/      one IPPO training run (config.json,
                                                     checkpoints/, evals.json, done.json)
    ROOT/datasets/<map>/seed<S>-<config hash>/<quality>-<E>ep-eps<epsilon>/
                                                     a collected dataset (eaq.data layout)
"""

from __future__ import annotations

import os
from pathlib import Path

from eaq.behaviour.config import IPPOConfig

CACHE_ENV_VAR = "EAQ_CACHE_DIR"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: the argument, else $EAQ_CACHE_DIR, else ~/.cache/eaq."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/eaq").expanduser()


def run_dir(map_name: str, seed: int, config: IPPOConfig, cache_dir: str | Path | None = None) -> Path:
    """The training run directory for (map, seed, config)."""
    return cache_root(cache_dir) / "behaviour" / map_name / f"seed{seed}-{config.training_key()}"


def dataset_dir(
    map_name: str, quality: str, n_episodes: int, seed: int, config: IPPOConfig,
    epsilon: float, cache_dir: str | Path | None = None,
) -> Path:
    """The cached dataset directory for one collection."""
    return (
        cache_root(cache_dir) / "datasets" / map_name / f"seed{seed}-{config.training_key()}"
        / f"{quality}-{n_episodes}ep-eps{epsilon:g}"
    )
