"""Proxy: rate 2000 EAQ 3m Good candidates by a real-data BC policy's log-likelihood, keep 500."""
import time

import jax
import jax.numpy as jnp
import numpy as np

from eaq.data.store import load_dataset, save_dataset
from eaq.diffusion.augment import augment
from eaq.diffusion.inpaint import Inpainting
from eaq.offline.networks import AgentNet, masked_log_softmax, unroll_agents
from eaq.offline.qmix_cql import take
from eaq.offline.qtot import load_qtot
from eaq.offline.train import load_checkpoint

run = "results/fast-v37-3m-best-of-4/stages/3m-good"
real = load_dataset("/root/.cache/eaq/datasets/3m/seed0-165bdeae69/good-1000ep-eps0.05")
qtot = load_qtot(f"{run}/qtot")
t = time.time()
cand, rep = augment(f"{run}/diffusion-eaq", 2000, seed=1000, real=real, qtot=qtot,
    inpainting=Inpainting(lengths=False, prefix=0.01, guidance=30.0), actions_from_motion=True)
print("sampled", cand.n_episodes, time.time() - t, flush=True)
save_dataset(cand, "/tmp/bcsel/cand-2000", force=True)
ck = load_checkpoint("out/diag-good/bc-real-s0")
net = AgentNet(n_actions=ck.spec.n_actions, hidden_dim=ck.config.hidden_dim)
@jax.jit
def ll(params, obs, legals, actions, mask):
    logp = take(masked_log_softmax(unroll_agents(net, params, obs), legals), actions)  # [B,T,N]
    m = jnp.broadcast_to(mask[..., None], logp.shape)
    return (logp * m).sum((1, 2)) / jnp.maximum(m.sum((1, 2)), 1)
def rate(b):
    return np.asarray(ll(ck.params["policy"], b.observations, b.legals, b.actions, b.mask))
rr, rc = rate(real), rate(cand)
print("real mean ll", rr.mean(), "cand mean ll", rc.mean(), "quantiles cand", np.quantile(rc, [.1,.5,.75,.9]))
keep = np.sort(np.argsort(-rc, kind="stable")[:500])
sel = cand.select(keep)
print("kept ll", rc[keep].mean(), "wins cand", cand.wins().mean(), "kept", sel.wins().mean(), "real", real.wins().mean())
save_dataset(sel, "/tmp/bcsel/sel-bc-500", force=True)
rnd = cand.select(slice(0, 500))
save_dataset(rnd, "/tmp/bcsel/first-500", force=True)
