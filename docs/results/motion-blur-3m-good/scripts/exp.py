"""python exp.py NAME QUALITY key=value ...: train a fast-preset EAQ diffusion model with overrides on 3m,
sample 500 episodes, print motion stats + BC proxy."""
import dataclasses
import sys
import time
from pathlib import Path

from eaq.data.store import load_dataset, save_dataset
from eaq.diffusion.augment import augment
from eaq.diffusion.config import resolve_horizon
from eaq.diffusion.train import train_diffusion
from eaq.offline.qtot import load_qtot
from eaq.pipeline.config import resolve_preset
from eaq.pipeline.run import _diffusion_config

name, quality = sys.argv[1], sys.argv[2]
over = {}
for kv in sys.argv[3:]:
    k, v = kv.split("=")
    over[k] = type(getattr(_diffusion_config(resolve_preset("fast"), 0.03), k))(eval(v))
out = Path(f"/tmp/bcsel/{name}")
out.mkdir(exist_ok=True)
real = load_dataset(f"/root/.cache/eaq/datasets/3m/seed0-165bdeae69/{quality}-1000ep-eps0.05")
qdir = f"/work/main/results/fast-v37-3m-best-of-4/stages/3m-{quality}/qtot"
qtot = load_qtot(qdir)
p = resolve_preset("fast")
cfg = _diffusion_config(p, 0.03, horizon=resolve_horizon(over.pop("horizon", -1), int(real.lengths().max())))
cfg = dataclasses.replace(cfg, **over)
print(cfg, flush=True)
t = time.time()
train_diffusion(cfg, real, qtot, out / "model", qtot_path=qdir, progress=False)
print(f"trained in {time.time()-t:.0f}s", flush=True)
syn, rep = augment(out / "model", 500, seed=1000, real=real, qtot=qtot, inpainting=p.inpainting(), actions_from_motion=True)
save_dataset(syn, out / "syn", force=True)
print("synthetic mean normalized return", rep.normalized_returns["synthetic"], "real", rep.normalized_returns["real"])
