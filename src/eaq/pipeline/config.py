"""Benchmark configuration: which cells to run and how big each stage is (presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from eaq.diffusion.config import SELECT_BY

PresetName = Literal["smoke", "fast", "full"]
LEGACY_CQL_WEIGHT = 3.0
"""The CQL weight of every run recorded before the preset had the field (before 2026-11-27)."""

# Preset fields added after runs had been recorded, with the value every run recorded before the
# field used: how an old config.json is read (resumed, extended or merged into a report).
LEGACY_PRESET_DEFAULTS: dict[str, Any] = {
    "q_target": "episode",  # before q_target: the whole episode
    "relabel_rewards": False,
    "project_to_env": False,
    "observations": "generated",
    "cql_weight": LEGACY_CQL_WEIGHT,
    "actions_from_motion": False,
    "synthetic_oversample": 1.0,  # every sample kept
    "synthetic_match_wins": False,
    "synthetic_select_by": "qtot",
    "diffusion_horizon": 0,  # the time limit
    "synthetic_cql": True,  # CQL on every episode
    "snap_motion": False,  # generated motion as is
    "inpaint_lengths": False,  # before inpainting: none
    "inpaint_prefix": 0.0,
    "inpaint_guidance": 30.0,
}

VARIANTS = ("original", "eaq-noq", "eaq")
QUALITIES = ("poor", "medium", "good")


@dataclass(frozen=True)
class Preset:
    """Sizes of every stage of one benchmark cell."""

    dataset_episodes: int
    """Episodes in each original (real) dataset."""
    qtot_steps: int
    """QMIX+CQL updates for the frozen Q_tot that guides EAQ."""
    diffusion_steps: int
    """Diffusion-model training steps."""
    diffusion_size: str
    """Diffusion model size preset (see eaq.diffusion)."""
    sampler_steps: int
    """Denoising steps of the fast sampler."""
    q_weight: float
    """eta, the weight of the Q_tot loss for the 'eaq' variant ('eaq-noq' uses 0)."""
    q_target: str
    """What the Q_tot loss may move: "actions" (only the predicted actions) or "episode" (also
    observations and state); see eaq.diffusion.qloss."""
    synthetic_episodes: int
    """Synthetic episodes sampled per augmented cell."""
    synthetic_weight: float
    """Share of each training batch drawn from synthetic data (the rest from the original)."""
    offline_steps: int
    """Updates of the offline learner in each cell."""
    eval_episodes: int
    """Greedy evaluation episodes per trained learner."""
    relabel_rewards: bool = False
    """Recompute the synthetic episodes' non-final rewards from their states with a reward model
    fit on the real data (eaq.diffusion.relabel), instead of keeping the model's own rewards."""
    project_to_env: bool = False
    """Recompute each synthetic step's observations and legal actions (and a clean state) from
    its generated state with SMAX's own functions (eaq.env.project), so they are consistent."""
    observations: str = "generated"
    """What the diffusion model generates: "generated" (observations and legal bits too),
    "from_state" (state, actions and rewards; observations and legal actions computed from the
    state by SMAX, which implies the projection) or "from_state_motion" (that plus each unit's
    displacement per step, from which positions are rebuilt); see eaq.diffusion.config."""
    inpaint_lengths: bool = False
    """Sample each synthetic episode with a random real episode's length and ending fixed
    (inpainting with reconstruction guidance; eaq.diffusion.inpaint)."""
    inpaint_prefix: float = 0.0
    """Also fix a random real episode's first steps (up to this share of its length), so that
    synthetic episodes branch from real ones; 0: off."""
    inpaint_guidance: float = 30.0
    """Reconstruction-guidance weight of the inpainting (used only when it is on)."""
    actions_from_motion: bool = False
    """Store, wherever a synthetic unit's generated positions show whether and where it moved,
    the action that motion implies instead of the model's own choice (eaq.diffusion.decode;
    implies the projection)."""
    snap_motion: bool = False
    """Snap each synthetic unit's generated displacements to moves SMAX can make (none, or one
    step in a movement direction), carrying each step's remainder into the next so its path
    stays within a step of the generated one, before positions are rebuilt (StateProjector.
    snap_motion; models with motion channels only): synthetic units then move as SMAX's do."""
    synthetic_oversample: float = 1.0
    """Sample this many times ``synthetic_episodes`` valid episodes and keep the ones the frozen
    Q_tot guide rates highest (eaq.diffusion.select), for the 'eaq' variant only ('eaq-noq', the
    ablation without Q_tot, keeps every sample); 1: keep every sample (EAQ as published)."""
    synthetic_select_by: str = "qtot"
    """The rating ``synthetic_oversample`` keeps the best of: "qtot" (the frozen Q_tot guide's
    mean over each episode's own actions) or "plausible" (the share of physically possible unit
    moves, SMAX's inverse dynamics; eaq.diffusion.select)."""
    synthetic_match_wins: bool = False
    """With ``synthetic_oversample`` > 1: keep the real dataset's share of won episodes among the
    kept ones (each kind the best-rated by Q_tot), instead of ranking all together."""
    synthetic_cql: bool = True
    """QMIX+CQL cells: apply the conservative term to the synthetic episodes too (plain data
    mixing, as EAQ is published); False: only to the real ones, so synthetic episodes add TD
    targets without pulling the learner toward the generator's actions."""
    diffusion_horizon: int = 0
    """Steps the diffusion models generate (eaq.diffusion.config DiffusionConfig.horizon): 0 the
    map's time limit, -1 the longest episode of the real dataset, n > 0 that many; longer real
    episodes are cut there for the model."""
    cql_weight: float = 0.3
    """CQL weight of every QMIX+CQL in the run: the learner that judges the variants and the
    Q_tot that guides EAQ. 0.3 is OG-MARL's 3 scaled to SMAX's 10x smaller rewards (it reached
    the 3m Medium data where 3 did not, docs/offline.md); runs recorded before 2026-11-27 used 3."""

    def inpainting(self):
        from eaq.diffusion.inpaint import Inpainting

        return Inpainting(lengths=self.inpaint_lengths, prefix=self.inpaint_prefix, guidance=self.inpaint_guidance)


