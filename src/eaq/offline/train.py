"""Offline training loop shared by all learners (PureJaxRL style).

``make_train(config, spec)`` builds pure functions: ``init(key) -> TrainState`` and a jitted
``update_segment(state, data, probs, n_updates)`` that runs ``n_updates`` gradient updates in
one ``lax.scan`` (batch sampling included). ``train_offline`` drives segments from Python:
progress bar, periodic greedy evaluation in SMAX, Orbax checkpoints, the resolved config and a
learning curve (CSV + PNG) in ``out_dir``; re-running with the same ``out_dir`` resumes.

Batches are sharded over all local devices (a 1-D ``jax.sharding.Mesh``, axis ``data``) when
the batch size divides evenly; parameters and the dataset are replicated, and XLA inserts the
gradient all-reduce.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from eaq.data.batch import EpisodeBatch
from eaq.data.store import atomic_write_text
from eaq.env.smax import EnvSpec
from eaq.evaluation.policy_eval import EvalResult
from eaq.offline import bc, maicq, qmix_cql
from eaq.offline.config import OfflineConfig
from eaq.offline.networks import AgentNet, masked_argmax, state_scale_from_data, with_agent_id
from eaq.offline.sampler import (
    EpisodeData,
    check_datasets,
    describe,
    episode_probabilities,
    sample_episodes,
    to_episode_data,
)

FORMAT = "eaq-offline-checkpoint/1"
CONFIG_FILE = "config.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
RESULT_FILE = "result.json"
CKPT_DIR = "checkpoints"

LEARNER_MODULES: dict[str, ModuleType] = {"qmix-cql": qmix_cql, "maicq": maicq, "bc": bc}


@struct.dataclass
class TrainState:
    """Everything a run needs to continue: parameters, target parameters, optimiser state,
    the number of updates done and the PRNG key."""

    params: Any
    target_params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


class Train(NamedTuple):
    """Pure functions of one learner for one map (see ``make_train``)."""

    init: Callable[[jax.Array], TrainState]
    update_segment: Callable[..., tuple[TrainState, dict]]
    mesh: Mesh | None
    policy: Callable
    init_carry: Callable[[], jax.Array]


def make_mesh(cfg: OfflineConfig) -> Mesh | None:
    """A 1-D data mesh over the local devices, or None when it cannot split the batch."""
    devices = jax.local_devices()
    if not cfg.data_parallel or len(devices) < 2 or cfg.batch_size % len(devices):
        return None
    return Mesh(np.array(devices), ("data",))


def greedy_policy(spec: EnvSpec, cfg: OfflineConfig):
    """A recurrent greedy policy for ``eaq.env.rollout``: carry = hidden state ``[N, H]``;
    params = the agent network's acting parameters (Q-values or logits, argmax over legals)."""
    net = AgentNet(n_actions=spec.n_actions, hidden_dim=cfg.hidden_dim)

    def policy(params, carry, ts, key):
        carry, scores = net.apply(params, carry, with_agent_id(ts.obs))
        return masked_argmax(scores, ts.legals), carry

    def init_carry():
        return net.initial_hidden((spec.n_agents,))

    return policy, init_carry


