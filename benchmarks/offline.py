"""Benchmark the offline learners on SMAX 3m Poor / Medium / Good datasets.

For each learner x quality x seed: train with ``eaq.offline.train_offline`` (resumable run
directories under --out), evaluate greedily over --eval-episodes episodes, and report the
normalized return and win rate (mean over seeds with a 95 % t-interval across seeds) next to
the dataset's own mean, plus wall time per 10k updates (update segments after the first,
i.e. without compilation) on this machine.

Datasets: the collected 1000-episode datasets in the eaq cache
(``<cache>/datasets/<map>/*/<quality>-<episodes>ep-eps*``, written by ``eaq collect``), or
explicit ``--dataset quality=PATH``; ``--collect`` collects missing ones via eaq.behaviour.

    .venv/bin/python benchmarks/offline.py --steps 2000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def find_dataset(cache: Path, map_name: str, quality: str, episodes: int) -> Path | None:
    hits = sorted((cache / "datasets" / map_name).glob(f"*/{quality}-{episodes}ep-eps*"))
    hits = [h for h in hits if (h / "meta.json").is_file() and "-band" not in h.name]
    return hits[0] if hits else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", default="3m")
    p.add_argument("--learners", nargs="+", default=["qmix-cql", "maicq", "bc"])
    p.add_argument("--qualities", nargs="+", default=["poor", "medium", "good"])
    p.add_argument("--episodes", type=int, default=1000, help="dataset size to look for")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000, help="updates per run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-episodes", type=int, default=256)
    p.add_argument("--dataset", action="append", default=[], help="quality=PATH (overrides the cache)")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--collect", action="store_true", help="collect missing datasets (trains behaviours)")
    p.add_argument("--out", type=Path, default=Path("out/bench_offline"))
    args = p.parse_args(argv)

    import os

    from eaq.data import load_dataset
    from eaq.evaluation.stats import mean_ci
    from eaq.offline import OfflineConfig, train_offline

    cache = args.cache_dir or Path(os.environ.get("EAQ_CACHE_DIR", "~/.cache/eaq")).expanduser()
    explicit = dict(d.split("=", 1) for d in args.dataset)
    datasets = {}
    for q in args.qualities:
        path = Path(explicit[q]) if q in explicit else find_dataset(cache, args.map, q, args.episodes)
        if path is None and args.collect:
            from eaq.behaviour.collect import collect_dataset

            datasets[q] = collect_dataset(args.map, q, args.episodes, cache_dir=args.cache_dir)
            continue
        if path is None:
            print(f"error: no {args.map} {q} dataset of {args.episodes} episodes under {cache}/datasets; "
                  f"run `eaq collect` first, pass --dataset {q}=PATH, or use --collect", file=sys.stderr)
            return 1
        datasets[q] = load_dataset(path)
        print(f"{q}: {path} ({datasets[q].n_episodes} episodes)", flush=True)

    rows, runs = [], []
    t_all = time.perf_counter()
    for q, batch in datasets.items():
        ds_nr = float(batch.normalized_returns().mean())
        ds_win = float(batch.wins().mean())
        for learner in args.learners:
            nrs, wins, per10k = [], [], []
            for seed in args.seeds:
                cfg = OfflineConfig(
                    learner=learner, steps=args.steps, batch_size=args.batch_size, seed=seed,
                    eval_every=args.steps, eval_episodes=0, final_eval_episodes=args.eval_episodes,
                    segment=min(250, max(1, args.steps // 4)),
                )
                out = args.out / args.map / q / learner / f"seed{seed}"
                t0 = time.perf_counter()
                res = train_offline(cfg, [batch], out_dir=out, names=[f"{args.map}-{q}"])
                f = res.final
                nrs.append(f.normalized_return.mean)
                wins.append(f.win_rate.mean)
                if np.isfinite(res.seconds_per_10k_updates):
                    per10k.append(res.seconds_per_10k_updates)
                runs.append({"quality": q, "learner": learner, "seed": seed, "out": str(out),
                             "final": f.to_dict(), "seconds_per_10k_updates": res.seconds_per_10k_updates,
                             "resumed_from": res.resumed_from, "wall_seconds": time.perf_counter() - t0})
                print(f"{q:6s} {learner:8s} seed {seed}: normalized return {f.normalized_return}, "
                      f"win rate {f.win_rate}, {res.seconds_per_10k_updates:.0f} s/10k updates "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            # Across seeds when there are several; with one seed, the run's own CI over its
            # evaluation episodes (said in the table's "CI over" column).
            nr = mean_ci(nrs) if len(nrs) > 1 else type(f.normalized_return)(**f.normalized_return.to_dict())
            rows.append({
                "quality": q, "learner": learner, "dataset_normalized_return": ds_nr, "dataset_win_rate": ds_win,
                "normalized_return": nr.to_dict(), "win_rate": float(np.mean(wins)),
                "seconds_per_10k_updates": float(np.mean(per10k)) if per10k else None, "seeds": args.seeds,
                "ci_over": "seeds" if len(nrs) > 1 else f"{args.eval_episodes} eval episodes",
            })

    lines = [
        f"| {args.map} data | dataset norm. return | dataset win rate | learner | norm. return (mean ± 95 % CI) | CI over | win rate | s / 10k updates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        nr = r["normalized_return"]
        half = (nr["hi"] - nr["lo"]) / 2 if nr["n"] > 1 else float("nan")
        per = r["seconds_per_10k_updates"]
        lines.append(
            f"| {r['quality']} | {r['dataset_normalized_return']:.1f} | {100 * r['dataset_win_rate']:.0f} % | {r['learner']} "
            f"| {nr['mean']:.1f} ± {half:.1f} | {r['ci_over']} | {100 * r['win_rate']:.0f} % | "
            + (f"{per:.0f} |" if per else "n/a |")
        )
    table = "\n".join(lines)
    print(table)
    import jax

    summary = {
        "command": " ".join(sys.argv), "steps": args.steps, "seeds": args.seeds, "batch_size": args.batch_size,
        "eval_episodes": args.eval_episodes, "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, jax devices {[str(d) for d in jax.local_devices()]}",
        "total_wall_seconds": time.perf_counter() - t_all, "rows": rows, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "table.md").write_text(table + "\n")
    print(f"saved {args.out / 'summary.json'} and {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
