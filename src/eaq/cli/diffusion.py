"""``eaq train-diffusion`` and ``eaq augment``: the EAQ episode diffusion model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eaq.diffusion.config import ObservationSource, QTarget, SelectBy


@dataclass(frozen=True)
class TrainDiffusion:
    """Train the episode diffusion model (optionally guided by a frozen QMIX Q_tot); resumable."""

    data: Path
    """Real dataset directory to learn from."""
    out: Path
    """Model directory (checkpoints, config.json, metrics.json); re-run with it to resume."""
    qtot: Path | None = None
    """A `train-offline --learner qmix-cql` run directory: the frozen Q_tot of the Q loss."""
    q_weight: float | None = None
    """eta in L = L_diff + eta * L_Q (default 0.1 with --qtot, else 0 = EAQ^-Q)."""
    q_target: QTarget | None = None
    """What the Q loss may move: only the predicted actions, or the whole episode (default: the preset's)."""
    observations: ObservationSource | None = None
    """Generate the observations and legal bits (generated), or only the state, actions and
    rewards, with SMAX computing observations and legal actions from the state (from_state),
    and also each unit's displacement per step, from which positions are rebuilt
    (from_state_motion)."""
    preset: Literal["default", "small", "tiny"] = "default"
    """Model/training size preset (small: minutes on a CPU; tiny: seconds, for smoke tests)."""
    updates: int | None = None
    """Override the number of gradient updates."""
    batch_size: int | None = None
    """Override the episodes per update."""
    sample_steps: int | None = None
    """Override the DDIM steps used later by `augment`."""
    seed: int | None = None
    """Override the seed."""
    min_snr_gamma: float | None = None
    """Weigh the denoising loss of each noise level by min(SNR, gamma) (Min-SNR); 0: uniform."""
    horizon: int | None = None
    """Steps the model generates: 0 the map's time limit (the preset's), -1 the longest episode
    in --data, n > 0 that many (rounded up to the U-Net's factor); longer episodes are cut."""

    def run(self) -> int:
        from eaq.data.store import load_dataset
        from eaq.diffusion.config import PRESETS, resolve_horizon
        from eaq.diffusion.train import train_diffusion

        q_weight = self.q_weight if self.q_weight is not None else (0.1 if self.qtot else 0.0)
        if q_weight > 0 and self.qtot is None:
            raise ValueError(f"--q-weight {q_weight} needs --qtot (a qmix-cql checkpoint); use 0 for EAQ^-Q")
        overrides = {
            "n_updates": self.updates,
            "batch_size": self.batch_size,
            "sample_steps": self.sample_steps,
            "seed": self.seed,
            "q_target": self.q_target,
            "observations": self.observations,
            "min_snr_gamma": self.min_snr_gamma,
        }
        config = dataclasses.replace(
            PRESETS[self.preset], q_weight=q_weight, **{k: v for k, v in overrides.items() if v is not None}
        )
        batch = load_dataset(self.data)
        if self.horizon is not None:
            config = dataclasses.replace(config, horizon=resolve_horizon(self.horizon, int(batch.lengths().max())))
        qtot = None
        if self.qtot is not None:
            from eaq.offline.qtot import load_qtot

            qtot = load_qtot(self.qtot)
            if qtot.spec != batch.spec:
                raise ValueError(
                    f"{self.qtot}: Q_tot was trained on map {qtot.spec.map_name}, data {self.data} is {batch.spec.map_name}"
                )
        out = train_diffusion(config, batch, qtot, self.out, qtot_path=self.qtot, data_path=self.data)
        print(f"model saved in {out} (q_weight={q_weight}, updates={config.n_updates})")
        return 0


@dataclass(frozen=True)
class Augment:
    """Sample synthetic episodes from a trained model into a dataset, with a fidelity report."""

    model: Path
    """Model directory written by `eaq train-diffusion`."""
    episodes: int
    """Number of valid synthetic episodes to write."""
    out: Path
    """Dataset directory to write (source 'synthetic'); the report goes next to it."""
    seed: int = 0
    """Sampling seed."""
    data: Path | None = None
    """Real dataset to compare with (default: the model's training data)."""
    max_draw_factor: float = 4.0
    """Give up after sampling this many times --episodes samples (broken ones are dropped)."""
    force: bool = False
    """Overwrite an existing dataset at --out."""
    relabel_rewards: bool = False
    """Recompute the non-final rewards from the synthetic states with a reward model fit on the
    real data (kept as generated if that model does not explain the real rewards)."""
    project_to_env: bool = False
    """Recompute the observations and legal actions from each synthetic state with SMAX's own
    functions (only the enemies' previous actions are kept from the model)."""
    inpaint_lengths: bool = False
    """Fix each sample's length and ending to a random real episode's (inpainting with
    reconstruction guidance; the real episodes are --data or the model's training data)."""
    inpaint_prefix: float = 0.0
    """Also fix a random real episode's first steps, up to this share of its length (0-1);
    synthetic episodes then branch from real ones."""
    inpaint_guidance: float = 30.0
    """Reconstruction-guidance weight of the inpainting (0: replacement only)."""
    actions_from_motion: bool = False
    """Store the action each unit's generated motion implies (moved: that move; stood: the
    model's likeliest legal stop or attack) instead of the model's own choice; implies
    --project-to-env."""
    snap_motion: bool = False
    """Snap each unit's generated displacements to moves SMAX can make (none, or one step in a
    movement direction; each step's remainder carried into the next, so paths stay within a step
    of the generated ones) before positions are rebuilt (models with motion channels; measured to
    hurt a learner on 3m, docs/diffusion.md)."""
    oversample: float = 1.0
    """Sample this many times --episodes valid episodes and keep the ones the model's Q_tot
    guide rates highest (1: keep every sample)."""
    select_by: SelectBy = "qtot"
    """What --oversample keeps the best of: the model's Q_tot guide's rating (qtot) or the share
    of physically possible unit moves (plausible; needs no Q_tot)."""
    match_wins: bool = False
    """With --oversample > 1: keep the real data's share of won episodes among the kept ones
    (each kind the best-rated by Q_tot)."""
    sample_steps: int | None = None
    """DDIM steps (default: the model's own, saved in its config.json)."""
    sampler_eta: float | None = None
    """Sampler stochasticity, 0 (deterministic DDIM) to 1 (fresh noise each step, as DDPM);
    default: the model's own."""

    def run(self) -> int:
        import json

        from eaq.data.card import dataset_card, render_card
        from eaq.data.store import atomic_write_text, load_dataset, save_dataset
        from eaq.diffusion.augment import augment
        from eaq.diffusion.inpaint import Inpainting

        if self.out.exists() and not self.force:
            raise FileExistsError(f"{self.out} already exists; pass --force to overwrite it")
        real = load_dataset(self.data) if self.data is not None else None
        synthetic, report = augment(self.model, self.episodes, self.seed, real=real, max_draw_factor=self.max_draw_factor,
                                    relabel=self.relabel_rewards, project=self.project_to_env,
                                    inpainting=Inpainting(self.inpaint_lengths, self.inpaint_prefix, self.inpaint_guidance),
                                    actions_from_motion=self.actions_from_motion,
                                    sample_steps=self.sample_steps, sampler_eta=self.sampler_eta,
                                    oversample=self.oversample, match_wins=self.match_wins,
                                    select_by=self.select_by, snap_motion=self.snap_motion)
        save_dataset(synthetic, self.out, force=self.force)
        card = dataset_card(synthetic)
        # not Path.with_suffix: an --out such as "synth-v1.2" would lose its ".2"
        stem = f"{self.out.name}_fidelity"
        report.save_json(self.out.parent / f"{stem}.json")
        report.plot(self.out.parent / f"{stem}.png", map_name=synthetic.spec.map_name)
        atomic_write_text(self.out.parent / f"{self.out.name}_card.json", json.dumps(card, indent=2, default=str))
        render_card(card, title=f"synthetic -> {self.out}")
        report.render()
        if synthetic.n_episodes < self.episodes:
            print(
                f"warning: only {synthetic.n_episodes} of {self.episodes} requested episodes were valid "
                f"after {report.n_generated} samples"
            )
        print(f"wrote {self.out}; fidelity report {self.out.parent / stem}.json and .png")
        return 0
