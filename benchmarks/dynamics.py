"""Dynamics consistency of saved synthetic datasets against their real data.

A one-step MLP (state, joint action) -> state change is trained on 80 % of the real episodes
(eaq.diffusion.fidelity.dynamics_consistency); its error on the held-out real transitions and on
each synthetic dataset's transitions is printed, with their ratio (1 = as consistent as real
data) and the synthetic drift on the state features real data never changes. Use it to re-check
the synthetic data of a finished benchmark run, e.g.

    python benchmarks/dynamics.py --real ~/.cache/eaq/datasets/3m/seed0-.../medium-1000ep-eps0.05 \\
        --synthetic results/fast-v3/stages/3m-medium/synthetic-eaq-noq-s0 ... --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, required=True, help="the real dataset directory")
    p.add_argument("--synthetic", type=Path, nargs="+", required=True, help="synthetic dataset directories")
    p.add_argument("--seed", type=int, default=0, help="seed of the real train/held-out split and the MLP")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    from eaq.data import load_dataset
    from eaq.data.store import atomic_write_text
    from eaq.diffusion.fidelity import dynamics_consistency

    real = load_dataset(args.real)
    rows = []
    for path in args.synthetic:
        d = dynamics_consistency(real, load_dataset(path), seed=args.seed)
        if d is None:
            print(f"{path}: no transitions to compare", file=sys.stderr)
            continue
        rows.append({"synthetic": str(path), **d})
        print(f"{path}: held-out real MSE {d['real_heldout_mse']:.3f}, synthetic MSE {d['synthetic_mse']:.3f}, "
              f"ratio {d['ratio']:.2f} (over {d['changing_state_dims']} changing state dims); "
              f"synthetic mean |change| on the {d['constant_state_dims']} constant dims "
              f"{d['synthetic_change_on_constant_dims']:.4f}", flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps({"real": str(args.real), "seed": args.seed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
