"""A checkpointed, resumable IPPO run with a progress bar: the behaviour policies' trainer.

Training runs in jitted segments of ``updates_per_segment`` updates; between segments Python
updates the progress bar and, on the checkpoint schedule (every segment early on, then every
``checkpoint_every`` updates), evaluates the greedy policy and saves an Orbax checkpoint.
Re-running with the same map, seed and config resumes from the last checkpoint; a finished
run is reused as is.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eaq.behaviour.bands import BANDS, Band, CheckpointEval, crossing, reached
from eaq.behaviour.cache import run_dir
from eaq.behaviour.checkpoints import CheckpointStore
from eaq.behaviour.config import IPPOConfig, default_config
from eaq.behaviour.ippo import IPPO, make_ippo, make_segment
from eaq.data.store import atomic_write_text
from eaq.evaluation.policy_eval import make_evaluator

MAIN_STORE = "checkpoints"
CONFIG_FILE = "config.json"
DONE_FILE = "done.json"
EVALS_FILE = "evals.json"
# Evaluation keys are folded from the seed with this offset, apart from the training stream.
_EVAL_KEY_OFFSET = 1_000_003


@dataclass(frozen=True)
class BehaviourRun:
    """A finished (or stopped) training run and its evaluated checkpoints."""

    map_name: str
    seed: int
    config: IPPOConfig
    directory: Path
    evals: list[CheckpointEval]
    finished: str | None
    """Why training ended (``bands covered``, ``step budget``), or None if stopped early."""

    @property
    def checkpoints(self) -> CheckpointStore:
        """The main-line checkpoints."""
        return self.store(MAIN_STORE)

    def store(self, name: str) -> CheckpointStore:
        return CheckpointStore(self.directory / name)

    def checkpoint_path(self, ev: CheckpointEval) -> Path:
        return self.directory / ev.store / str(ev.step)


@functools.lru_cache(maxsize=8)
def compiled(config: IPPOConfig, map_name: str):
    """(ippo, jitted segment, greedy evaluator), built once per (config, map) per process."""
    ippo = make_ippo(config, map_name)
    segment = jax.jit(make_segment(ippo, config.updates_per_segment))
    evaluate = make_evaluator(ippo.env, ippo.greedy_policy, ippo.init_carry)
    return ippo, segment, evaluate


def runner_shardings(ippo: IPPO):
    """Data parallelism over local devices: the environment batch (env states, time steps,
    per-row GRU state) is split along its leading axis, everything else is replicated; XLA
    then partitions the jitted update and all-reduces the gradients. One device (or a batch
    that does not divide) means plain single-device placement."""
    template = jax.eval_shape(ippo.init, jax.random.PRNGKey(0))
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    shardings = jax.tree.map(lambda _: replicated, template)
    if len(devices) == 1 or ippo.config.num_envs % len(devices):
        return shardings
    split = NamedSharding(mesh, PartitionSpec("data"))
    batch = lambda tree: jax.tree.map(lambda x: split if x.ndim else replicated, tree)  # noqa: E731
    return shardings.replace(
        env_state=batch(template.env_state), ts=batch(template.ts), resets=split, hidden=split,
        ep_return=split,
    )


def runner_template(ippo: IPPO, seed: int):
    """The Runner's structure (shapes, dtypes, placement) for restoring checkpoints."""
    template = jax.eval_shape(ippo.init, jax.random.PRNGKey(seed))
    return jax.tree.map(
        lambda t, s: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=s),
        template, runner_shardings(ippo),
    )


def initial_runner(ippo: IPPO, seed: int):
    """A fresh Runner, placed like restored ones (so the jitted segment compiles once)."""
    runner = jax.jit(ippo.init)(jax.random.PRNGKey(seed))
    return jax.device_put(runner, runner_shardings(ippo))


def _check_config_file(path: Path, record: dict[str, Any]) -> None:
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); delete the run directory to retrain") from e
        if saved != record:
            diff = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k))
            raise ValueError(f"{path}: the cached run was made with a different {', '.join(diff)}; "
                             f"delete {path.parent} to retrain")
    else:
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))


def _checkpoint_due(update: int, config: IPPOConfig) -> bool:
    return (
        update <= config.dense_checkpoints_until
        or update % config.checkpoint_every == 0
        or update >= config.num_updates
    )


