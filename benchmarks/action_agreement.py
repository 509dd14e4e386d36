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
    from eaq.offline.networks import masked_argmax, masked_log_softmax, unroll_agents
    from eaq.offline.train import load_checkpoint

    ck = load_checkpoint(args.bc_run)
    if ck.config.learner != "bc":
        raise SystemExit(f"{args.bc_run}: a {ck.config.learner!r} run, not bc")
    net = bc.networks(ck.spec, ck.config)
    @jax.jit
    def score(obs, legals, actions):
        logits = unroll_agents(net, bc.acting_params(ck.params), obs)
        logp = jnp.take_along_axis(masked_log_softmax(logits, legals), actions[..., None], -1)[..., 0]
        return masked_argmax(logits, legals) == actions, logp

    for path in args.datasets:
        b = load_dataset(path)
        b = b.select(np.arange(min(args.episodes, b.n_episodes)))
        same, logp = (np.asarray(a) for a in score(jnp.asarray(b.observations), jnp.asarray(b.legals), jnp.asarray(b.actions)))
        inside = np.broadcast_to(b.mask[..., None], b.actions.shape)
        print(f"{path}: argmax agreement {float(same[inside].mean()):.3f}, mean log-likelihood {float(logp[inside].mean()):.3f} "
              f"({int(inside.sum())} agent-steps)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
