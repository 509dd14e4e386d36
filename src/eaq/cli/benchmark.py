"""``eaq benchmark``: the paper's table on SMAX, end to end and resumable."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from eaq.diffusion.config import ObservationSource, QTarget, SelectBy


def _split(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


@dataclass(frozen=True)
class Benchmark:
    """Run every (map, quality, variant, seed) cell end to end and write the results table."""

    maps: str = "3m,2s3z,5m_vs_6m,8m"
    """Comma-separated SMAX maps."""
    qualities: str = "poor,medium,good"
    """Comma-separated dataset qualities."""
    variants: str = "original,eaq-noq,eaq"
    """Comma-separated variants: original, eaq-noq (no Q_tot loss), eaq."""
    learner: Literal["qmix-cql", "maicq", "bc"] = "qmix-cql"
    """Offline learner that judges each variant."""
    seeds: int = 5
    """Seeds per cell."""
    preset: Literal["smoke", "fast", "full"] = "fast"
    """Stage sizes (smoke: minutes; fast: minutes per cell on 2 CPU cores; full: GPU)."""
    out: Path = Path("results")
    """Results root; the run is written to OUT/RUN."""
    run_name: Annotated[str | None, tyro.conf.arg(name="run")] = None
    """Run name (default: the preset name). Re-running the same run resumes it."""
    cache_dir: Path | None = None
    """Cache for behaviour runs and datasets (default: $EAQ_CACHE_DIR or ~/.cache/eaq)."""
    extend_from: str | None = None
    """Continue an earlier run's learners for longer: reuse run EXTEND_FROM's stages and resume
    each cell's learner from its checkpoint (only --offline-steps, raised, may differ)."""
    stages_from: str | None = None
    """Train fresh learners on an earlier run's stages: copy run STAGES_FROM's Q_tot guides,
    diffusion models and synthetic data into this new run (only the learner, --offline-steps,
    --synthetic-cql and --synthetic-weight may differ), e.g. to compare learners on one set of
    samples."""
    q_weight: float | None = None
    """Override eta, the Q_tot loss weight of the 'eaq' variant (every preset: 0.03)."""
    q_target: QTarget | None = None
    """Override what the Q_tot loss may move: the predicted actions only, or the whole episode."""
    synthetic_weight: float | None = None
    """Override the share of synthetic episodes in each training batch."""
    synthetic_oversample: float | None = None
    """Sample this many times the synthetic episodes and keep those the Q_tot guide rates
    highest, for the eaq variant only (default 1: every sample, as EAQ is published)."""
    synthetic_select_by: SelectBy | None = None
    """What --synthetic-oversample keeps the best of: the Q_tot guide's rating (qtot, default)
    or the share of physically possible unit moves (plausible)."""
    synthetic_match_wins: bool = False
    """With --synthetic-oversample > 1: keep the real data's share of won episodes among the
    kept ones (each kind the best-rated by Q_tot)."""
    synthetic_episodes: int | None = None
    """Override the number of synthetic episodes per cell."""
    offline_steps: int | None = None
    """Override the offline learner's updates per cell."""
    diffusion_steps: int | None = None
    """Override the diffusion model's training steps."""
    synthetic_cql: bool = True
    """QMIX+CQL cells: apply the conservative term to the synthetic episodes too (plain mixing,
    as EAQ is published); --no-synthetic-cql applies it to the real episodes only."""
    diffusion_horizon: int | None = None
    """Steps the diffusion models generate: 0 the time limit (default), -1 the longest episode
    of each real dataset, n > 0 that many; longer real episodes are cut there for the model."""
    qtot_steps: int | None = None
    """Override the updates of the QMIX whose Q_tot guides the 'eaq' variant."""
    cql_weight: float | None = None
    """Override the CQL weight of the judging learner and of the Q_tot guide (default 0.3; runs
    before 2026-11-27 used 3, pass 3 to resume or extend one of them)."""
    relabel_rewards: bool = False
    """Recompute synthetic rewards from the synthetic states (a reward model fit on real data)."""
    observations: ObservationSource | None = None
    """Override what the diffusion model generates: observations too, or only the state, actions
    and rewards (observations and legal actions then come from the state via SMAX), or that
    plus each unit's displacement per step, from which positions are rebuilt (from_state_motion,
    every preset's choice since 2026-11-27 16:20 UTC)."""
    project_to_env: bool = False
    """Recompute synthetic observations and legal actions from the synthetic states with SMAX's
    own functions (only the enemies' previous actions are kept from the model)."""
    inpaint_lengths: bool = False
    """Sample each synthetic episode with a random real episode's length and ending fixed
    (inpainting with reconstruction guidance)."""
    inpaint_prefix: float | None = None
    """Fix a random real episode's first steps, up to this share of its length (0-1). Every
    preset uses 0.01: exactly the first step on SMAX (episodes of at most 100 steps), so each
    synthetic episode starts from a real start; 0 turns it off (as in runs recorded before
    2026-11-27 16:20 UTC)."""
    inpaint_guidance: float | None = None
    """Reconstruction-guidance weight of the inpainting (default 30)."""
    stages_only: bool = False
    """Prepare the datasets, Q_tot guides, diffusion models and synthetic data, and stop before
    the learners (e.g. on a GPU); the same command without it then trains the learners."""
    actions_from_motion: bool = True
    """Store the action each synthetic unit's generated motion implies (moved: that move;
    stood: the model's likeliest legal stop or attack) instead of the model's own choice. On in
    every preset; --no-actions-from-motion keeps the model's actions (as in runs recorded before
    2026-11-27 16:20 UTC, whose presets had it off)."""

    snap_motion: bool = False
    """Snap each synthetic unit's generated displacements to moves SMAX can make (none, or one
    step in a movement direction; each step's remainder carried into the next, so paths stay
    within a step of the generated ones) before positions are rebuilt: synthetic units then move
    as SMAX's do (every preset generates motion channels). Off in every preset: on 3m it cost the
    learner 25 points on Good and Medium, because actions read off the snapped motion no longer
    line up with the generated rewards (docs/diffusion.md)."""

    def config(self):
        from eaq.pipeline import BenchmarkConfig

        overrides = {
            "q_weight": self.q_weight,
            "q_target": self.q_target,
            "synthetic_weight": self.synthetic_weight,
            "synthetic_episodes": self.synthetic_episodes,
            "synthetic_oversample": self.synthetic_oversample,
            "synthetic_match_wins": self.synthetic_match_wins or None,
            "synthetic_select_by": self.synthetic_select_by,
            "offline_steps": self.offline_steps,
            "diffusion_steps": self.diffusion_steps,
            "diffusion_horizon": self.diffusion_horizon,
            "qtot_steps": self.qtot_steps,
            "cql_weight": self.cql_weight,
            "relabel_rewards": self.relabel_rewards or None,  # only set, never unset, a preset's choice
            "project_to_env": self.project_to_env or None,
            "observations": self.observations,
            "inpaint_lengths": self.inpaint_lengths or None,
            "inpaint_prefix": self.inpaint_prefix,
            "inpaint_guidance": self.inpaint_guidance,
            "actions_from_motion": self.actions_from_motion,
            "synthetic_cql": None if self.synthetic_cql else False,  # recorded only when turned off
            "snap_motion": self.snap_motion or None,
        }
        return BenchmarkConfig(
            maps=_split(self.maps),
            qualities=_split(self.qualities),
            variants=_split(self.variants),
            learner=self.learner,
            seeds=self.seeds,
            preset=self.preset,
            overrides=tuple((k, v) for k, v in overrides.items() if v is not None),
            out=self.out,
            run=self.run_name,
            cache_dir=self.cache_dir,
            extend_from=self.extend_from,
            stages_from=self.stages_from,
            stages_only=self.stages_only,
        )

    def run(self) -> int:
        from eaq.pipeline import run_benchmark

        paths = run_benchmark(self.config(), command="eaq " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        print("\n".join(f"wrote {p}" for p in paths.values()))
        return 0