def make_train(config: OfflineConfig, spec: EnvSpec) -> Train:
    """Builds the learner's pure ``init(key, state_scale=None)`` and jitted
    ``update_segment(state, data, probs, n_updates)`` for maps shaped like ``spec``.

    ``state_scale: [S]`` (see ``networks.state_scale_from_data``) is written into the mixer's
    parameters at init; the default leaves the state unscaled."""
    learner = LEARNER_MODULES[config.learner]
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
    mesh = make_mesh(config)

    def init(key: jax.Array, state_scale: jax.Array | None = None) -> TrainState:
        init_key, key = jax.random.split(key)
        params, target = learner.init(init_key, spec, config, state_scale)
        return TrainState(params, target, tx.init(params), jnp.array(0, jnp.int32), key)

    def one_update(carry, _):
        state, data, probs = carry
        key, sample_key, loss_key = jax.random.split(state.key, 3)
        batch = sample_episodes(data, probs, sample_key, config.batch_size)
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))
        grads, metrics = jax.grad(learner.loss, has_aux=True)(
            state.params, state.target_params, batch, loss_key, spec, config
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        refresh = step % config.target_update_every == 0
        target = jax.tree.map(
            lambda p, t: jnp.where(refresh, p, t), learner.target_of(params), state.target_params
        )
        return (TrainState(params, target, opt_state, step, key), data, probs), metrics

    def update_segment(state: TrainState, data: EpisodeData, probs: jax.Array, n_updates: int):
        (state, _, _), metrics = jax.lax.scan(one_update, (state, data, probs), None, length=n_updates)
        return state, jax.tree.map(jnp.mean, metrics)

    policy, init_carry = greedy_policy(spec, config)
    return Train(
        init=init,
        update_segment=jax.jit(update_segment, static_argnums=3),
        mesh=mesh,
        policy=policy,
        init_carry=init_carry,
    )


# ---------------------------------------------------------------- checkpoints and results


def _abstract_state(config: OfflineConfig, spec: EnvSpec):
    train = make_train(config, spec)
    shapes = jax.eval_shape(train.init, jax.random.PRNGKey(0))
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def _manager(out_dir: Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        (out_dir / CKPT_DIR).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
    )


@dataclass(frozen=True)
class Checkpoint:
    """A loaded training checkpoint."""

    path: Path
    config: OfflineConfig
    spec: EnvSpec
    step: int
    params: Any
    record: dict = field(repr=False)

    @property
    def acting_params(self):
        return LEARNER_MODULES[self.config.learner].acting_params(self.params)


def read_run_record(out_dir: Path) -> dict:
    """The resolved-config record of a run directory (raises a clear error if it is not one)."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise FileNotFoundError(f"{out_dir}: no such checkpoint directory")
    path = out_dir / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{out_dir}: not an offline-training checkpoint (missing {CONFIG_FILE})")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e
    if record.get("format") != FORMAT:
        raise ValueError(f"{path}: not an offline-training checkpoint (format {record.get('format')!r}, expected {FORMAT!r})")
    return record


def load_checkpoint(out_dir: Path | str, step: int | None = None) -> Checkpoint:
    """Loads the latest (or given) checkpoint of a ``train_offline`` run directory."""
    out_dir = Path(out_dir)
    record = read_run_record(out_dir)
    config = OfflineConfig.from_dict(record["config"])
    spec = EnvSpec.from_dict(record["spec"])
    import orbax.checkpoint as ocp

    with _manager(out_dir) as mgr:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"{out_dir}: the run has no saved checkpoint yet")
        state = mgr.restore(step, args=ocp.args.StandardRestore(_abstract_state(config, spec)))
    return Checkpoint(out_dir, config, spec, int(step), state.params, record)


def _write_curve(out_dir: Path, rows: list[dict], title: str) -> None:
    if not rows:
        return
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / CURVE_CSV, buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in rows if r.get("normalized_return") not in (None, "")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if evals:
        s = np.array([float(r["step"]) for r in evals])
        m = np.array([float(r["normalized_return"]) for r in evals])
        lo = np.array([float(r["normalized_return_lo"]) for r in evals])
        hi = np.array([float(r["normalized_return_hi"]) for r in evals])
        ax.plot(s, m, marker="o", label="normalized return")
        ax.fill_between(s, lo, hi, alpha=0.25)
        w = np.array([100 * float(r["win_rate"]) for r in evals])
        ax.plot(s, w, marker="s", linestyle="--", label="win rate (%)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right")
    else:  # no evaluation was run: show the training loss instead
        ax.plot([float(r["step"]) for r in rows], [float(r.get("loss") or "nan") for r in rows], marker="o")
        ax.set_ylabel("training loss")
    ax.set_xlabel("updates")
    ax.set_title(title)
    fig.tight_layout()
    tmp = out_dir / (CURVE_PNG + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_dir / CURVE_PNG)


def _read_curve(out_dir: Path, upto_step: int) -> list[dict]:
    path = out_dir / CURVE_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if int(float(r["step"])) <= upto_step]


# ---------------------------------------------------------------- the driver


@dataclass(frozen=True)
class TrainResult:
    """What ``train_offline`` returns."""

    config: OfflineConfig
    spec: EnvSpec
    params: Any
    """The learner's parameters after the last update (see ``acting_params`` / ``eaq.offline.qtot``)."""
    curve: list[dict]
    """One row per evaluation point: step, loss, win rate, return, normalized return (+ CIs)."""
    final: EvalResult | None
    """Greedy evaluation after the last update (None if final_eval_episodes == 0)."""
    out_dir: Path | None
    seconds_per_10k_updates: float
    """Wall time of the update segments (after the first, which compiles), per 10k updates."""
    resumed_from: int = 0

    @property
    def acting_params(self):
        return LEARNER_MODULES[self.config.learner].acting_params(self.params)


def _eval_row(step: int, metrics: dict, res: EvalResult | None, wall: float) -> dict:
    row: dict[str, Any] = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    if res is not None:
        row.update(
            win_rate=res.win_rate.mean,
            win_rate_lo=res.win_rate.lo,
            win_rate_hi=res.win_rate.hi,
            ret=res.ret.mean,
            normalized_return=res.normalized_return.mean,
            normalized_return_lo=res.normalized_return.lo,
            normalized_return_hi=res.normalized_return.hi,
        )
    row["wall_seconds"] = round(wall, 3)
    return row


_EVALUATORS: dict[tuple, Callable] = {}


def make_policy_evaluator(spec: EnvSpec, config: OfflineConfig) -> Callable[[Any, jax.Array, int], EvalResult]:
    """``evaluate(acting_params, key, n_episodes)``, compiled once per (map, network width)."""
    from eaq.env import make_env
    from eaq.evaluation.policy_eval import make_evaluator

    key = (spec, config.hidden_dim)
    if key not in _EVALUATORS:
        policy, init_carry = greedy_policy(spec, config)
        _EVALUATORS[key] = make_evaluator(make_env(spec.map_name), policy, init_carry)
    return _EVALUATORS[key]


# Config fields a learner does not read: a change in them must not block resuming its run.
_UNUSED_FIELDS = {
    "qmix-cql": {"icq_policy_beta", "icq_critic_beta"},
    "maicq": {"cql_weight", "cql_ood_actions", "cql_on_synthetic"},
    "bc": {"icq_policy_beta", "icq_critic_beta", "cql_weight", "cql_ood_actions", "cql_on_synthetic", "gamma",
           "mixer_embed_dim", "hypernet_dim", "target_update_every"},
}


def _comparable(record_config: dict) -> dict:
    # A run may be extended (more steps) or re-evaluated differently; everything else it uses
    # must match.
    ignore = {"steps", "eval_every", "eval_episodes", "final_eval_episodes", "segment", "data_parallel"}
    ignore |= _UNUSED_FIELDS.get(record_config.get("learner"), set())
    record_config = {"cql_on_synthetic": True, **record_config}  # runs saved before the field had CQL on all data
    return {k: v for k, v in record_config.items() if k not in ignore}


def _update_relevant(config: OfflineConfig) -> OfflineConfig:
    """The config with fields that do not change the update step reset (a cache key)."""
    d = OfflineConfig()
    return dataclasses.replace(
        config, steps=d.steps, seed=d.seed, segment=d.segment, eval_every=d.eval_every,
        eval_episodes=d.eval_episodes, final_eval_episodes=d.final_eval_episodes,
    )


@functools.lru_cache(maxsize=8)
def _cached_train(config: OfflineConfig, spec: EnvSpec) -> Train:
    # Re-using the jitted functions lets repeated runs (seeds, resumes, tests) skip compiling.
    return make_train(config, spec)


def train_offline(
    config: OfflineConfig,
    datasets: Sequence[EpisodeBatch],
    weights: Sequence[float] | None = None,
    out_dir: Path | str | None = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Trains ``config.learner`` on ``datasets`` (mixed with sampling ``weights``).

    With ``out_dir`` the run writes ``config.json`` (resolved config, env spec, datasets,
    weights), Orbax checkpoints under ``checkpoints/``, ``curve.csv``/``curve.png`` and
    ``result.json``, and resumes from the last checkpoint when called again with the same
    directory (a different config or data raises ValueError). Works with tiny step counts.
    """
    names = list(names) if names is not None else [f"dataset #{i}" for i in range(len(datasets))]
    spec = check_datasets(datasets, names)
    probs_np = episode_probabilities([b.n_episodes for b in datasets], weights)
    record = {
        "format": FORMAT,
        "learner": config.learner,
        "config": config.to_dict(),
        "spec": spec.to_dict(),
        "data": [describe(b, n) for b, n in zip(datasets, names, strict=True)],
        "weights": None if weights is None else [float(w) for w in weights],
        "devices": [str(d) for d in jax.local_devices()],
    }
    out = Path(out_dir) if out_dir is not None else None
    data = to_episode_data(datasets)
    if config.learner == "qmix-cql" and not config.cql_on_synthetic and np.asarray(data.synthetic).all():
        raise ValueError(
            "cql_on_synthetic=False applies CQL to real episodes only, but every dataset is synthetic "
            f"({', '.join(d['name'] or '?' for d in record['data'])}): add a real one or keep CQL on synthetic data"
        )
    train = _cached_train(_update_relevant(config), spec)
    state = train.init(jax.random.PRNGKey(config.seed), state_scale_from_data(data.state, data.mask))
    start, rows = 0, []
    mgr = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if (out / CONFIG_FILE).exists():
            old = read_run_record(out)
            if old.get("learner") != config.learner:
                raise ValueError(f"{out}: holds a {old.get('learner')!r} run, not {config.learner!r}; use another --out")
            if _comparable(old["config"]) != _comparable(record["config"]) or old["spec"] != record["spec"]:
                raise ValueError(f"{out}: holds a run with a different config; use another --out")
            strip = lambda ds: [{k: d[k] for k in ("map", "quality", "source", "episodes", "transitions")} for d in ds]  # noqa: E731
            if strip(old["data"]) != strip(record["data"]) or old.get("weights") != record["weights"]:
                raise ValueError(f"{out}: holds a run on different data or weights; use another --out")
        atomic_write_text(out / CONFIG_FILE, json.dumps(record, indent=2))
        mgr = _manager(out)
        latest = mgr.latest_step()
        if latest is not None:
            import orbax.checkpoint as ocp

            state = mgr.restore(latest, args=ocp.args.StandardRestore(_abstract_state(config, spec)))
            start = int(state.step)
            rows = _read_curve(out, start)
            if log:
                log(f"resuming from update {start} ({out / CKPT_DIR})")

    # Place the data and state: replicated over the mesh (batches are sharded inside the jit).
    if train.mesh is not None:
        replicated = NamedSharding(train.mesh, P())
        data, state = jax.device_put((data, state), replicated)
        probs = jax.device_put(jnp.asarray(probs_np, jnp.float32), replicated)
    else:
        data, state = jax.device_put((data, state))
        probs = jnp.asarray(probs_np, jnp.float32)

    evaluate = make_policy_evaluator(spec, config) if (config.eval_episodes or config.final_eval_episodes) else None
    learner = LEARNER_MODULES[config.learner]
    eval_key = jax.random.PRNGKey(config.seed + 1_000_003)
    t0 = time.perf_counter()
    timed_updates, timed_seconds, first = 0, 0.0, True

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn())
        task = bar.add_task(f"{config.learner} {spec.map_name}", total=config.steps, completed=start)
        bar.start()
    last_metrics: dict = {}
    try:
        step = start
        while step < config.steps:
            next_eval = min(config.steps, (step // config.eval_every + 1) * config.eval_every)
            n = min(config.segment, next_eval - step)
            ts = time.perf_counter()
            state, metrics = train.update_segment(state, data, probs, n)
            metrics = jax.device_get(metrics)
            if not first:
                timed_updates += n
                timed_seconds += time.perf_counter() - ts
            first = False
            step += n
            if bar is not None:
                bar.update(task, completed=step, description=f"{config.learner} {spec.map_name} loss {float(metrics['loss']):.3f}")
            if step == next_eval:
                res = None
                if config.eval_episodes and step < config.steps:
                    res = evaluate(learner.acting_params(state.params), jax.random.fold_in(eval_key, step), config.eval_episodes)
                if step < config.steps or not config.final_eval_episodes:
                    rows.append(_eval_row(step, metrics, res, time.perf_counter() - t0))
                else:
                    last_metrics = metrics
                if mgr is not None:
                    import orbax.checkpoint as ocp

                    mgr.save(step, args=ocp.args.StandardSave(state))
                    mgr.wait_until_finished()
                    if rows:
                        _write_curve(out, rows, f"{config.learner} on {spec.map_name}")
                if log and res is not None:
                    log(f"update {step}: win rate {res.win_rate}, normalized return {res.normalized_return}")
    finally:
        if bar is not None:
            bar.stop()

    final = None
    if config.final_eval_episodes:
        final = evaluate(learner.acting_params(state.params), jax.random.fold_in(eval_key, config.steps), config.final_eval_episodes)
        if not rows or int(float(rows[-1]["step"])) < config.steps:
            rows.append(_eval_row(config.steps, last_metrics, final, time.perf_counter() - t0))
    per10k = 1e4 * timed_seconds / timed_updates if timed_updates else math.nan
    if out is not None and math.isnan(per10k) and (out / RESULT_FILE).is_file():
        # Nothing was timed in this call (a finished run re-opened): keep the measured figure.
        per10k = float(json.loads((out / RESULT_FILE).read_text()).get("seconds_per_10k_updates") or math.nan)
    if out is not None:
        _write_curve(out, rows, f"{config.learner} on {spec.map_name}")
        result = {
            "step": config.steps,
            "final": None if final is None else final.to_dict(),
            "seconds_per_10k_updates": per10k,
            "resumed_from": start,
            "dataset_mean_normalized_return": [d["mean_normalized_return"] for d in record["data"]],
        }
        atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=2))
        mgr.close()
    params = jax.device_get(state.params)
    return TrainResult(config, spec, params, rows, final, out, per10k, start)
