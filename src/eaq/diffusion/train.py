"""Training of the episode diffusion model (PureJaxRL style) with checkpoints and resume.

``make_train(config, layout, qtot_apply)`` builds pure, jittable pieces: ``init(key)`` and
``segment(state, data, mask, norm, qtot_params, n_updates)``, which runs updates inside one
``lax.scan``. Each update samples a minibatch of episodes, sharded over all local devices along
the batch axis (``jax.sharding``; XLA all-reduces the gradients), so the same code runs on one
CPU, two forced host devices, or a GPU.

``train_diffusion`` is the driver: Python only between segments (progress bar, metrics,
orbax checkpoints, resume when re-run with the same ``out_dir``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eaq.data.batch import EpisodeBatch
from eaq.data.store import atomic_write_text
from eaq.diffusion.codec import EpisodeLayout, Normaliser, encode, fit_normaliser
from eaq.diffusion.config import DiffusionConfig
from eaq.diffusion.diffusion import cosine_alpha_bars, diffusion_loss, ema_update, min_snr_weights
from eaq.diffusion.qloss import QtotApply, q_loss
from eaq.diffusion.unet import TemporalUNet
from eaq.env.smax import EnvSpec
from eaq.offline.config import OfflineConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
METRIC_NAMES = ("loss", "loss_diffusion", "loss_q", "mean_q")


@struct.dataclass
class TrainState:
    """params / ema_params: U-Net weights (EMA ones are sampled from); step: [] int32."""

    params: Any
    ema_params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


class Trainer(NamedTuple):
    init: Any
    """init(key) -> TrainState."""
    segment: Any
    """segment(state, data [E, L, C], mask [E, T], norm {mean, scale: [C]}, qtot_params,
    n_updates: static) -> (state, metrics {name: [n_updates]})."""
    denoise: Any
    """denoise(params, x_t [B, L, C], t [B]) -> x0_hat [B, L, C]."""
    length: int
    """L, the padded episode length the U-Net sees."""


def local_mesh() -> Mesh:
    """A 1-D mesh ('data') over every local device."""
    return Mesh(np.array(jax.local_devices()), ("data",))


def resolved_batch_size(batch_size: int, n_devices: int) -> int:
    """Rounds the global batch up to a multiple of the device count."""
    return n_devices * math.ceil(batch_size / n_devices)


def _compile_key(config: DiffusionConfig) -> DiffusionConfig:
    """The config with the fields that do not change the compiled update zeroed."""
    return dataclasses.replace(
        config, n_updates=1, updates_per_segment=1, checkpoint_every=1, sample_chunk=1, seed=0
    )


def make_train(
    config: DiffusionConfig,
    layout: EpisodeLayout,
    qtot_apply: QtotApply | None = None,
    mesh: Mesh | None = None,
) -> Trainer:
    """Pure training pieces for one map; ``qtot_apply`` is needed when ``q_weight > 0`` (given
    with ``q_weight = 0``, L_Q and mean Q_tot are still computed and logged, without gradient).

    Cached: the same (config, map, Q_tot, mesh) reuses the compiled segment (resume, tests).
    """
    config.validate()
    if config.q_weight > 0 and qtot_apply is None:
        raise ValueError(f"q_weight={config.q_weight} needs a Q_tot function (--qtot); use 0 for EAQ^-Q")
    return _make_train(_compile_key(config), layout, qtot_apply, mesh or local_mesh())


@functools.lru_cache(maxsize=16)
def _unet(n_channels: int, base: int, mults: tuple[int, ...], kernel: int) -> TemporalUNet:
    """One module per architecture, so its ``apply`` (and the compiled samplers keyed on it) is
    shared between runs."""
    return TemporalUNet(n_channels, base, mults, kernel)


@functools.lru_cache(maxsize=16)
def _make_train(config: DiffusionConfig, layout: EpisodeLayout, qtot_apply, mesh: Mesh) -> Trainer:
    batch_size = resolved_batch_size(config.batch_size, mesh.size)
    by_batch = NamedSharding(mesh, PartitionSpec("data"))
    C = layout.n_channels
    L, steps = config.steps(layout.spec.max_steps)
    model = _unet(C, config.base_channels, tuple(config.channel_mults), config.kernel_size)
    denoise = model.apply
    alpha_bars = jnp.asarray(cosine_alpha_bars(config.n_diffusion_steps))
    level_weights = None
    if config.min_snr_gamma > 0:
        level_weights = jnp.asarray(min_snr_weights(cosine_alpha_bars(config.n_diffusion_steps), config.min_snr_gamma))
    time_valid = jnp.arange(L) < steps
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(config.learning_rate))

    def init(key: jax.Array) -> TrainState:
        k_init, key = jax.random.split(key)
        params = model.init(k_init, jnp.zeros((1, L, C)), jnp.zeros((1,), jnp.int32))
        ema = jax.tree.map(lambda p: jnp.array(p, copy=True), params)  # own buffers: donated
        return TrainState(params, ema, tx.init(params), jnp.zeros((), jnp.int32), key)

    def loss_fn(params, x0, mask, key, norm, qtot_params):
        l_diff, x0_hat = diffusion_loss(denoise, params, x0, time_valid, key, alpha_bars, level_weights)
        if qtot_apply is None:
            l_q = mean_q = jnp.zeros(())
        else:
            # eta = 0 (EAQ^-Q) still logs L_Q, but no gradient flows through Q_tot.
            guided = x0_hat if config.q_weight > 0 else jax.lax.stop_gradient(x0_hat)
            l_q, mean_q = q_loss(
                qtot_apply, qtot_params, guided, mask, norm["mean"], norm["scale"], layout, config.q_temperature,
                config.q_target, config.q_positions_from_motion,
            )
        loss = l_diff + config.q_weight * l_q
        return loss, {"loss": loss, "loss_diffusion": l_diff, "loss_q": l_q, "mean_q": mean_q}

    def update(state: TrainState, data, mask, norm, qtot_params):
        key, k_idx, k_loss = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_idx, (batch_size,), 0, data.shape[0])
        x0 = jax.lax.with_sharding_constraint(data[idx], by_batch)
        m = jax.lax.with_sharding_constraint(mask[idx], by_batch)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x0, m, k_loss, norm, qtot_params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, config.ema_decay, state.step)
        return TrainState(params, ema, opt_state, state.step + 1, key), metrics

    def segment(state, data, mask, norm, qtot_params, n_updates: int):
        def body(s, _):
            return update(s, data, mask, norm, qtot_params)

        return jax.lax.scan(body, state, None, length=n_updates)

    return Trainer(
        init=init,
        segment=jax.jit(segment, static_argnums=5, donate_argnums=0),
        denoise=denoise,
        length=L,
    )


def replicate(tree, mesh: Mesh):
    """Places every leaf on all devices of ``mesh`` (replicated)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _manager(model_dir: Path, read_only: bool = False):
    import orbax.checkpoint as ocp

    # read_only is only used for loading; orbax's own read_only mode logs warnings, so a
    # loading manager is simply one that never creates or saves.
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=not read_only)
    return ocp.CheckpointManager((model_dir / CHECKPOINT_DIR).absolute(), options=options)


