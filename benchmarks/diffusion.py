"""Speed of the EAQ episode diffusion model on 3m (measured, never asserted).

Prints:
- JAX training updates/s at the default model size (EAQ^-Q, and EAQ with the Q_tot loss);
- sampled episodes/s (DDIM, default sampler steps, decoding + validity filter included);
- the same training update for an equal PyTorch U-Net, when a Python with torch is given
  (``--torch-python``; torch is not a project dependency), and the JAX / PyTorch ratio;
- with ``--full-stage``: the whole default EAQ stage for 3m, timed end to end: Q_tot (QMIX+CQL)
  training, diffusion training, 1000 sampled episodes (target <= 20 min on 2 CPU cores).

Usage (run under the shared heavy lock on the 2-core machine)::

    flock /tmp/eaq-heavy.lock .venv/bin/python benchmarks/diffusion.py \
        --torch-python /tmp/torchvenv/bin/python --full-stage

This file's top level imports nothing but the standard library, so ``--torch-only`` runs in a
Python that has torch but not JAX.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# PyTorch twin of eaq.diffusion.unet.TemporalUNet (same blocks, widths and update)


def torch_updates_per_s(channels: int, length: int, base: int, mults: list[int], batch: int, n: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)

    class ConvBlock(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(nn.Conv1d(cin, cout, 5, padding=2), nn.GroupNorm(8, cout), nn.Mish())

    class Res(nn.Module):
        def __init__(self, cin, cout, emb):
            super().__init__()
            self.b1, self.b2 = ConvBlock(cin, cout), ConvBlock(cout, cout)
            self.t = nn.Sequential(nn.Mish(), nn.Linear(emb, cout))
            self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, e):
            h = self.b1(x) + self.t(e)[:, :, None]
            return self.b2(h) + self.skip(x)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [base * m for m in mults]
            self.base = base
            self.temb = nn.Sequential(nn.Linear(base, 4 * base), nn.Mish(), nn.Linear(4 * base, base))
            self.down, self.pool = nn.ModuleList(), nn.ModuleList()
            cin = channels
            for i, d in enumerate(dims):
                self.down.append(nn.ModuleList([Res(cin, d, base), Res(d, d, base)]))
                self.pool.append(nn.Conv1d(d, d, 3, stride=2, padding=1) if i < len(dims) - 1 else nn.Identity())
                cin = d
            self.mid = nn.ModuleList([Res(dims[-1], dims[-1], base), Res(dims[-1], dims[-1], base)])
            self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
            h = dims[-1]
            for i in reversed(range(len(dims))):
                self.up.append(nn.ModuleList([Res(h + dims[i], dims[i], base), Res(dims[i], dims[i], base)]))
                self.unpool.append(
                    nn.ConvTranspose1d(dims[i], dims[i - 1], 4, stride=2, padding=1) if i > 0 else nn.Identity()
                )
                h = dims[i - 1] if i > 0 else dims[0]
            self.final = nn.Sequential(ConvBlock(dims[0], dims[0]), nn.Conv1d(dims[0], channels, 1))

        def forward(self, x, t):
            half = self.base // 2
            freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / max(half - 1, 1))
            ang = t.float()[:, None] * freqs[None]
            e = self.temb(torch.cat([ang.sin(), ang.cos()], -1))
            skips = []
            for (r1, r2), pool in zip(self.down, self.pool, strict=True):
                x = r2(r1(x, e), e)
                skips.append(x)
                x = pool(x)
            for r in self.mid:
                x = r(x, e)
            for (r1, r2), unpool, s in zip(self.up, self.unpool, reversed(skips), strict=True):
                x = r2(r1(torch.cat([x, s], 1), e), e)
                x = unpool(x)
            return self.final(x)

    model = UNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    data = torch.randn(batch * 4, channels, length)
    ab = torch.linspace(0.999, 0.01, 100)

    def step():
        x0 = data[torch.randint(0, data.shape[0], (batch,))]
        t = torch.randint(0, 100, (batch,))
        a = ab[t][:, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
        loss = ((model(xt, t) - x0) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    dt = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    return {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "updates_per_s": n / dt, "params": n_params}


# ---------------------------------------------------------------------------------------------
# JAX side


def _real_like_3m(n_episodes: int, seed: int = 0):
    import jax

    from eaq.data import DatasetMeta, EpisodeBatch
    from eaq.env import make_env
    from eaq.env.rollout import make_rollout, random_legal_policy

    env = make_env("3m")
    ep = jax.jit(make_rollout(env, random_legal_policy), static_argnums=2)((), jax.random.PRNGKey(seed), n_episodes)
    return EpisodeBatch.from_arrays(ep, DatasetMeta(spec=env.spec, quality="random", seed=seed))


def jax_updates_per_s(batch, config, qtot, n_segments: int) -> dict:
    import jax
    import jax.numpy as jnp

    from eaq.diffusion.codec import EpisodeLayout, encode, fit_normaliser
    from eaq.diffusion.train import local_mesh, make_train, replicate

    mesh = local_mesh()
    norm = fit_normaliser(batch)
    trainer = make_train(config, EpisodeLayout(batch.spec), None if qtot is None else qtot.apply, mesh)
    data = replicate(jnp.asarray(encode(batch, norm, trainer.length)), mesh)
    mask = replicate(jnp.asarray(batch.mask[:, : config.steps(batch.spec.max_steps)[1]]), mesh)
    norm_tree = replicate(norm.to_tree(), mesh)
    qp = None if qtot is None else replicate(qtot.params, mesh)
    state = replicate(trainer.init(jax.random.PRNGKey(0)), mesh)
    k = config.updates_per_segment
    t0 = time.perf_counter()
    state, m = trainer.segment(state, data, mask, norm_tree, qp, k)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_segments):
        state, m = trainer.segment(state, data, mask, norm_tree, qp, k)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    n_params = sum(int(x.size) for x in jax.tree.leaves(state.params))
    return {"updates_per_s": n_segments * k / dt, "compile_plus_first_segment_s": first, "params": n_params}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", help="diffusion size preset")
    ap.add_argument("--episodes", type=int, default=1000, help="real 3m episodes (random policy) to train on")
    ap.add_argument("--segments", type=int, default=2, help="timed training segments")
    ap.add_argument("--sample-episodes", type=int, default=1000)
    ap.add_argument("--torch-python", default=None, help="a Python with torch for the PyTorch comparison")
    ap.add_argument("--torch-updates", type=int, default=20)
    ap.add_argument("--full-stage", action="store_true", help="also time the whole default EAQ stage")
    ap.add_argument("--qtot-steps", type=int, default=5000, help="QMIX+CQL updates in the full stage")
    ap.add_argument("--diffusion-updates", type=int, default=None, help="diffusion updates in the full stage")
    ap.add_argument("--out", default="/tmp/eaq-diffusion-bench", help="work directory of the full stage")
    ap.add_argument("--torch-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_only:  # child process: a Python with torch, without JAX
        print(json.dumps(torch_updates_per_s(**json.loads(args.torch_only))))
        return 0

    import dataclasses

    import jax

    from eaq.diffusion.augment import sample_episodes
    from eaq.diffusion.config import PRESETS
    from eaq.diffusion.train import load_model, train_diffusion
    from eaq.offline import OfflineConfig, load_qtot, train_offline

    results: dict = {"devices": [str(d) for d in jax.local_devices()], "cpu_count": os.cpu_count()}
    cfg = dataclasses.replace(PRESETS[args.preset], updates_per_segment=20)
    print(f"3m, diffusion preset {args.preset!r}: {cfg}", flush=True)
    t0 = time.perf_counter()
    real = _real_like_3m(args.episodes)
    print(f"{real.n_episodes} real 3m episodes in {time.perf_counter() - t0:.1f} s", flush=True)

    work = Path(args.out)
    qmix_dir = work / "qtot-bench"
    if not (qmix_dir / "config.json").exists():
        small = OfflineConfig(steps=2, segment=2, eval_every=2, eval_episodes=0, final_eval_episodes=0)
        train_offline(small, [real], out_dir=qmix_dir)
    qtot = load_qtot(qmix_dir)

    noq = jax_updates_per_s(real, cfg, None, args.segments)
    print(f"JAX train (EAQ^-Q), batch {cfg.batch_size}: {noq['updates_per_s']:.2f} updates/s "
          f"(compile + first segment {noq['compile_plus_first_segment_s']:.1f} s, {noq['params']} params)", flush=True)
    withq = jax_updates_per_s(real, dataclasses.replace(cfg, q_weight=0.1), qtot, args.segments)
    print(f"JAX train (EAQ, eta 0.1):  {withq['updates_per_s']:.2f} updates/s", flush=True)
    results["jax_train_noq"], results["jax_train_q"] = noq, withq

    if args.torch_python:
        spec = {"channels": 348, "length": 100 if len(cfg.channel_mults) <= 3 else 104, "base": cfg.base_channels,
                "mults": list(cfg.channel_mults), "batch": cfg.batch_size, "n": args.torch_updates}
        out = subprocess.run([args.torch_python, __file__, "--torch-only", json.dumps(spec)],
                             capture_output=True, text=True, check=True)
        tr = json.loads(out.stdout.strip().splitlines()[-1])
        results["torch_train"] = tr
        ratio = noq["updates_per_s"] / tr["updates_per_s"]
        results["jax_over_torch"] = ratio
        print(f"PyTorch {tr['torch_version']} ({tr['threads']} threads, {tr['params']} params): "
              f"{tr['updates_per_s']:.2f} updates/s -> JAX / PyTorch = {ratio:.2f}x", flush=True)
    else:
        print("PyTorch comparison skipped (no --torch-python)")

    if args.full_stage:
        stage: dict = {}
        t_all = time.perf_counter()
        t0 = time.perf_counter()
        qcfg = OfflineConfig(steps=args.qtot_steps, eval_episodes=0, final_eval_episodes=0)
        train_offline(qcfg, [real], out_dir=work / "qtot")
        stage["qtot_train_s"] = time.perf_counter() - t0
        print(f"Q_tot (QMIX+CQL, {args.qtot_steps} updates): {stage['qtot_train_s']:.0f} s", flush=True)
        t0 = time.perf_counter()
        dcfg = dataclasses.replace(PRESETS[args.preset], q_weight=0.1)
        if args.diffusion_updates:
            dcfg = dataclasses.replace(dcfg, n_updates=args.diffusion_updates)
        model_dir = train_diffusion(dcfg, real, load_qtot(work / "qtot"), work / "diffusion",
                                    qtot_path=work / "qtot", progress=False)
        stage["diffusion_train_s"] = time.perf_counter() - t0
        stage["diffusion_updates"] = dcfg.n_updates
        print(f"diffusion ({dcfg.n_updates} updates, eta 0.1): {stage['diffusion_train_s']:.0f} s", flush=True)
        t0 = time.perf_counter()
        synthetic, stats = sample_episodes(load_model(model_dir), args.sample_episodes, seed=0)
        stage["sample_s"] = time.perf_counter() - t0
        stage["sampled"] = stats["n_generated"]
        stage["valid"] = synthetic.n_episodes
        stage["dropped"] = stats["dropped"]
        stage["total_s"] = time.perf_counter() - t_all
        results["full_stage"] = stage
        print(f"sampling {args.sample_episodes} valid episodes: {stage['sample_s']:.0f} s "
              f"({stats['n_generated']} drawn, dropped {stats['dropped']})", flush=True)
        print(f"whole EAQ stage: {stage['total_s'] / 60:.1f} min (target <= 20 min)", flush=True)
    else:
        from eaq.diffusion.train import _make_train  # noqa: F401  (compiled trainer stays cached)

        model_dir = train_diffusion(dataclasses.replace(cfg, n_updates=20), real, None, work / "sampling-model",
                                    progress=False)
        model = load_model(model_dir)
        sample_episodes(model, model.config.sample_chunk, seed=0)  # compile
        t0 = time.perf_counter()
        synthetic, stats = sample_episodes(model, args.sample_episodes, seed=1, max_draw_factor=1.0)
        dt = time.perf_counter() - t0
        results["sampling"] = {"episodes_drawn_per_s": stats["n_generated"] / dt, "drawn": stats["n_generated"],
                               "sample_steps": model.config.sample_steps}
        print(f"sampling: {stats['n_generated'] / dt:.1f} episodes/s drawn (DDIM {model.config.sample_steps} steps, "
              f"decode + filter included)", flush=True)
    print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
