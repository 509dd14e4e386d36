"""Behaviour-recipe search: learning curves (greedy normalized return vs joint steps) of
candidate IPPO configs on one map, to find a recipe that reaches the Good band.

Each candidate trains with the library's own jitted update (``eaq.behaviour``) and is
evaluated greedily over 128 episodes every ``--eval-every`` updates, until its step budget
or ``--time-budget`` seconds. No checkpoints are written: this measures recipes, the
``eaq collect`` run is what makes datasets. Several candidates can run as parallel
processes on one accelerator (``--candidate NAME`` picks one; ``--list`` shows them).

    python benchmarks/behaviour_sweep.py --map 5m_vs_6m --candidate jaxmarl --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from eaq.behaviour.config import IPPOConfig, default_config
from eaq.behaviour.training import compiled, initial_runner
from eaq.data.store import atomic_write_text


def candidates(map_name: str) -> dict[str, IPPOConfig]:
    """Named recipes. ``jaxmarl`` follows JaxMARL's ippo_rnn_smax hyper-parameters (GRU 128,
    lr 4e-3, clip 0.05, grad-norm 0.25, 128 envs x 128 steps, 1e7 steps)."""
    jaxmarl = IPPOConfig(
        recurrent=True, gru_dim=128, hidden_dim=128, lr=4e-3, clip_eps=0.05, max_grad_norm=0.25,
        num_envs=128, num_steps=128, num_updates=610,
    )
    return {
        "default": default_config(map_name),
        "jaxmarl": jaxmarl,
        "jaxmarl-mlp": jaxmarl.replace(recurrent=False),
        "jaxmarl-ent003": jaxmarl.replace(ent_coef=0.003),
        "jaxmarl-lr1e3": jaxmarl.replace(lr=1e-3),
        "default-clip005": default_config(map_name).replace(clip_eps=0.05, max_grad_norm=0.25),
        "tiny": IPPOConfig(num_envs=8, num_steps=16, num_updates=4, update_epochs=1,
                           num_minibatches=2, hidden_dim=32, gru_dim=16, recurrent=True),
    }


def sweep(map_name: str, name: str, config: IPPOConfig, seed: int, eval_every: int,
          time_budget: float, out: Path | None) -> dict:
    """Trains one candidate, evaluating every ``eval_every`` updates; returns its curve."""
    config = config.replace(updates_per_segment=1)
    ippo, segment, evaluate = compiled(config, map_name)
    runner = initial_runner(ippo, seed)
    steps_per_update = config.num_envs * config.num_steps
    record = {"map": map_name, "candidate": name, "seed": seed, "config": config.to_dict(),
              "device": str(jax.devices()[0]), "curve": []}
    started = time.perf_counter()
    eval_key = jax.random.PRNGKey(seed + 1_000_003)
    for update in range(config.num_updates + 1):
        if update % eval_every == 0 or update == config.num_updates:
            result = evaluate(runner.params, jax.random.fold_in(eval_key, update), 128)
            point = {"update": update, "joint_steps": update * steps_per_update,
                     "wall_s": round(time.perf_counter() - started, 1),
                     "normalized_return": result.normalized_return.mean,
                     "win_rate": result.win_rate.mean}
            record["curve"].append(point)
            print(f"[{name}] update {update:5d}  steps {point['joint_steps']:>10,}  "
                  f"{point['wall_s']:7.1f}s  return {point['normalized_return']:5.1f} %  "
                  f"wins {100 * point['win_rate']:5.1f} %", flush=True)
            if out is not None:
                atomic_write_text(out, json.dumps(record, indent=1))
            if time.perf_counter() - started > time_budget:
                record["stopped"] = "time budget"
                break
        if update < config.num_updates:
            runner, _ = segment(runner)
    else:
        record["stopped"] = "step budget"
    if out is not None:
        atomic_write_text(out, json.dumps(record, indent=1))
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", default="5m_vs_6m")
    p.add_argument("--candidate", default="jaxmarl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--time-budget", type=float, default=1800.0, help="seconds per candidate")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--list", action="store_true")
    a = p.parse_args()
    table = candidates(a.map)
    if a.list:
        for name, cfg in table.items():
            print(name, cfg)
        return
    if a.candidate not in table:
        p.error(f"--candidate must be one of {sorted(table)}, got {a.candidate!r}")
    sweep(a.map, a.candidate, table[a.candidate], a.seed, a.eval_every, a.time_budget, a.json)


if __name__ == "__main__":
    main()
