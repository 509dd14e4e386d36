"""Wall time to produce the Poor, Medium and Good datasets (1000 episodes each) per map.

Targets (this 2-core CPU machine): <= 10 min for 3m, <= 30 min for 5m_vs_6m. Time includes
behaviour training, checkpoint evaluation, XLA compilation and collection; a fresh cache
directory is used unless --cache-dir names one (then cached runs and datasets are reused and
the time says so).

    python benchmarks/collect.py --maps 3m 2s3z --episodes 1000 --seed 0 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax


def run_map(map_name: str, episodes: int, seed: int, cache_dir: Path, updates: int | None = None) -> dict:
    from eaq.behaviour import NoCheckpointInBand, collect_dataset, default_config, train_behaviour
    from eaq.data.card import dataset_card

    config = default_config(map_name)
    if updates is not None:
        config = config.replace(num_updates=updates)
    result = {"map": map_name, "episodes": episodes, "seed": seed, "config": config.to_dict(),
              "config_hash": config.training_key(), "cache_dir": str(cache_dir), "qualities": {}}
    t0 = time.perf_counter()
    run = train_behaviour(map_name, seed, config, cache_dir, progress=sys.stderr.isatty())
    result["train_s"] = time.perf_counter() - t0
    result["train_finished"] = run.finished
    main_line = [e for e in run.evals if e.store == "checkpoints"]
    result["train_updates"] = main_line[-1].step if main_line else 0
    result["train_timesteps"] = main_line[-1].timesteps if main_line else 0
    result["checkpoints"] = [(e.name if e.store != "checkpoints" else e.step,
                              round(e.normalized_return, 1), round(100 * e.win_rate, 1))
                             for e in run.evals]
    for quality in ("poor", "medium", "good"):
        t = time.perf_counter()
        try:
            batch = collect_dataset(map_name, quality, episodes, seed, cache_dir, config, progress=False)
            card = dataset_card(batch)
            result["qualities"][quality] = {"collect_s": time.perf_counter() - t, "card": card}
        except NoCheckpointInBand as e:
            nearest = e.nearest.to_dict() if e.nearest else None
            result["qualities"][quality] = {"error": str(e), "nearest": nearest}
        print(f"{map_name} {quality}: {json.dumps(result['qualities'][quality].get('card', result['qualities'][quality]), default=str)[:400]}", flush=True)
    result["total_s"] = time.perf_counter() - t0
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--maps", nargs="+", default=["3m"])
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary directory")
    p.add_argument("--updates", type=int, default=None, help="override the training step budget (PPO updates)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "devices": [str(d) for d in jax.devices()], "python": platform.python_version(),
               "jax": jax.__version__}
    results = []
    for map_name in args.maps:
        cache = args.cache_dir or Path(tempfile.mkdtemp(prefix=f"eaq-bench-{map_name}-"))
        r = run_map(map_name, args.episodes, args.seed, cache, args.updates)
        r["machine"] = machine
        results.append(r)
        ok = all("card" in q for q in r["qualities"].values())
        print(f"== {map_name}: all three datasets in {r['total_s']:.0f} s "
              f"(training {r['train_s']:.0f} s, {r['train_updates']} updates, {r['train_finished']})"
              f"{'' if ok else ' -- SOME QUALITIES MISSING'}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
