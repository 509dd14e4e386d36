"""Configuration of the episode diffusion model (training, sampling) and its presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

QTarget = Literal["actions", "episode"]
"""What the Q_tot loss may move (see eaq.diffusion.qloss)."""
Q_TARGETS: tuple[str, ...] = get_args(QTarget)
ObservationSource = Literal["generated", "from_state", "from_state_motion"]
"""Where synthetic observations come from (see DiffusionConfig.observations)."""
OBSERVATION_SOURCES: tuple[str, ...] = get_args(ObservationSource)
SelectBy = Literal["qtot", "plausible"]
"""What oversampled synthetic episodes are ranked by (eaq.diffusion.select)."""
SELECT_BY: tuple[str, ...] = get_args(SelectBy)
SELECT_BY_LABEL = {"qtot": "Q_tot", "plausible": "plausible-move share"}
"""How reports and progress lines name each rating."""


def n_candidates(n_episodes: int, oversample: float) -> int:
    """Valid samples drawn to keep ``n_episodes`` at ``oversample`` (float noise rounded away)."""
    return math.ceil(oversample * n_episodes - 1e-9)


FIT_HORIZON = -1
"""A horizon request meaning "the longest episode of the training data" (resolve_horizon)."""


def resolve_horizon(horizon: int, longest_episode: int) -> int:
    """A DiffusionConfig.horizon from a request: ``FIT_HORIZON`` (-1) is the longest episode of
    the training data, 0 the time limit, n > 0 itself."""
    if horizon == FIT_HORIZON:
        return int(longest_episode)
    if horizon < 0:
        raise ValueError(f"horizon={horizon}: use a step count, 0 (the time limit) or -1 (the longest real episode)")
    return int(horizon)


@dataclass(frozen=True)
class DiffusionConfig:
    """Everything that shapes an EAQ diffusion run; saved (resolved) as JSON beside checkpoints."""

    base_channels: int = 32
    """U-Net channels at the first level (a multiple of 8, the GroupNorm group count)."""
    channel_mults: tuple[int, ...] = (1, 2, 4)
    """Channel multiplier per U-Net level; the time axis is halved len - 1 times."""
    kernel_size: int = 5
    """Temporal convolution width."""
    n_diffusion_steps: int = 100
    """K, the number of noise levels of the DDPM (cosine schedule) used in training."""
    sample_steps: int = 20
    """DDIM steps used to sample (<= n_diffusion_steps); fewer is faster."""
    sampler_eta: float = 0.0
    """Sampler stochasticity in [0, 1]: 0 is deterministic DDIM, 1 adds the posterior's noise
    at every step like DDPM's ancestral sampler (eaq.diffusion.diffusion.ddim_sample)."""
    clip_denoised: float = 5.0
    """The predicted clean episode is clipped to [-c, c] (normalised units) while sampling."""
    batch_size: int = 32
    """Episodes per update (global, split over the local devices; rounded up to a multiple)."""
    learning_rate: float = 2e-4
    """Adam learning rate."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    n_updates: int = 3000
    """Total gradient updates."""
    updates_per_segment: int = 100
    """Updates per jitted lax.scan segment (progress, metrics and checkpoints between them)."""
    checkpoint_every: int = 5
    """Save a checkpoint every this many segments (and always at the end)."""
    ema_decay: float = 0.995
    """EMA decay of the sampling weights (warmed up as min(decay, (1 + n) / (10 + n)))."""
    q_weight: float = 0.0
    """eta in L = L_diffusion + eta * L_Q; 0 is EAQ^-Q (no Q_tot guidance)."""
    q_target: str = "actions"
    """What the Q_tot loss may move: "actions" (only the predicted actions; observations and
    state enter Q_tot without gradient) or "episode" (all of them, which let the model exploit
    Q_tot's extrapolation on 3m Medium: 1-step, 0-return episodes; docs/diffusion.md)."""
    observations: str = "generated"
    """"generated": the model generates every agent's observations and legal-action bits;
    "from_state": it generates the state, actions, the enemies' previous actions, rewards and
    the ending only, and SMAX computes the observations and legal actions from the state
    (eaq.env.project): 3m has 108 channels per step instead of 348; "from_state_motion": as
    from_state, plus each unit's displacement to the next step (2 channels per unit), from
    which the decoder rebuilds the positions (a unit's move is 0 or one fixed step, a crisp
    value the model can hit, where absolute positions came out 1-4 units off per step)."""
    q_positions_from_motion: bool = True
    """With "from_state_motion": the Q_tot loss sees the positions the decoder rebuilds from the
    displacement channels (what the synthetic data will hold), not the model's own position
    channels. Configs saved before the field (2026-11-27) used the latter and read False (those
    with q_weight 0 read True: without a Q loss the field has no effect)."""
    q_temperature: float = 0.25
    """Softmax temperature relaxing the action channels (normalised units) into probabilities."""
    sample_chunk: int = 256
    """Episodes sampled per jitted call (bounds memory)."""
    min_snr_gamma: float = 0.0
    """> 0: weigh the denoising loss of each noise level by min(SNR, gamma) (Min-SNR, Hang et
    al. 2023; eaq.diffusion.diffusion.min_snr_weights); 0: every level alike (before
    2026-11-27, and the default). The logged ``loss_diffusion`` is then the weighted loss."""
    horizon: int = 0
    """Steps the model generates, rounded up to the U-Net's down-sampling factor and at most
    the map's time limit; 0: the time limit (SMAX: 100). Training episodes are cut there (a cut
    episode ends in a truncation) and synthetic ones are at most the rounded length (23 -> 24
    with a U-Net of 3 levels). 3m episodes last
    16-22 steps on average, so at the time limit about 80 % of every generated tensor is padding
    the loss still fits (docs/diffusion.md, "Horizon")."""
    seed: int = 0
    """Seed of initialisation, minibatches and noise."""

    def steps(self, time_limit: int) -> tuple[int, int]:
        """(L, the padded length the U-Net sees; the generated steps, min(L, time_limit)) for a
        map whose episodes last at most ``time_limit`` steps."""
        from eaq.diffusion.unet import padded_length

        if self.horizon < 0:
            raise ValueError(f"horizon={self.horizon} is a request, not a length: resolve it first (resolve_horizon)")
        length = padded_length(min(self.horizon or time_limit, time_limit), len(self.channel_mults))
        return length, min(length, time_limit)

    @property
    def obs_from_state(self) -> bool:
        return self.observations in ("from_state", "from_state_motion")

    @property
    def motion_channels(self) -> bool:
        return self.observations == "from_state_motion"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown diffusion config keys {sorted(unknown)}")
        d = dict(d)
        d.setdefault("q_target", "episode")  # configs saved before the field existed used "episode"
        # before the field the Q_tot loss read the model's position channels; that matters only
        # to motion models with a Q loss (an EAQ^-Q model reads the default, so it still resumes)
        d.setdefault(
            "q_positions_from_motion", d.get("observations") != "from_state_motion" or d.get("q_weight", 0.0) <= 0
        )
        if "channel_mults" in d:
            d["channel_mults"] = tuple(d["channel_mults"])
        return cls(**d)

    def validate(self) -> DiffusionConfig:
        if self.base_channels % 8:
            raise ValueError(f"base_channels={self.base_channels} must be a multiple of 8 (GroupNorm groups)")
        if not 1 <= self.sample_steps <= self.n_diffusion_steps:
            raise ValueError(
                f"sample_steps={self.sample_steps} must be in [1, n_diffusion_steps={self.n_diffusion_steps}]"
            )
        if not 0.0 <= self.sampler_eta <= 1.0:
            raise ValueError(f"sampler_eta={self.sampler_eta} must be in [0, 1]")
        if self.q_target not in Q_TARGETS:
            raise ValueError(f"q_target={self.q_target!r} must be one of {Q_TARGETS}")
        if self.observations not in OBSERVATION_SOURCES:
            raise ValueError(f"observations={self.observations!r} must be one of {OBSERVATION_SOURCES}")
        if self.q_weight < 0:
            raise ValueError(f"q_weight={self.q_weight} must be >= 0")
        if not self.min_snr_gamma >= 0:
            raise ValueError(f"min_snr_gamma={self.min_snr_gamma} must be >= 0 (0: uniform loss weights)")
        if self.horizon < 0:
            raise ValueError(f"horizon={self.horizon} must be >= 0 (0: the map's time limit)")
        for name in ("batch_size", "n_updates", "updates_per_segment", "checkpoint_every", "sample_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        return self


PRESETS: dict[str, DiffusionConfig] = {
    # Sized for the 20-minute default EAQ stage on 3m on two CPU cores (docs/diffusion.md).
    "default": DiffusionConfig(),
    # Minutes on a CPU: the demo / smoke benchmark (eaq.pipeline "smoke" preset).
    # 64 channels at full time resolution. A 3m step has 348 channels; with 16 (this preset
    # before 2026-11-26) every generated step was a linear image of 16 features, and the top
    # 16 principal components hold only 72 % of the data's per-step variance (64: 95 %).
    # 1500 updates on 3m Medium (docs/diffusion.md): return 15.0 -> 48.6 % (data 51.0),
    # legal raw argmax 74 -> 89 %, diffusion loss 0.142 -> 0.076, at ~9 instead of ~17 updates/s.
    "small": DiffusionConfig(
        base_channels=64,
        channel_mults=(1, 1, 2),
        batch_size=16,
        n_updates=1500,
        sample_steps=20,
    ),
    # Seconds on a CPU: tests and smoke runs.
    "tiny": DiffusionConfig(
        base_channels=8,
        channel_mults=(1, 2),
        n_diffusion_steps=10,
        sample_steps=4,
        batch_size=4,
        n_updates=20,
        updates_per_segment=10,
        checkpoint_every=1,
        sample_chunk=32,
    ),
}
