"""Poor / Medium / Good datasets: train (or reuse) the behaviour run, pick the checkpoint whose
greedy normalized return is in the quality band, roll it out epsilon-greedy, save the batch.

The same map, quality, episode count, seed, config and epsilon give a bit-identical dataset.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from eaq.behaviour.bands import BANDS, Band, CheckpointEval, get_band, select_checkpoint
from eaq.behaviour.cache import dataset_dir
from eaq.behaviour.config import IPPOConfig, default_config
from eaq.behaviour.training import BehaviourRun, compiled, runner_template, train_behaviour
from eaq.data import DatasetMeta, EpisodeBatch, load_dataset, save_dataset
from eaq.data.batch import QUALITIES
from eaq.data.validate import validate_batch
from eaq.env.rollout import make_rollout

EPSILON = 0.05
# Episodes per compiled rollout call: bounds memory on big maps. Fixed (not machine-dependent)
# so the random streams, hence the dataset, never depend on where it was collected.
ROLLOUT_CHUNK = 250
# Collection keys are folded from the seed with this offset, apart from training and evaluation.
_COLLECT_KEY_OFFSET = 2_000_003


def rollout_behaviour(
    run: BehaviourRun, checkpoint: CheckpointEval, n_episodes: int, seed: int,
    epsilon: float = EPSILON,
):
    """Rolls out ``checkpoint`` epsilon-greedily for n episodes; returns Episodes-like
    numpy arrays (observations [E, T, N, O], ...) concatenated over fixed-size chunks."""
    ippo, _, _ = compiled(run.config, run.map_name)
    state = run.store(checkpoint.store).restore_state(checkpoint.step, runner_template(ippo, run.seed))
    rollout = _compiled_rollout(run.config, run.map_name, float(epsilon))
    key = jax.random.fold_in(jax.random.PRNGKey(seed), _COLLECT_KEY_OFFSET)
    chunks = []
    for i, start in enumerate(range(0, n_episodes, ROLLOUT_CHUNK)):
        size = min(ROLLOUT_CHUNK, n_episodes - start)
        ep = rollout(state.params, jax.random.fold_in(key, i), ROLLOUT_CHUNK)
        chunks.append(jax.tree.map(lambda x, size=size: np.asarray(x[:size]), ep))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)


_ROLLOUTS: dict = {}


def _compiled_rollout(config: IPPOConfig, map_name: str, epsilon: float):
    key = (config, map_name, epsilon)
    if key not in _ROLLOUTS:
        ippo, _, _ = compiled(config, map_name)
        _ROLLOUTS[key] = jax.jit(
            make_rollout(ippo.env, ippo.epsilon_greedy_policy(epsilon), ippo.init_carry),
            static_argnums=2,
        )
    return _ROLLOUTS[key]


def collect_dataset(
    map_name: str,
    quality: str,
    n_episodes: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: IPPOConfig | None = None,
    epsilon: float = EPSILON,
    force: bool = False,
    progress: bool = True,
    band: Band | None = None,
) -> EpisodeBatch:
    """A ``quality`` (poor / medium / good) dataset of ``n_episodes`` real SMAX episodes.

    Trains or reuses the behaviour run for (map, seed, config) in the cache, picks the
    checkpoint in the quality band (raises ``NoCheckpointInBand``, a ValueError, if none is),
    collects epsilon-greedy episodes and caches the dataset (reused unless ``force``).
    ``band`` overrides the standard band for ``quality`` (for experiments and tests; the
    band is recorded in the card and the cached path, and the label stays ``quality``).
    """
    if n_episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {n_episodes}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of poor, medium, good")
    standard = BANDS.get(quality)
    band = band or get_band(quality)
    config = config or default_config(map_name)
    path = dataset_dir(map_name, quality, n_episodes, seed, config, epsilon, cache_dir)
    if band != standard:
        path = path.with_name(f"{path.name}-band{band.lo:g}-{band.hi:g}")
    if path.exists() and not force:
        return load_dataset(path)

    run = train_behaviour(map_name, seed, config, cache_dir, progress=progress)
    chosen = select_checkpoint(run.evals, band, where=f" of {run.directory}")
    episodes = rollout_behaviour(run, chosen, n_episodes, seed, epsilon)
    ev = chosen.eval
    generator = {
        "kind": "ippo-behaviour",
        "checkpoint": str(run.checkpoint_path(chosen)),
        "checkpoint_step": chosen.step,
        "checkpoint_timesteps": chosen.timesteps,
        "checkpoint_origin": chosen.origin or "main line",
        "eval_episodes": ev["episodes"],
        "eval_normalized_return": ev["normalized_return"],
        "eval_win_rate": ev["win_rate"],
        "band": [band.lo, band.hi],
        "epsilon": epsilon,
        "config_hash": config.training_key(),
        "training_seed": seed,
    }
    batch = EpisodeBatch.from_arrays(
        episodes,
        DatasetMeta(spec=compiled(config, map_name)[0].env.spec, quality=quality,
                    source="real", generator=generator, seed=seed),
    )
    validate_batch(batch)
    save_dataset(batch, path, force=True)
    return batch


def quick_dataset(map_name: str = "3m", quality: str = "good", n_episodes: int = 64,
                  seed: int = 0, cache_dir: str | Path | None = None) -> EpisodeBatch:
    """A small dataset from the default behaviour run (cached): for smoke runs and demos."""
    return collect_dataset(map_name, quality, n_episodes, seed, cache_dir)


__all__ = ["EPSILON", "collect_dataset", "quick_dataset", "rollout_behaviour"]
