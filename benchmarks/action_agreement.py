"""Do a dataset's actions follow its observations the way the behaviour policy's do?

A BC policy trained on the real data (an `eaq train-offline --learner bc` run directory) scores
the (observation sequence, action) pairs of each dataset given: the share of agent-steps where
its legal argmax equals the dataset's action, and the mean log-likelihood of those actions.
Run it on the real data (in-sample for the BC run, so an upper reference) and on synthetic sets:

    python benchmarks/action_agreement.py BC_RUN_DIR REAL_DATA SYNTHETIC_DATA [...] [--episodes 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bc_run", type=Path, help="a train-offline run directory of learner bc")
    p.add_argument("datasets", type=Path, nargs="+", help="dataset directories to score")
    p.add_argument("--episodes", type=int, default=500, help="score the first this many episodes of each")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from eaq.data import load_dataset
    from eaq.offline import bc
    from eaq.offline.networks import unroll_agents
    from eaq.offline.train import load_checkpoint

    ck = load_checkpoint(args.bc_run)
    if ck.config.learner != "bc":
        raise SystemExit(f"{args.bc_run}: a {ck.config.learner!r} run, not bc")
    net = bc.networks(ck.spec, ck.config)
    logits_of = jax.jit(lambda obs: unroll_agents(net, bc.acting_params(ck.params), obs))
    for path in args.datasets:
        b = load_dataset(path)
        b = b.select(np.arange(min(args.episodes, b.n_episodes)))
        logits = np.where(b.legals, np.asarray(logits_of(jnp.asarray(b.observations))), -np.inf)
        inside = np.broadcast_to(b.mask[..., None], b.actions.shape)
        top = logits.max(-1, keepdims=True)
        with np.errstate(invalid="ignore"):  # padding steps have no legal action; they are masked out
            logp = np.take_along_axis(logits, b.actions[..., None], -1)[..., 0] - (np.log(np.exp(logits - top).sum(-1)) + top[..., 0])
        agree = float((logits.argmax(-1) == b.actions)[inside].mean())
        print(f"{path}: argmax agreement {agree:.3f}, mean log-likelihood {float(logp[inside].mean()):.3f} "
              f"({int(inside.sum())} agent-steps)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
