"""How far a dataset's observations and legal actions are from what SMAX shows for its states.

For every in-episode step, eaq.env.project recomputes the observations, the legal actions and a
clean world state from the stored state (and the previous step's actions) with SMAX's own
functions, and this script prints how much the stored ones differ. Real data scores 0 on every
line; synthetic data shows how inconsistent the generated channels are with each other.
It also reads each unit's motion off its positions (StateProjector.motion): how often the stored
action agrees with it, and how often the move is physically possible (real data: ~100 % / ~98 %).

    python benchmarks/consistency.py DATASET [DATASET ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eaq.data.store import atomic_write_text, load_dataset
from eaq.env.project import STOP_ACTION, previous_actions, projector


def consistency(path: Path) -> dict:
    """The differences between ``path``'s stored and state-implied steps (in-episode only)."""
    batch = load_dataset(path)
    proj = projector(batch.spec.map_name)
    m = batch.mask
    state, legals, fighting = map(np.asarray, proj.view(batch.state))
    obs = np.asarray(proj.observe(batch.state, previous_actions(batch.actions), batch.observations))
    obs_diff = np.abs(obs - batch.observations)[m]  # [steps, N, O]
    chosen_legal = np.take_along_axis(legals, batch.actions[..., None], axis=-1)[..., 0][m]
    motion = proj.motion(batch.state, m)
    known, plausible, agree = motion.known, motion.plausible, motion.agrees_with(batch.actions)
    attacks = (batch.actions > STOP_ACTION) & known
    return {
        "dataset": str(path),
        "source": batch.meta.source,
        "episodes": batch.n_episodes,
        "steps": int(m.sum()),
        "obs_mean_abs_diff": float(obs_diff.mean()),
        "steps_with_obs_feature_off_by_0.1": float((obs_diff.max(axis=(-2, -1)) > 0.1).mean()),
        "state_mean_abs_diff": float(np.abs(state - batch.state)[m].mean()),
        "legal_bits_differing": float((legals != batch.legals)[m].mean()),
        "actions_illegal_in_state": float(1.0 - chosen_legal.mean()),
        "steps_with_a_team_wiped_out": float(1.0 - fighting[m].mean()),
        "motion_known_agent_steps": int(known.sum()),
        "actions_agreeing_with_motion": float(agree[known].mean()) if known.any() else float("nan"),
        "physically_possible_moves": float(plausible[known].mean()) if known.any() else float("nan"),
        "attack_share_of_known_agent_steps": float(attacks.sum() / max(known.sum(), 1)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", type=Path, nargs="+")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    rows = [consistency(d) for d in args.datasets]
    for r in rows:
        print(
            f"{r['dataset']} ({r['source']}, {r['episodes']} episodes, {r['steps']} steps): "
            f"obs |diff| {r['obs_mean_abs_diff']:.4f}, steps with an obs feature off by > 0.1 "
            f"{100 * r['steps_with_obs_feature_off_by_0.1']:.1f} %, state |diff| "
            f"{r['state_mean_abs_diff']:.4f}, legal bits differing "
            f"{100 * r['legal_bits_differing']:.2f} %, actions illegal in the state "
            f"{100 * r['actions_illegal_in_state']:.2f} %, steps after a team is wiped out "
            f"{100 * r['steps_with_a_team_wiped_out']:.2f} %; actions agreeing with the units' motion "
            f"{100 * r['actions_agreeing_with_motion']:.1f} %, physically possible moves "
            f"{100 * r['physically_possible_moves']:.1f} %, attacks {100 * r['attack_share_of_known_agent_steps']:.1f} % "
            f"(of {r['motion_known_agent_steps']} agent-steps whose motion is known)"
        )
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
