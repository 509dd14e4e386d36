"""How much of the real data's state space synthetic episodes cover, and how Q_tot rates them.

For the real dataset (the first argument) and each synthetic one it prints:

- spread: mean per-feature standard deviation of the global state over in-episode steps,
  relative to the real data's (1.0 = as spread out as the real data);
- precision / recall of states (Kynkaenniemi et al., 2019): each state gets a ball reaching its
  k-th nearest neighbour within its own set; precision is the share of synthetic states inside
  some real ball (realism), recall the share of real states inside some synthetic ball
  (coverage), both against a random half of the real episodes; the other half of the real
  episodes gives the values real data scores;
- with ``--by-step``: precision / recall per range of time steps (a model can cover the middle
  of episodes and miss every starting state);
- episode diversity: mean distance between two episodes' first ``--prefix`` states;
- action mix: share of stop, move and attack actions and the entropy of the action histogram;
- with ``--qtot RUN``: the frozen Q_tot (one-hot actions) at t = 0 against the episode's
  discounted return from t = 0, i.e. how much Q_tot over-rates that data.

States are standardised by the real data's mean and std; states are sub-sampled to
``--points`` per set (same seed for every set).

    python benchmarks/coverage.py REAL SYNTHETIC [SYNTHETIC ...] [--qtot RUN_DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eaq.data.store import atomic_write_text, load_dataset
from eaq.env.project import STOP_ACTION

STEP_RANGES = ((0, 1), (1, 5), (5, 10), (10, 15), (15, 25), (25, 100))
"""Time-step ranges [lo, hi) of ``--by-step``."""


def _states(state, mask, mean, std, points: int, steps: tuple[int, int] | None = None) -> np.ndarray:
    """In-episode states (of time steps [lo, hi) if given), standardised, a fixed-seed
    sub-sample of ``points``. state: [E, T, S], mask: [E, T] -> [P, S]."""
    if steps is not None:
        mask = mask & (np.arange(mask.shape[1]) >= steps[0]) & (np.arange(mask.shape[1]) < steps[1])
    s = (state[mask] - mean) / std
    if len(s) > points:
        s = s[np.random.default_rng(0).choice(len(s), points, replace=False)]
    return s.astype(np.float32)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)]."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set: [P]."""
    d = _pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def _inside_any_ball(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    return float((_pairwise(points, centres) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, synth: np.ndarray, k: int) -> tuple[float, float]:
    """(precision, recall) of ``synth`` against ``real`` with k-NN balls."""
    return (
        _inside_any_ball(synth, real, _radii(real, k)),
        _inside_any_ball(real, synth, _radii(synth, k)),
    )


def by_step(ref, state, mask, mean, std, points: int, k: int) -> list[dict]:
    """Precision / recall of the states ``state``/``mask`` against ``ref`` (a (state, mask) pair
    of real episodes), per STEP_RANGES range, ``points`` states per set and range."""
    rows = []
    for steps in STEP_RANGES:
        ref_pts = _states(*ref, mean, std, points, steps)
        pts = _states(state, mask, mean, std, points, steps)
        row = {"steps": list(steps), "states": int(len(pts))}
        if len(pts) > k and len(ref_pts) > k:
            row["precision"], row["recall"] = precision_recall(ref_pts, pts, k)
        rows.append(row)
    return rows


def episode_diversity(batch, mean, std, prefix: int) -> float:
    """Mean distance between two episodes' first ``prefix`` standardised states (padding: 0)."""
    s = (batch.state[:, :prefix] - mean) / std * batch.mask[:, :prefix, None]
    flat = s.reshape(len(s), -1).astype(np.float32)[:1000]
    d = _pairwise(flat, flat)
    n = len(flat)
    return float(d.sum() / (n * (n - 1)))


def action_mix(batch) -> dict:
    """Shares of stop / move / attack among alive agents' in-episode actions, and the entropy."""
    a = batch.actions[batch.mask]  # [P, N]
    alive = batch.legals[batch.mask].sum(-1) > 1  # a dead agent's only legal action is no-op
    a = a[alive]
    counts = np.bincount(a.ravel(), minlength=batch.spec.n_actions).astype(float)
    p = counts / counts.sum()
    n_moves = 4
    return {
        "stop": float(p[STOP_ACTION]),
        "move": float(p[:n_moves].sum()),
        "attack": float(p[n_moves + 1 :].sum()),
        "entropy_nats": float(-(p[p > 0] * np.log(p[p > 0])).sum()),
    }


def qtot_gap(batch, run_dir: Path, gamma: float) -> dict:
    """Mean Q_tot at t = 0 (one-hot actions), the mean discounted return from t = 0, their gap."""
    import jax
    import jax.numpy as jnp

    from eaq.offline.qtot import load_qtot

    q = load_qtot(run_dir)
    onehot = jax.nn.one_hot(batch.actions, batch.spec.n_actions)
    values = []
    for i in range(0, batch.n_episodes, 256):
        sl = slice(i, i + 256)
        values.append(np.asarray(q(jnp.asarray(batch.observations[sl]), onehot[sl], jnp.asarray(batch.state[sl]))[:, 0]))
    q0 = np.concatenate(values)
    discounts = gamma ** np.arange(batch.rewards.shape[1])
    g0 = (batch.rewards * batch.mask * discounts).sum(1)
    return {"q_tot_t0": float(q0.mean()), "return_t0": float(g0.mean()), "over_rating": float((q0 - g0).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("real", type=Path)
    p.add_argument("synthetic", type=Path, nargs="+")
    p.add_argument("--qtot", type=Path, help="a qmix-cql train-offline run (e.g. a benchmark's stages/<map>-<q>/qtot)")
    p.add_argument("--points", type=int, default=3000)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--prefix", type=int, default=10, help="steps per episode for the diversity measure")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--by-step", action="store_true", help="also precision / recall per range of time steps")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    real = load_dataset(args.real)
    inside = real.state[real.mask]
    mean, std = inside.mean(0), inside.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    # the reference is half of the real episodes; the other half shows what real data scores
    # (split by episode: neighbouring steps of one episode would flatter a split by state)
    order = np.random.default_rng(0).permutation(real.n_episodes)
    ref_eps, held_out = order[: len(order) // 2], order[len(order) // 2 :]
    ref = (real.state[ref_eps], real.mask[ref_eps])
    ref_pts = _states(*ref, mean, std, args.points)
    real_spread = float(((inside - mean) / std).std(0).mean())

    rows = []

    def describe(name: str, batch, episodes=None) -> None:
        state, mask = (batch.state, batch.mask) if episodes is None else (batch.state[episodes], batch.mask[episodes])
        prec, rec = precision_recall(ref_pts, _states(state, mask, mean, std, args.points), args.k)
        row = {
            "name": name,
            "episodes": int(batch.n_episodes),
            "mean_length": float(batch.mask.sum(1).mean()),
            "normalized_return": float(batch.normalized_returns().mean()),
            "spread": float(((batch.state[batch.mask] - mean) / std).std(0).mean()) / real_spread,
            "precision": prec,
            "recall": rec,
            "episode_diversity": episode_diversity(batch, mean, std, args.prefix),
            **action_mix(batch),
        }
        if args.qtot is not None:
            row.update(qtot_gap(batch, args.qtot, args.gamma))
        if args.by_step:
            row["by_step"] = by_step(ref, state, mask, mean, std, args.points, args.k)
        rows.append(row)
        print(
            f"{name:60s} ret {row['normalized_return']:5.1f}  len {row['mean_length']:5.1f}  spread {row['spread']:.2f}  "
            f"prec {prec:.2f} rec {rec:.2f}  div {row['episode_diversity']:6.2f}  "
            f"stop/move/att {row['stop']:.2f}/{row['move']:.2f}/{row['attack']:.2f} H {row['entropy_nats']:.2f}"
            + (f"  Q0 {row['q_tot_t0']:.3f} G0 {row['return_t0']:.3f} over {row['over_rating']:+.3f}" if args.qtot else ""),
            flush=True,
        )
        for r in row.get("by_step", []):
            print(f"    t {r['steps'][0]:2d}-{r['steps'][1] - 1:2d}: {r['states']:5d} states  "
                  + (f"prec {r['precision']:.2f} rec {r['recall']:.2f}" if r["states"] > args.k else "too few"))

    describe(f"{args.real} (held-out half)", real, held_out)
    for path in args.synthetic:
        describe(str(path), load_dataset(path))
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