def train_behaviour(
    map_name: str,
    seed: int = 0,
    config: IPPOConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    stop_after_updates: int | None = None,
) -> BehaviourRun:
    """Trains (or resumes, or reuses) the IPPO behaviour run for (map, seed, config).

    ``stop_after_updates`` stops the loop as an interruption would (no done marker), so a later
    call resumes from the last checkpoint.
    """
    config = config or default_config(map_name)
    directory = run_dir(map_name, seed, config, cache_dir)
    record = {"map": map_name, "seed": seed, "config": config.to_dict(),
              "config_hash": config.training_key(), "algorithm": "ippo"}
    _check_config_file(directory / CONFIG_FILE, record)
    store = CheckpointStore(directory / MAIN_STORE)
    done_file = directory / DONE_FILE
    if done_file.exists():
        evals = store.evaluations()
        for band in BANDS.values():
            if (directory / _refine_store(band)).exists():
                evals += CheckpointStore(directory / _refine_store(band)).evaluations()
        return BehaviourRun(map_name, seed, config, directory, evals,
                            json.loads(done_file.read_text())["reason"])

    ippo, segment, evaluate = compiled(config, map_name)
    steps_per_update = config.num_envs * config.num_steps
    eval_root = jax.random.PRNGKey(seed)

    def checkpoint(runner) -> CheckpointEval:
        step = int(runner.update)
        key = jax.random.fold_in(eval_root, _EVAL_KEY_OFFSET + step)
        result = evaluate(runner.params, key, config.eval_episodes)
        ev = CheckpointEval(step=step, timesteps=step * steps_per_update, eval=result.to_dict())
        store.save(runner, ev)
        return ev

    started = time.perf_counter()
    latest = store.latest_step()
    if latest is None:
        runner = initial_runner(ippo, seed)
        checkpoint(runner)
    else:
        runner = store.restore_state(latest, runner_template(ippo, seed))
    evals = store.evaluations()
    atomic_write_text(directory / EVALS_FILE, json.dumps([e.to_dict() for e in evals], indent=2))

    reason = None
    with _Progress(map_name, config, enabled=progress) as bar:
        bar.show(int(runner.update), evals[-1] if evals else None, None, None)
        while True:
            update = int(runner.update)
            if update >= config.num_updates:
                reason = "step budget"
                break
            if config.stop_when_bands_covered and reached(evals, config.good_stop_return):
                reason = f"reached {config.good_stop_return:g} %"
                break
            if stop_after_updates is not None and update >= stop_after_updates:
                break
            runner, metrics = segment(runner)
            update = int(runner.update)
            episodes = float(np.sum(metrics.episodes))
            train_return = float(np.sum(metrics.return_sum)) / max(episodes, 1.0)
            train_win = float(np.sum(metrics.wins)) / max(episodes, 1.0)
            if _checkpoint_due(update, config):
                evals.append(checkpoint(runner))
                atomic_write_text(directory / EVALS_FILE,
                                  json.dumps([e.to_dict() for e in evals], indent=2))
            bar.show(update, evals[-1], train_return, train_win)

    if reason is not None:
        for band in (BANDS["poor"], BANDS["medium"]):
            evals += _refine(band, evals, store, directory, ippo, segment, evaluate, seed,
                             progress)
        atomic_write_text(directory / EVALS_FILE, json.dumps([e.to_dict() for e in evals], indent=2))
        atomic_write_text(done_file, json.dumps({
            "reason": reason, "updates": int(runner.update),
            "timesteps": int(runner.update) * steps_per_update,
            "wall_s_last_session": time.perf_counter() - started,
        }, indent=2))
    return BehaviourRun(map_name, seed, config, directory, evals, reason)


def _refine_store(band: Band) -> str:
    return f"refine-{band.name}"


def _refine(band: Band, evals: list[CheckpointEval], main: CheckpointStore, directory: Path,
            ippo: IPPO, segment, evaluate, seed: int, progress: bool) -> list[CheckpointEval]:
    """Band refinement: if the main line jumped over ``band``, restart from the checkpoint
    below it with a smaller learning rate, checkpointing each segment, until one lands inside.
    Returns the refinement checkpoints (none if not needed or not possible)."""
    config = ippo.config
    root = crossing([e for e in evals if e.store == MAIN_STORE], band)
    if root is None:
        return []
    name = _refine_store(band)
    if (directory / name).exists():  # an earlier, interrupted or finished refinement
        done = CheckpointStore(directory / name).evaluations()
        if any(band.contains(e.normalized_return) for e in done):
            return done
        shutil.rmtree(directory / name)
    store = CheckpointStore(directory / name)
    below = main.restore_state(root.step, runner_template(ippo, seed))
    eval_root = jax.random.fold_in(jax.random.PRNGKey(seed), _EVAL_KEY_OFFSET + 500_000 + int(band.lo))
    steps_per_update = config.num_envs * config.num_steps
    scale, out = config.refine_lr_scale, []
    log = _log if progress else (lambda msg: None)
    log(f"band refinement ({band}): from step {root.step} "
        f"({root.normalized_return:.1f} %), learning-rate scale {scale:g}")
    for attempt in range(config.refine_attempts):
        runner = below.replace(lr_scale=jnp.asarray(scale, jnp.float32))
        for _ in range(config.refine_max_updates):
            runner, _ = segment(runner)
            n = len(out) + 1
            result = evaluate(runner.params, jax.random.fold_in(eval_root, n), config.eval_episodes)
            ev = CheckpointEval(
                step=n, timesteps=int(runner.update) * steps_per_update, eval=result.to_dict(),
                store=name, origin={"from_step": root.step, "lr_scale": scale,
                                    "attempt": attempt, "updates": int(runner.update)},
            )
            store.save(runner, ev)
            out.append(ev)
            value = ev.normalized_return
            if band.contains(value):
                log(f"  {name}/{n}: {value:.1f} % -> in band")
                return out
            if value > band.hi:
                log(f"  {name}/{n}: {value:.1f} % overshoots; retrying with scale {scale / 4:g}")
                break
            below = runner.replace(lr_scale=jnp.ones((), jnp.float32))
        scale /= 4
    log(f"  refinement found no checkpoint in {band}")
    return out


def _log(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(msg, highlight=False)


class _Progress:
    """A rich progress bar on stderr: updates, env steps, train win rate / return, last eval."""

    def __init__(self, map_name: str, config: IPPOConfig, enabled: bool):
        self.enabled = enabled
        self.config = config
        self.map_name = map_name

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn(f"IPPO {self.map_name}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.config.num_updates, info="")
        return self

    def show(self, update: int, last_eval: CheckpointEval | None, ret, win) -> None:
        if not self.enabled:
            return
        steps = update * self.config.num_envs * self.config.num_steps
        info = f"steps {steps:,}"
        if ret is not None:
            info += f" | train return {ret:.2f} win {100 * win:.0f}%"
        if last_eval is not None:
            info += (f" | eval@{last_eval.step} {last_eval.normalized_return:.1f}% "
                     f"win {100 * last_eval.win_rate:.0f}%")
        self._progress.update(self._task, completed=update, info=info)

    def __exit__(self, *exc):
        if self.enabled:
            self._progress.__exit__(*exc)
        return False