def _abstract(tree, mesh: Mesh):
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), tree)


def _restore(model_dir: Path, trainer: Trainer, n_channels: int, mesh: Mesh):
    """(TrainState, Normaliser) of the latest checkpoint, or None when there is none."""
    import orbax.checkpoint as ocp

    if not (model_dir / CHECKPOINT_DIR).exists():
        return None
    mngr = _manager(model_dir, read_only=True)
    step = mngr.latest_step()
    if step is None:
        return None
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    norm_shape = jax.ShapeDtypeStruct((n_channels,), jnp.float32)
    target = {"state": shapes, "normaliser": {"mean": norm_shape, "scale": norm_shape}}
    item = mngr.restore(step, args=ocp.args.StandardRestore(_abstract(target, mesh)))
    mngr.close()
    return item["state"], Normaliser.from_tree(jax.device_get(item["normaliser"]))


def _save(mngr, state: TrainState, normaliser: Normaliser) -> None:
    import orbax.checkpoint as ocp

    item = {"state": state, "normaliser": normaliser.to_tree()}
    mngr.save(int(state.step), args=ocp.args.StandardSave(item), force=True)
    mngr.wait_until_finished()


# ---------------------------------------------------------------------------------------------
# Driver


def _run_record(config: DiffusionConfig, spec: EnvSpec, batch: EpisodeBatch, **extra) -> dict[str, Any]:
    return {
        "diffusion": config.to_dict(),
        "spec": spec.to_dict(),
        "train_data": {
            "episodes": batch.n_episodes,
            "transitions": batch.n_transitions,
            "meta": batch.meta.to_dict(),
        },
        **extra,
    }


