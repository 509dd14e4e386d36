"""Sampling synthetic episodes from a trained model: DDIM -> decode -> validity filter -> dataset.

``augment(model_dir, n_episodes, seed)`` samples in chunks (split over the local devices) until
it holds ``n_episodes`` valid episodes or has drawn ``max_draw_factor * n_episodes`` samples,
and returns the synthetic ``EpisodeBatch`` (source ``synthetic``, validated) with its
``FidelityReport``. Broken samples are dropped and counted, never kept.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eaq.data.batch import DatasetMeta, EpisodeBatch
from eaq.data.validate import validate_batch
from eaq.diffusion.codec import EpisodeLayout, encode
from eaq.diffusion.config import SELECT_BY, SelectBy, n_candidates
from eaq.diffusion.decode import decode, to_batch
from eaq.diffusion.diffusion import cosine_alpha_bars, ddim_sample
from eaq.diffusion.fidelity import FidelityReport, fidelity_report
from eaq.diffusion.inpaint import Inpainting, inpaint_targets
from eaq.diffusion.relabel import relabel_rewards
from eaq.diffusion.select import select_best
from eaq.diffusion.train import DiffusionModel, load_model, local_mesh
from eaq.env.project import projector as env_projector


class NoValidSamplesError(ValueError):
    """The model produced no valid episode within the draw budget (a result, not a crash)."""


def with_sampler(model: DiffusionModel, sample_steps: int | None = None, eta: float | None = None) -> DiffusionModel:
    """``model`` sampling with other DDIM steps and/or stochasticity (None keeps its own)."""
    changes = {k: v for k, v in (("sample_steps", sample_steps), ("sampler_eta", eta)) if v is not None}
    if not changes:
        return model
    return dataclasses.replace(model, config=dataclasses.replace(model.config, **changes).validate())


def make_sampler(model: DiffusionModel, mesh: Mesh | None = None, chunk: int | None = None, guidance: float = 0.0):
    """Returns ``sample(key, known=None, known_mask=None, guide_mask=None) -> x: [chunk, L, C]``
    (normalised, jitted, batch split over devices; ``known``/``known_mask``/``guide_mask:
    [chunk, L, C]`` inpaint, see eaq.diffusion.inpaint; ``guidance``: the reconstruction-guidance
    weight) and the chunk size (rounded up to a multiple of the device count)."""
    mesh = mesh or local_mesh()
    cfg = model.config
    chunk = mesh.size * math.ceil((chunk or cfg.sample_chunk) / mesh.size)
    shape = (chunk, model.length, len(model.normaliser.mean))
    sample = _jitted_sampler(
        model.denoise, cfg.n_diffusion_steps, cfg.sample_steps, cfg.clip_denoised, shape, mesh, guidance,
        cfg.sampler_eta,
    )
    params = jax.device_put(model.params, NamedSharding(mesh, PartitionSpec()))
    by_batch = NamedSharding(mesh, PartitionSpec("data"))

    def run(key, known=None, known_mask=None, guide_mask=None):
        # None stays None (a separate compilation); ddim_sample defaults guide_mask to known_mask
        inpaint = (None if a is None else jax.device_put(a, by_batch) for a in (known, known_mask, guide_mask))
        return sample(params, key, *inpaint)

    return run, chunk


@functools.lru_cache(maxsize=8)
def _jitted_sampler(
    denoise, n_diffusion_steps: int, sample_steps: int, clip: float, shape, mesh: Mesh, guidance: float,
    eta: float,
):
    """One compiled sampler per (model, shape, mesh); the weights are an argument."""
    by_batch = NamedSharding(mesh, PartitionSpec("data"))
    alpha_bars = jnp.asarray(cosine_alpha_bars(n_diffusion_steps))

    @jax.jit
    def sample(params, key, known, known_mask, guide_mask):
        return ddim_sample(
            denoise, params, key, shape, alpha_bars, sample_steps, clip, by_batch, known, known_mask, guidance,
            guide_mask, eta,
        )

    return sample


def sample_episodes(
    model: DiffusionModel,
    n_episodes: int,
    seed: int = 0,
    max_draw_factor: float = 4.0,
    mesh: Mesh | None = None,
    chunk: int | None = None,
    project: bool = False,
    inpainting: Inpainting | None = None,
    real: EpisodeBatch | None = None,
    actions_from_motion: bool = False,
    snap_motion: bool = False,
) -> tuple[EpisodeBatch, dict]:
    """Valid synthetic episodes (at most ``n_episodes``) and the sampling statistics
    ``{n_generated, dropped: {reason: count}, legality_rate, copied_step_share,
    motion_relabelled_share}``; ``project``:
    recompute the observations and legal actions from each sampled state (eaq.env.project);
    ``actions_from_motion``: make each action agree with the state's motion (implies ``project``;
    eaq.diffusion.decode), ``motion_relabelled_share`` is the share of kept agent-steps it changed;
    ``snap_motion``: snap the generated displacements to moves SMAX can make before the
    positions are rebuilt (a model with motion channels only; eaq.diffusion.decode);
    ``inpainting``: fix parts of each sample to a random episode of ``real`` (eaq.diffusion.inpaint);
    ``copied_step_share`` is the share of the kept episodes' steps copied whole from real prefixes."""
    if n_episodes < 1:
        raise ValueError(f"episodes={n_episodes} must be >= 1")
    inpainting = inpainting or Inpainting()
    if inpainting.active:
        if real is None:
            raise ValueError("inpainting needs the real episodes to copy from (real=...)")
        if real.spec != model.spec:
            raise ValueError(
                f"inpainting: the real data is map {real.spec.map_name}, the model {model.model_dir} "
                f"was trained on {model.spec.map_name}"
            )
        real_x = encode(real, model.normaliser, model.length, model.config.obs_from_state, model.config.motion_channels)
        real_lengths = np.minimum(real.lengths(), model.config.steps(model.spec.max_steps)[1])  # cut at the horizon
        layout = EpisodeLayout(model.spec, model.config.obs_from_state, model.config.motion_channels)
        rng = np.random.default_rng(seed)
    if snap_motion and not model.config.motion_channels:
        raise ValueError(
            f"{model.model_dir}: snap_motion snaps generated unit motion, but this model generates no motion "
            "channels (train it with observations='from_state_motion')"
        )
    sample, chunk = make_sampler(model, mesh, chunk, inpainting.guidance if inpainting.active else 0.0)
    project = project or model.config.obs_from_state or actions_from_motion  # these need the state's view
    projector = env_projector(model.spec.map_name) if project else None
    meta = DatasetMeta(
        spec=model.spec,
        quality=model.record.get("train_data", {}).get("meta", {}).get("quality", "unknown"),
        source="synthetic",
        generator={
            "kind": "eaq-diffusion",
            "model": str(model.model_dir),
            "model_step": model.step,
            "q_weight": model.config.q_weight,
            "sample_steps": model.config.sample_steps,
            "sampler_eta": model.config.sampler_eta,
            "qtot": model.record.get("qtot"),
            "projected_to_env": project,
            "actions_from_motion": actions_from_motion,
            "snap_motion": snap_motion,
            "inpainting": inpainting.to_dict(),
        },
        seed=seed,
    )
    key = jax.random.PRNGKey(seed)
    kept: list[EpisodeBatch] = []
    n_kept = n_generated = 0
    dropped: dict[str, int] = {}
    legal_hits = legal_total = copied = kept_steps = relabelled = 0
    max_draws = max(chunk, int(max_draw_factor * n_episodes))
    while n_kept < n_episodes and n_generated < max_draws:
        key, k = jax.random.split(key)
        if inpainting.active:
            known, known_mask, guide_mask, info = inpaint_targets(real_x, real_lengths, layout, inpainting, chunk, rng)
            x = sample(k, known, known_mask, guide_mask)
        else:
            x, info = sample(k), {"prefix_steps": np.zeros(chunk, np.int64)}
        decoded = decode(
            np.asarray(x), model.normaliser, model.spec, projector, model.config.obs_from_state, actions_from_motion,
            model.config.motion_channels, snap_motion,
        )
        n_generated += chunk
        valid = decoded.broken == ""
        lengths = decoded.arrays["mask"][valid].sum(axis=1)
        copied += int(np.minimum(info["prefix_steps"][valid], lengths)[: n_episodes - n_kept].sum())
        kept_steps += int(lengths[: n_episodes - n_kept].sum())
        m = decoded.arrays["mask"][valid][..., None]
        legal_hits += int((decoded.raw_legal[valid] & m).sum())
        legal_total += int(np.broadcast_to(m, decoded.raw_legal[valid].shape).sum())
        relabelled += int((decoded.from_motion[valid] & m).sum())
        batch, why = to_batch(decoded, meta)
        for reason, count in why.items():
            dropped[reason] = dropped.get(reason, 0) + count
        if batch.n_episodes:
            kept.append(batch)
            n_kept += batch.n_episodes
    if not kept:
        raise NoValidSamplesError(
            f"{model.model_dir}: none of {n_generated} samples was a valid episode ({dropped}); "
            "train the model longer"
        )
    batch = EpisodeBatch.concatenate(kept, meta).select(slice(0, n_episodes))
    generator = dict(meta.generator, n_generated=n_generated, dropped=dropped)
    if inpainting.active:
        generator["copied_step_share"] = copied / max(kept_steps, 1)
    batch = batch.with_meta(generator=generator)
    validate_batch(batch, where=f"synthetic episodes from {model.model_dir}")
    stats = {
        "n_generated": n_generated,
        "dropped": dropped,
        "legality_rate": legal_hits / max(legal_total, 1),
        "copied_step_share": copied / max(kept_steps, 1),
        "motion_relabelled_share": relabelled / max(legal_total, 1),
    }
    return batch, stats