# What every preset generates and how it samples: the settings of the best 3m runs so far
# (docs/benchmark.md, 2026-11-27): the model generates the state and each unit's motion (SMAX
# computes observations and legal actions from it), stored actions are read off that motion, and
# every synthetic episode starts from a random real episode's first step (SMAX episodes are at
# most 100 steps, so a prefix share of 0.01 copies exactly one step). Until 2026-11-27 16:20 UTC the
# presets generated observations directly, with eta 0.1 and no inpainting; pass those flags to
# resume such a run (docs/benchmark.md, "Preset history").
_BEST_SETTINGS: dict[str, Any] = dict(observations="from_state_motion", actions_from_motion=True, inpaint_prefix=0.01)

PRESETS: dict[str, Preset] = {
    # The demo: one map, quality and seed in minutes on a 2-core laptop. Too short to learn
    # well (the learner stays below the data); it shows the pipeline, not the science.
    "smoke": Preset(
        dataset_episodes=300, qtot_steps=600, diffusion_steps=1000, diffusion_size="small",
        sampler_steps=20, q_weight=0.03, q_target="actions", synthetic_episodes=300, synthetic_weight=0.5,
        offline_steps=600, eval_episodes=256, **_BEST_SETTINGS,
    ),
    # A reduced but real run on a CPU: minutes per cell (measured in docs/benchmark.md).
    "fast": Preset(
        dataset_episodes=1000, qtot_steps=1000, diffusion_steps=5000, diffusion_size="small",
        sampler_steps=20, q_weight=0.03, q_target="actions", synthetic_episodes=500, synthetic_weight=0.5,
        offline_steps=4000, eval_episodes=256, **_BEST_SETTINGS,
    ),
    # The intended benchmark (GPU recommended): OG-MARL-sized learner runs.
    "full": Preset(
        dataset_episodes=1000, qtot_steps=10000, diffusion_steps=20000, diffusion_size="default",
        sampler_steps=50, q_weight=0.03, q_target="actions", synthetic_episodes=2000, synthetic_weight=0.5,
        offline_steps=20000, eval_episodes=512, **_BEST_SETTINGS,
    ),
}


def resolve_preset(name: str, overrides: dict[str, Any] | None = None) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[name]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Preset)}
    if unknown:
        raise ValueError(f"unknown preset fields {sorted(unknown)}")
    p = dataclasses.replace(p, **overrides)
    if not p.synthetic_oversample >= 1.0:
        raise ValueError(f"synthetic_oversample={p.synthetic_oversample} must be >= 1 (1: keep every sample)")
    if p.synthetic_select_by not in SELECT_BY:
        raise ValueError(f"synthetic_select_by={p.synthetic_select_by!r}: choose one of {SELECT_BY}")
    if p.diffusion_horizon < -1:
        raise ValueError(f"diffusion_horizon={p.diffusion_horizon}: use 0 (the time limit), -1 (the longest real episode) or n > 0")
    if p.synthetic_match_wins and p.synthetic_oversample <= 1.0:
        raise ValueError("synthetic_match_wins chooses among extra samples: set synthetic_oversample > 1")
    if p.snap_motion and p.observations != "from_state_motion":
        raise ValueError(f"snap_motion snaps generated unit motion: it needs observations='from_state_motion', not {p.observations!r}")
    return p


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: a learner trained on one variant of one dataset, with one seed."""

    map: str
    quality: str
    variant: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.map}-{self.quality}-{self.variant}-s{self.seed}"
