"""How sharply synthetic units move, and how a policy cloned from the real data rates their actions.

SMAX moves a unit by exactly one step (its speed times the step time) or not at all; only
collisions push a standing unit by a little. For the real dataset (first argument) and each
synthetic one it prints, over ally steps whose motion is known (alive at t and t + 1):

- the histogram of displacement lengths in steps (real 3m data: ~0 or ~1, little between);
- the share of steps where the unit moves (more than half a step, eaq.env.project's inverse dynamics);
- with ``--bc RUN``: a behaviour-cloning run trained on the real data (``eaq train-offline
  --learner bc``) scores every dataset's actions: the share of agent-steps (with a choice) where
  its greedy action is the stored one, and the mean log-likelihood of the stored actions.

    python benchmarks/motion_blur.py REAL SYNTHETIC [SYNTHETIC ...] [--bc RUN_DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eaq.data.store import atomic_write_text, load_dataset
from eaq.diffusion.fidelity import motion_shares
from eaq.env.project import STOP_ACTION, projector

BINS = (0.0, 0.05, 0.25, 0.5, 0.75, 1.1, np.inf)
"""Displacement-length bins, in steps."""


def motion_stats(batch) -> dict:
    """The fidelity report's motion shares plus the histogram of displacement lengths in steps."""
    proj = projector(batch.spec.map_name)
    row = motion_shares(batch, proj)
    known = proj.motion(batch.state, batch.mask).known
    disp = proj.unit_motion(batch.state, batch.mask)[..., : batch.spec.n_agents, :]  # [E, T, N, 2]
    length = np.linalg.norm(disp, axis=-1) / proj.ally_step_length(batch.state)
    hist, _ = np.histogram(length[known], bins=BINS)
    row["length_histogram"] = (hist / max(hist.sum(), 1)).round(4).tolist()
    return row


def bc_stats(batch, run_dir: Path) -> dict:
    import jax

    from eaq.offline import bc
    from eaq.offline.networks import masked_log_softmax, unroll_agents
    from eaq.offline.train import load_checkpoint

    ckpt = load_checkpoint(run_dir)
    if ckpt.config.learner != "bc":
        raise SystemExit(f"{run_dir}: --bc needs a behaviour-cloning run (learner bc), got {ckpt.config.learner!r}")
    net = bc.networks(ckpt.spec, ckpt.config)
    logp = np.asarray(jax.jit(lambda p, o, l: masked_log_softmax(unroll_agents(net, p, o), l))(
        ckpt.params["policy"], batch.observations, batch.legals))  # [E, T, N, A]
    choice = batch.mask[..., None] & (batch.legals.sum(-1) > 1)  # agent-steps with more than one legal action
    taken = np.take_along_axis(logp, batch.actions[..., None], -1)[..., 0]
    return {
        "bc_agreement": float((logp.argmax(-1) == batch.actions)[choice].mean()),
        "bc_log_likelihood": float(taken[choice].mean()),
        "stop_share": float((batch.actions == STOP_ACTION)[choice].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real", type=Path)
    ap.add_argument("synthetic", type=Path, nargs="+")
    ap.add_argument("--bc", type=Path, help="a BC run trained on the real data (eaq train-offline --learner bc)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    out = {}
    labels = ["|d| in " + "/".join(f"{b:g}" for b in BINS[1:-1])]
    print(f"{'dataset':<60} {'moves':>6} {'possible':>8}  {labels[0]} (steps)" + ("   BC agree  BC loglik" if args.bc else ""))
    for path in [args.real, *args.synthetic]:
        batch = load_dataset(path)
        row = motion_stats(batch)
        if args.bc:
            row.update(bc_stats(batch, args.bc))
        out[str(path)] = row
        hist = " ".join(f"{h:.3f}" for h in row["length_histogram"])
        extra = f"   {row['bc_agreement']:.3f}     {row['bc_log_likelihood']:.3f}" if args.bc else ""
        print(f"{str(path)[-60:]:<60} {row['move_share']:6.3f} {row['plausible_share']:8.3f}  {hist}{extra}")
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