def augment(
    model_dir: str | Path,
    n_episodes: int,
    seed: int = 0,
    *,
    real: EpisodeBatch | None = None,
    qtot=None,
    max_draw_factor: float = 4.0,
    relabel: bool = False,
    project: bool = False,
    inpainting: Inpainting | None = None,
    actions_from_motion: bool = False,
    sample_steps: int | None = None,
    sampler_eta: float | None = None,
    oversample: float = 1.0,
    match_wins: bool = False,
    select_by: SelectBy = "qtot",
    snap_motion: bool = False,
) -> tuple[EpisodeBatch, FidelityReport]:
    """Samples ``n_episodes`` valid synthetic episodes and their fidelity report.

    ``real``: the data to compare with (default: the training data recorded in the model
    directory, if it is still there); ``qtot``: a QtotFunction for the Q_tot comparison (default:
    the one the model was trained with, if recorded and loadable); ``relabel``: recompute the
    non-final rewards from the synthetic states (eaq.diffusion.relabel), recorded in the
    report's ``extra["relabel_rewards"]``; ``project``: recompute each synthetic step's
    observations, legal actions and clean state from its state with SMAX's own functions
    (eaq.env.project), recorded in ``extra["projected_to_env"]``; ``inpainting``: fix each
    sample's length and/or prefix to a random episode of ``real`` (eaq.diffusion.inpaint),
    recorded in ``extra["inpainting"]``; ``actions_from_motion``: store, wherever a unit's motion
    shows it, the action its generated positions imply instead of the model's own choice
    (eaq.diffusion.decode; implies ``project``), recorded in ``extra["actions_from_motion"]``;
    ``sample_steps``/``sampler_eta``: override the model's sampler (DiffusionConfig), recorded
    in the synthetic dataset's generator; ``oversample``: sample ``ceil(oversample *
    n_episodes)`` valid episodes and keep the ``n_episodes`` rated highest by ``select_by``:
    ``"qtot"`` (``qtot``'s mean over each episode's own actions; needs a Q_tot) or
    ``"plausible"`` (the share of physically possible unit moves; eaq.diffusion.select),
    recorded in the generator and ``extra["selection"]``; ``match_wins``: and among them keep
    ``real``'s share of won episodes (each kind the best-rated of its kind; needs
    ``oversample`` > 1); ``snap_motion``: snap the generated unit motion to SMAX's moves
    (sample_episodes), recorded in the generator and ``extra["snap_motion"]``.
    """
    if not (np.isfinite(oversample) and oversample >= 1.0):
        raise ValueError(f"oversample={oversample} must be a number >= 1 (1: keep every sample)")
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by={select_by!r}: choose one of {SELECT_BY}")
    if match_wins and oversample <= 1.0:
        raise ValueError("match_wins chooses among extra samples: it needs oversample > 1")
    model = with_sampler(load_model(model_dir), sample_steps, sampler_eta)
    if real is None:
        data_path = model.record.get("data")
        if data_path is None or not Path(data_path).exists():
            raise ValueError(
                f"{model_dir}: the training data ({data_path}) is not available for the fidelity "
                "report; pass the real dataset (--data)"
            )
        from eaq.data.store import load_dataset

        real = load_dataset(data_path)
    if qtot is None and model.record.get("qtot"):
        qtot_path = Path(model.record["qtot"])
        if qtot_path.exists():
            from eaq.offline.qtot import load_qtot

            qtot = load_qtot(qtot_path)
    n_drawn = n_candidates(n_episodes, oversample)
    if n_drawn > n_episodes and select_by == "qtot" and qtot is None:
        raise ValueError(
            f"{model_dir}: oversample={oversample} keeps the episodes Q_tot rates highest, but no Q_tot is "
            "available (the model records none, or its checkpoint is gone); pass one"
        )
    synthetic, stats = sample_episodes(
        model, n_drawn, seed, max_draw_factor, project=project, inpainting=inpainting, real=real,
        actions_from_motion=actions_from_motion, snap_motion=snap_motion,
    )
    selection = None
    if n_drawn > n_episodes:
        win_share = float(real.wins().mean()) if match_wins else None
        synthetic, selection = select_best(synthetic, n_episodes, select_by, qtot, win_share)
        selection["oversample"] = oversample
        synthetic = synthetic.with_meta(generator={**synthetic.meta.generator, "selection": selection})
        validate_batch(synthetic, where=f"selected synthetic episodes from {model_dir}")
    relabelled = None
    if relabel:
        synthetic, relabelled = relabel_rewards(synthetic, real)
        validate_batch(synthetic)
    report = fidelity_report(
        real,
        synthetic,
        n_requested=n_episodes,
        n_generated=stats["n_generated"],
        dropped=stats["dropped"],
        legality_rate=stats["legality_rate"],
        qtot=qtot,
        seed=seed,
    )
    if relabelled is not None:
        report.extra["relabel_rewards"] = relabelled
    if selection is not None:
        report.extra["selection"] = selection
    report.extra["projected_to_env"] = bool(synthetic.meta.generator["projected_to_env"])
    if snap_motion:
        report.extra["snap_motion"] = True
    if actions_from_motion:
        report.extra["actions_from_motion"] = {"relabelled_share": stats["motion_relabelled_share"]}
    inpainting = inpainting or Inpainting()
    if inpainting.active:
        report.extra["inpainting"] = {**inpainting.to_dict(), "copied_step_share": stats["copied_step_share"]}
    return synthetic, report
