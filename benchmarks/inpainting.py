"""What inpainting (eaq.diffusion.inpaint) does to a trained model's synthetic episodes.

Two measurements on one model and its real data:

1. Guidance sweep: samples with the lengths of real episodes of >= --long-from steps fixed, for
   each reconstruction-guidance weight; prints the decoded lengths against the real ones
   (mean, correlation) and the share of broken samples. This is how the default weight was
   chosen.
2. The join: with lengths and prefixes fixed, the summed |state change| of the transitions
   inside the copied prefix, from its last step to the first generated one, and after it,
   next to real transitions, for guidance on the length channels only (what the sampler does)
   and on the prefix entries too (what it did first).
3. Modes: none / lengths / prefix / lengths + prefix at the default weight, through the same
   path as ``eaq augment`` (validity filter, projection); prints length, return, win rate and
   legality of the kept episodes next to the real data's, the share of steps copied from real
   prefixes, and the sampling time.

    python benchmarks/inpainting.py MODEL_DIR --data DATASET [--episodes 256] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from eaq.data.store import atomic_write_text, load_dataset
from eaq.diffusion.augment import make_sampler, sample_episodes
from eaq.diffusion.codec import EpisodeLayout, encode
from eaq.diffusion.decode import decode
from eaq.diffusion.inpaint import Inpainting, inpaint_targets
from eaq.diffusion.train import load_model


def summary(batch) -> dict:
    lengths = batch.lengths()
    return {
        "episodes": batch.n_episodes,
        "length_mean": float(lengths.mean()),
        "length_max": int(lengths.max()),
        "at_time_limit": float((lengths == batch.spec.max_steps).mean()),
        "normalized_return": float(batch.normalized_returns().mean()),
        "win_rate": float(batch.wins().mean()),
    }


def guidance_sweep(model, real, weights, long_from: int, seed: int) -> list[dict]:
    lengths = np.minimum(real.lengths(), model.config.steps(model.spec.max_steps)[1])  # cut at the horizon
    long = np.flatnonzero(lengths >= long_from)
    if long.size == 0:
        raise SystemExit(f"no real episode has >= {long_from} steps; lower --long-from")
    layout = EpisodeLayout(model.spec, model.config.obs_from_state)
    real_x = encode(real, model.normaliser, model.length, model.config.obs_from_state)[long]
    rows = []
    for w in weights:
        sample, chunk = make_sampler(model, guidance=w)
        known, mask, guide, info = inpaint_targets(
            real_x, lengths[long], layout, Inpainting(lengths=True, guidance=w), chunk, np.random.default_rng(seed)
        )
        t0 = time.perf_counter()
        x = np.asarray(sample(jax.random.PRNGKey(seed), known, mask, guide))
        seconds = time.perf_counter() - t0
        d = decode(x, model.normaliser, model.spec, obs_from_state=model.config.obs_from_state)
        got, want = d.arrays["mask"].sum(axis=1), lengths[long][info["source_episodes"]]
        rows.append({
            "guidance": w,
            "samples": int(chunk),
            "real_length_mean": float(want.mean()),
            "synthetic_length_mean": float(got.mean()),
            "length_correlation": float(np.corrcoef(got, want)[0, 1]) if got.std() > 0 else 0.0,
            "broken": float((d.broken != "").mean()),
            "seconds_incl_compile": seconds,
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def join_check(model, real, prefix: float, seed: int) -> list[dict]:
    lengths = np.minimum(real.lengths(), model.config.steps(model.spec.max_steps)[1])  # cut at the horizon
    layout = EpisodeLayout(model.spec, model.config.obs_from_state)
    real_x = encode(real, model.normaliser, model.length, model.config.obs_from_state)
    real_change = np.abs(np.diff(real.state, axis=1)).sum(-1)[real.mask[:, 1:]]
    inpainting = Inpainting(lengths=True, prefix=prefix)
    sample, chunk = make_sampler(model, guidance=inpainting.guidance)
    known, mask, guide, info = inpaint_targets(real_x, lengths, layout, inpainting, chunk, np.random.default_rng(seed))
    k = info["prefix_steps"]
    rows = []
    for name, guided in (("length channels (default)", guide), ("length channels and prefix", mask)):
        x = np.asarray(sample(jax.random.PRNGKey(seed), known, mask, guided))
        d = decode(x, model.normaliser, model.spec, obs_from_state=model.config.obs_from_state)
        change = np.abs(np.diff(d.arrays["state"], axis=1)).sum(-1)  # [n, T-1]: step t -> t+1
        valid = d.arrays["mask"][:, 1:]
        t = np.arange(change.shape[1])[None, :]
        rows.append({
            "guided": name,
            "guidance": inpainting.guidance,
            "prefix": prefix,
            "copied_transitions": float(change[valid & (t < (k - 1)[:, None])].mean()),
            "join_transition": float(change[valid & (t == (k - 1)[:, None])].mean()),
            "generated_transitions": float(change[valid & (t >= k[:, None])].mean()),
            "real_transitions": float(real_change.mean()),
            "broken": float((d.broken != "").mean()),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def modes(model, real, episodes: int, prefix: float, seed: int) -> list[dict]:
    rows = [{"mode": "real data", **summary(real)}]
    for name, inpainting in (
        ("none", Inpainting()),
        ("lengths", Inpainting(lengths=True)),
        (f"prefix {prefix}", Inpainting(prefix=prefix)),
        (f"lengths + prefix {prefix}", Inpainting(lengths=True, prefix=prefix)),
    ):
        t0 = time.perf_counter()
        batch, stats = sample_episodes(model, episodes, seed, inpainting=inpainting, real=real)
        rows.append({
            "mode": name,
            **summary(batch),
            "legality_rate": stats["legality_rate"],
            "samples_drawn": stats["n_generated"],
            "dropped": stats["dropped"],
            "copied_step_share": stats["copied_step_share"],
            "seconds_incl_compile": time.perf_counter() - t0,
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="model directory written by eaq train-diffusion")
    ap.add_argument("--data", type=Path, required=True, help="the real dataset the model was trained on")
    ap.add_argument("--episodes", type=int, default=256, help="kept episodes per mode")
    ap.add_argument("--prefix", type=float, default=0.5, help="prefix share for the prefix modes")
    ap.add_argument("--weights", default="0,1,10,30,100,300", help="guidance weights to sweep")
    ap.add_argument("--long-from", type=int, default=40, help="sweep with real episodes of at least this many steps")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    model, real = load_model(args.model), load_dataset(args.data)
    print(f"model {args.model} (step {model.step}, observations {model.config.observations}); data {args.data}; "
          f"devices {jax.devices()}")
    result = {
        "model": str(args.model),
        "data": str(args.data),
        "seed": args.seed,
        "guidance_sweep": guidance_sweep(model, real, [float(w) for w in args.weights.split(",")], args.long_from, args.seed),
        "join": join_check(model, real, args.prefix, args.seed),
        "modes": modes(model, real, args.episodes, args.prefix, args.seed),
    }
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