def _same_qtot(a: Any, b: Any) -> bool:
    """Two recorded Q_tot paths name the same Q_tot if equal, or if both runs hold the same
    learner, config, env and data (a copied or moved benchmark run, e.g. --extend-from)."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    try:
        ra, rb = (json.loads((Path(p) / "config.json").read_text()) for p in (a, b))
    except (OSError, ValueError):
        return False
    try:  # a record saved before a config field existed holds that field's default
        ca, cb = (OfflineConfig.from_dict(r["config"]).to_dict() for r in (ra, rb))
    except (KeyError, TypeError, ValueError):
        return False
    return ca == cb and all(ra.get(k) == rb.get(k) for k in ("learner", "spec", "data", "weights"))


def _check_same_run(model_dir: Path, record: dict[str, Any]) -> None:
    """A re-run with the same out_dir resumes; anything but n_updates must be unchanged."""
    old = json.loads((model_dir / CONFIG_FILE).read_text())
    new = json.loads(json.dumps(record, default=str))
    if old.get("diffusion"):  # fields added since the run was saved take their legacy values
        old["diffusion"] = DiffusionConfig.from_dict(old["diffusion"]).to_dict()
    for section in ("diffusion", "spec", "train_data", "qtot"):
        a, b = old.get(section), new.get(section)
        if section == "diffusion" and a and b:
            a = {k: v for k, v in a.items() if k not in ("n_updates", "checkpoint_every")}
            b = {k: v for k, v in b.items() if k not in ("n_updates", "checkpoint_every")}
        if section == "qtot" and _same_qtot(a, b):
            continue
        if a != b:
            raise ValueError(
                f"{model_dir / CONFIG_FILE}: field '{section}' differs from this run's "
                f"(saved {a}, now {b}); resume with the same settings or choose another --out"
            )


def train_diffusion(
    config: DiffusionConfig,
    batch: EpisodeBatch,
    qtot=None,
    out_dir: str | Path = "diffusion_model",
    *,
    qtot_path: str | Path | None = None,
    data_path: str | Path | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
) -> Path:
    """Trains (or resumes) the episode diffusion model on ``batch``; returns the model directory.

    ``qtot``: a frozen ``eaq.offline.qtot.QtotFunction`` (``.apply``, ``.params``) or None
    (then ``config.q_weight`` must be 0). ``qtot_path``/``data_path`` are recorded in the
    resolved config (``augment`` reuses them for its fidelity report).
    """
    config.validate()
    if config.q_weight > 0 and qtot is None:
        raise ValueError(f"q_weight={config.q_weight} needs a Q_tot checkpoint (--qtot); use 0 for EAQ^-Q")
    mesh = mesh or local_mesh()
    config = dataclasses.replace(config, batch_size=resolved_batch_size(config.batch_size, mesh.size))
    out_dir = Path(out_dir)
    spec = batch.spec
    layout = EpisodeLayout(spec, config.obs_from_state, config.motion_channels)
    record = _run_record(
        config,
        spec,
        batch,
        qtot=None if qtot_path is None else str(qtot_path),
        data=None if data_path is None else str(data_path),
        n_devices=mesh.size,
        devices=[str(d) for d in mesh.devices.flat],
    )
    resuming = (out_dir / CONFIG_FILE).exists()
    if resuming:
        _check_same_run(out_dir, record)
    out_dir.mkdir(parents=True, exist_ok=True)

    normaliser = fit_normaliser(batch, config.obs_from_state, config.motion_channels)
    trainer = make_train(config, layout, None if qtot is None else qtot.apply, mesh)
    restored = _restore(out_dir, trainer, layout.n_channels, mesh) if resuming else None
    if restored is not None:
        state, normaliser = restored  # the normaliser lives in the checkpoint
    else:
        state = replicate(trainer.init(jax.random.PRNGKey(config.seed)), mesh)
    record["length"] = trainer.length
    record["channels"] = layout.n_channels
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str))

    data = replicate(jnp.asarray(encode(batch, normaliser, trainer.length, config.obs_from_state, config.motion_channels)), mesh)
    mask = replicate(jnp.asarray(batch.mask[:, : config.steps(spec.max_steps)[1]]), mesh)  # [E, steps]
    norm = replicate(normaliser.to_tree(), mesh)
    qtot_params = replicate(qtot.params, mesh) if qtot is not None else None
    metrics_path = out_dir / METRICS_FILE
    history = json.loads(metrics_path.read_text()) if metrics_path.exists() and restored else []
    history = [h for h in history if h["step"] <= int(state.step)]

    mngr = _manager(out_dir)
    done = int(state.step)
    segment_index = 0
    with _progress(progress) as bar:
        # a resumed (or already finished) run shows its last recorded losses, not "nan"
        last = history[-1] if history else {}
        task = bar.add_task("diffusion", total=config.n_updates, completed=done,
                            ld=last.get("loss_diffusion", float("nan")), lq=last.get("loss_q", float("nan")))
        while done < config.n_updates:
            n = min(config.updates_per_segment, config.n_updates - done)
            state, metrics = trainer.segment(state, data, mask, norm, qtot_params, n)
            metrics = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
            done = int(state.step)
            history.append({"step": done, **metrics})
            if not all(math.isfinite(v) for v in metrics.values()):
                raise FloatingPointError(f"non-finite diffusion loss at update {done}: {metrics}")
            bar.update(task, completed=done, ld=metrics["loss_diffusion"], lq=metrics["loss_q"])
            segment_index += 1
            if segment_index % config.checkpoint_every == 0 or done >= config.n_updates:
                _save(mngr, state, normaliser)
                atomic_write_text(metrics_path, json.dumps(history, indent=1))
    if mngr.latest_step() != int(state.step):
        _save(mngr, state, normaliser)
    mngr.close()
    atomic_write_text(metrics_path, json.dumps(history, indent=1))
    return out_dir


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("L_diff {task.fields[ld]:.4f}  L_Q {task.fields[lq]:+.4f}"),
        TimeRemainingColumn(),
    )


# ---------------------------------------------------------------------------------------------
# Loading a trained model


@dataclass(frozen=True)
class DiffusionModel:
    """A trained model, ready to sample: EMA weights, normaliser and the run record."""

    config: DiffusionConfig
    spec: EnvSpec
    normaliser: Normaliser
    params: Any
    denoise: Any
    length: int
    record: dict[str, Any]
    model_dir: Path
    step: int


def load_model(model_dir: str | Path, mesh: Mesh | None = None) -> DiffusionModel:
    """Loads the latest checkpoint of a ``train_diffusion`` output directory."""
    model_dir = Path(model_dir)
    cfg_file = model_dir / CONFIG_FILE
    if not cfg_file.exists():
        raise FileNotFoundError(f"{cfg_file} not found: not a diffusion model directory")
    record = json.loads(cfg_file.read_text())
    config = DiffusionConfig.from_dict(record["diffusion"])
    spec = EnvSpec.from_dict(record["spec"])
    layout = EpisodeLayout(spec, config.obs_from_state, config.motion_channels)
    mesh = mesh or local_mesh()
    trainer = make_train(dataclasses.replace(config, q_weight=0.0), layout, None, mesh)
    restored = _restore(model_dir, trainer, layout.n_channels, mesh)
    if restored is None:
        raise FileNotFoundError(f"{model_dir / CHECKPOINT_DIR}: no checkpoint to load")
    state, normaliser = restored
    return DiffusionModel(
        config=config,
        spec=spec,
        normaliser=normaliser,
        params=state.ema_params,
        denoise=trainer.denoise,
        length=trainer.length,
        record=record,
        model_dir=model_dir,
        step=int(state.step),
    )
