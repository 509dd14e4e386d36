"""How far a ``from_state_motion`` model's own position channels are from the positions its
samples get.

In that layout the decoder rebuilds every living unit's position from its first-step position
and the generated displacements (StateProjector.with_positions_from_motion); the model's own
absolute position channels are generated too but never reach the synthetic data. This script
samples a model (no inpainting) and prints the distance between the two, over living units and
in-episode steps of valid samples, overall and at a few steps: how different the states were
that the Q_tot loss judged before ``q_positions_from_motion`` (docs/diffusion.md).

    python benchmarks/position_drift.py MODEL_DIR [MODEL_DIR ...] [--episodes 256] [--seed 1000]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from eaq.diffusion.augment import make_sampler
from eaq.diffusion.codec import EpisodeLayout
from eaq.diffusion.decode import decode
from eaq.diffusion.train import load_model
from eaq.env.project import projector


def position_drift(model_dir: str, episodes: int, seed: int) -> dict:
    """Distances (map units) between own and rebuilt positions of ``episodes`` samples."""
    model = load_model(model_dir)
    if not model.config.motion_channels:
        raise SystemExit(f"{model_dir}: observations={model.config.observations!r}, not from_state_motion")
    sample, _ = make_sampler(model, chunk=episodes)
    x = np.asarray(sample(jax.random.PRNGKey(seed)))[:, : model.spec.max_steps]
    proj = projector(model.spec.map_name)
    raw = EpisodeLayout(model.spec, obs_from_state=True, motion=True).split(model.normaliser.denormalise(x))
    own = proj.unit_positions(raw["state"])
    rebuilt = proj.unit_positions(proj.with_positions_from_motion(raw["state"], raw["motion"]))
    decoded = decode(x, model.normaliser, model.spec, proj, obs_from_state=True, motion=True)
    valid = decoded.broken == ""
    counted = decoded.arrays["mask"][valid][..., None] & proj.unit_alive(raw["state"][valid])  # [E, T, U]
    dist = np.linalg.norm(own[valid] - rebuilt[valid], axis=-1)[counted]
    step = np.broadcast_to(np.arange(counted.shape[1])[None, :, None], counted.shape)[counted]
    return {
        "model": model_dir,
        "q_weight": model.config.q_weight,
        "valid": float(valid.mean()),
        "mean": float(dist.mean()),
        "median": float(np.median(dist)),
        "p90": float(np.quantile(dist, 0.9)),
        "by_step": {int(t): float(dist[step == t].mean()) for t in (1, 5, 10, 20) if (step == t).any()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="diffusion model directories (from_state_motion)")
    parser.add_argument("--episodes", type=int, default=256, help="samples per model")
    parser.add_argument("--seed", type=int, default=1000, help="sampling seed")
    args = parser.parse_args()
    print("model | eta | valid | mean | median | p90 | mean at t = 1, 5, 10, 20 (map units)")
    for path in args.models:
        r = position_drift(path, args.episodes, args.seed)
        steps = ", ".join(f"{v:.2f}" for v in r["by_step"].values())
        print(f"{path} | {r['q_weight']} | {r['valid']:.2f} | {r['mean']:.2f} | {r['median']:.2f} | {r['p90']:.2f} | {steps}")


if __name__ == "__main__":
    main()
