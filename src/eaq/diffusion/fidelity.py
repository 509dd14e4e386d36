"""Fidelity report: how much synthetic episodes look like (and behave like) the real ones.

- per-channel distribution distance: for continuous channels (observations, state, reward) the
  1-Wasserstein distance between real and synthetic in-episode values, in units of the real
  standard deviation; for binary channels (actions, legal bits, terminal) the absolute
  difference of their frequencies;
- return, episode-length and win-rate distributions, real vs synthetic;
- mean Q_tot (per-episode mean over its steps, with a 95 % CI) under a frozen QMIX, when known;
- legality rate (the model's own argmax action was legal) and validity rate (samples kept);
- dynamics consistency: a small MLP trained on real transitions (state, joint action) ->
  next state; its error on held-out real transitions vs on synthetic ones (ratio 1 = as
  consistent as real data), over the state dimensions that change in real data, plus the
  synthetic drift on the ones that never do;
- motion (SMAX maps): how often a unit's stored action agrees with how its positions moved
  (eaq.env.project's inverse dynamics), and how often that move is physically possible (about
  0 or one step of the unit's speed), real vs synthetic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eaq.data.batch import EpisodeBatch
from eaq.data.card import save_figure
from eaq.data.store import atomic_write_text
from eaq.diffusion.codec import EpisodeLayout, raw_tensor
from eaq.evaluation.stats import mean_ci

_QUANTILES = np.linspace(0.005, 0.995, 100)


@dataclass
class FidelityReport:
    """JSON-ready fidelity figures (see the module docstring); ``None`` where not computed."""

    n_requested: int
    n_generated: int
    n_valid: int
    validity_rate: float
    dropped: dict[str, int]
    legality_rate: float
    channel_distance: dict[str, float]
    per_channel_distance: list[float] = field(repr=False)
    returns: dict[str, dict[str, float]]
    normalized_returns: dict[str, dict[str, float]]
    lengths: dict[str, dict[str, float]]
    win_rate: dict[str, float]
    q_tot: dict[str, dict[str, float]] | None
    dynamics: dict[str, float] | None
    motion: dict[str, dict[str, float]] | None = None
    """{real|synthetic: {known_steps, action_agreement, plausible_share, move_share}}, the shares
    over the agent-steps whose motion is known (NaN when there are none); ``move_share``: the
    unit moved more than half a step (a diffusion model that blurs motion under-moves)."""
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)
    """Per-episode normalized returns and lengths, {real|synthetic: {normalized_return, length}}."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=float))
        return path

    def render(self, title: str = "fidelity: synthetic vs real") -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        t.add_column("measure", style="bold")
        t.add_column("real")
        t.add_column("synthetic")
        f = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
        t.add_row("episodes", "", f"{self.n_valid} kept (requested {self.n_requested}), {self.n_generated} sampled")
        t.add_row("validity rate", "", f"{100 * self.validity_rate:.1f} %  dropped {self.dropped or '{}'}")
        t.add_row("legality rate (raw argmax legal)", "", f"{100 * self.legality_rate:.1f} %")
        t.add_row("normalized return", f(self.normalized_returns["real"]), f(self.normalized_returns["synthetic"]))
        t.add_row("episode length", f(self.lengths["real"]), f(self.lengths["synthetic"]))
        t.add_row("win rate", f"{100 * self.win_rate['real']:.1f} %", f"{100 * self.win_rate['synthetic']:.1f} %")
        if self.q_tot is not None:
            q = self.q_tot
            ci = lambda e: f"{e['mean']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"  # noqa: E731
            t.add_row("mean Q_tot (95% CI)", ci(q["real"]), ci(q["synthetic"]))
        for kind, d in self.channel_distance.items():
            t.add_row(f"distance: {kind}", "", f"{d:.4f}")
        if self.dynamics is not None:
            d = self.dynamics
            t.add_row(
                "dynamics error (MSE, std units)",
                f"{d['real_heldout_mse']:.4f} (held out)",
                f"{d['synthetic_mse']:.4f}  (ratio {d['ratio']:.2f})",
            )
            if "constant_state_dims" in d:
                t.add_row(
                    f"mean |change| on the {d['constant_state_dims']} state dims real data never changes",
                    "0", f"{d['synthetic_change_on_constant_dims']:.4f}",
                )
        if self.motion is not None:
            pct = lambda k: lambda s: f"{100 * self.motion[s][k]:.1f} %"  # noqa: E731
            agree, plaus = pct("action_agreement"), pct("plausible_share")
            t.add_row("action agrees with the unit's motion", agree("real"), agree("synthetic"))
            t.add_row("physically possible unit moves", plaus("real"), plaus("synthetic"))
            if all("move_share" in self.motion[s] for s in ("real", "synthetic")):  # reports before 2026-11-27 lack it
                moving = pct("move_share")
                t.add_row("ally steps where the unit moves (more than half a step)", moving("real"), moving("synthetic"))
        moved = self.extra.get("actions_from_motion")
        if moved:
            t.add_row("actions read off the motion", "", f"yes: {100 * moved['relabelled_share']:.1f} % of agent-steps changed")
        relabel = self.extra.get("relabel_rewards")
        if relabel:
            t.add_row(
                "non-final rewards relabelled from states",
                f"fit R^2 {relabel['heldout_r2']:.3f} (held out)",
                "yes" if relabel["applied"] else f"no: {relabel['why']}",
            )
        chosen = self.extra.get("selection") or self.extra.get("qtot_selection")  # (the name until fast-v38)
        if chosen:
            from eaq.diffusion.config import SELECT_BY_LABEL

            t.add_row(
                f"kept the best-rated by {SELECT_BY_LABEL[chosen.get('by', 'qtot')]}",
                "",
                f"{chosen['n_kept']} of {chosen['n_candidates']} valid samples (mean rating "
                f"{chosen['rating_candidates']:.3f} -> {chosen['rating_kept']:.3f}; wins "
                f"{100 * chosen.get('win_share_candidates', float('nan')):.1f} % -> "
                f"{100 * chosen.get('win_share_kept', float('nan')):.1f} %)",
            )
        if self.extra.get("projected_to_env"):
            t.add_row("observations and legal actions", "recomputed from the states by SMAX", "yes")
        inpainting = self.extra.get("inpainting")
        if inpainting:
            fixed = []
            if inpainting["lengths"]:
                fixed.append("lengths")
            if inpainting["prefix"] > 0:
                fixed.append(f"prefix <= {inpainting['prefix']:g}")
            t.add_row(
                "inpainted from real episodes",
                f"{' + '.join(fixed)}, guidance {inpainting['guidance']:g}",
                f"{100 * inpainting['copied_step_share']:.1f} % of steps copied",
            )
        Console().print(t)

    def plot(self, path: str | Path, map_name: str = "") -> Path:
        """Saves a 2x2 PNG: returns, lengths, channel distances, Q_tot / dynamics."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(2, 2, figsize=(10, 7))
        bins = np.linspace(0, 100, 41)
        max_len = max(max(v["length"]) for v in self.samples.values())
        for name, v in self.samples.items():
            ret = v["normalized_return"]
            ax[0, 0].hist(ret, bins=bins, alpha=0.6, density=True, label=f"{name} (n={len(ret)})")
            ax[0, 1].hist(v["length"], bins=np.arange(0, max_len + 3, 2), alpha=0.6, density=True, label=name)
        ax[0, 0].set(xlabel="normalized return (%)", ylabel="density", title="returns")
        ax[0, 1].set(xlabel="episode length", title="lengths")
        ax[0, 0].legend()
        ax[0, 1].legend()
        kinds = list(self.channel_distance)
        ax[1, 0].bar(kinds, [self.channel_distance[k] for k in kinds])
        ax[1, 0].set(title="distribution distance by channel kind", ylabel="W1 / std  or  |freq diff|")
        ax[1, 0].tick_params(axis="x", rotation=30)
        names, vals, errs = [], [], []
        if self.q_tot is not None:
            for k in ("real", "synthetic"):
                e = self.q_tot[k]
                names.append(f"Q_tot {k}")
                vals.append(e["mean"])
                errs.append((e["hi"] - e["lo"]) / 2)
        if self.dynamics is not None:
            names += ["dyn. err real", "dyn. err synth"]
            vals += [self.dynamics["real_heldout_mse"], self.dynamics["synthetic_mse"]]
            errs += [0.0, 0.0]
        if names:
            ax[1, 1].bar(names, vals, yerr=np.nan_to_num(errs))
            ax[1, 1].tick_params(axis="x", rotation=30)
        ax[1, 1].set(title="mean Q_tot (95% CI) and dynamics error")
        fig.suptitle(
            f"{map_name}: validity {100 * self.validity_rate:.1f} %, legality {100 * self.legality_rate:.1f} %"
        )
        return save_figure(fig, path)


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def channel_distances(real: EpisodeBatch, synthetic: EpisodeBatch) -> tuple[dict[str, float], np.ndarray]:
    """({kind: mean distance}, [C] per-channel distance) over in-episode steps."""
    layout = EpisodeLayout(real.spec)
    kinds = layout.channel_kinds()
    r = raw_tensor(real)[real.mask].astype(np.float64)  # [n_real, C]
    s = raw_tensor(synthetic)[synthetic.mask].astype(np.float64)
    continuous = np.isin(kinds, ["obs", "state", "reward"])
    dist = np.zeros(len(kinds))
    qr = np.quantile(r[:, continuous], _QUANTILES, axis=0)
    qs = np.quantile(s[:, continuous], _QUANTILES, axis=0)
    std = np.maximum(r[:, continuous].std(axis=0), 0.05)  # near-constant channels: absolute scale
    dist[continuous] = np.abs(qr - qs).mean(axis=0) / std
    dist[~continuous] = np.abs(r[:, ~continuous].mean(axis=0) - s[:, ~continuous].mean(axis=0))
    by_kind = {str(k): float(dist[kinds == k].mean()) for k in dict.fromkeys(kinds) if k != "alive"}
    return by_kind, dist


def episode_q_tot(qtot, batch: EpisodeBatch, chunk: int = 256) -> np.ndarray:
    """[E] mean Q_tot of each episode's own (one-hot) actions over its steps."""
    apply = jax.jit(qtot.apply)
    out = []
    for i in range(0, batch.n_episodes, chunk):
        b = batch.select(slice(i, i + chunk))
        probs = jax.nn.one_hot(b.actions, batch.spec.n_actions)
        q = np.asarray(apply(qtot.params, jnp.asarray(b.observations), probs, jnp.asarray(b.state)))
        out.append((q * b.mask).sum(1) / np.maximum(b.mask.sum(1), 1))
    return np.concatenate(out)


def _transitions(batch: EpisodeBatch) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [n, S + N*A]: state and joint one-hot action, targets [n, S]: next - state)."""
    inside = batch.mask[:, :-1] & batch.mask[:, 1:]
    onehot = np.eye(batch.spec.n_actions, dtype=np.float32)[batch.actions[:, :-1]]
    x = np.concatenate([batch.state[:, :-1], onehot.reshape(*onehot.shape[:2], -1)], axis=-1)
    y = batch.state[:, 1:] - batch.state[:, :-1]
    return x[inside], y[inside]


def heldout_split(n_episodes: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) episode indices: a seeded permutation, ``holdout`` of it (>= 1) held out."""
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_test = max(1, int(round(holdout * n_episodes)))
    return order[n_test:], order[:n_test]


def dynamics_consistency(
    real: EpisodeBatch,
    synthetic: EpisodeBatch,
    seed: int = 0,
    n_updates: int = 1500,
    hidden: int = 128,
    holdout: float = 0.2,
) -> dict[str, float] | None:
    """Trains a one-step dynamics MLP on (1 - holdout) of the real episodes; returns its mean
    squared error (in units of the real per-dimension std of the state change) on held-out
    real transitions and on synthetic transitions, and their ratio.

    The error covers only the state dimensions that change in the real training transitions
    (std of the change > 10^-3).
    Many SMAX state features never change within an episode (unit types, for one); scaling a
    synthetic wobble there by a floored std of ~0 made the ratio ~10^4 whatever the model did.
    Those dimensions are reported apart: how many, and the synthetic data's mean |change| on
    them (0 for real data). For the same reason the model's inputs are the features that vary
    in the real training transitions."""
    train, test = heldout_split(real.n_episodes, holdout, seed)
    if len(train) < 1:
        return None
    x_tr, y_tr = _transitions(real.select(train))
    x_te, y_te = _transitions(real.select(test))
    x_sy, y_sy = _transitions(synthetic)
    if min(len(x_tr), len(x_te), len(x_sy)) == 0:
        return None
    changing = y_tr.std(0) > 1e-3  # (near-)constant: a tiny std would blow any wobble up
    if not changing.any():
        return None
    constant_drift = float(np.abs(y_sy[:, ~changing]).mean()) if (~changing).any() else 0.0
    y_tr, y_te, y_sy = y_tr[:, changing], y_te[:, changing], y_sy[:, changing]
    informative = x_tr.std(0) > 1e-3  # inputs constant in training carry nothing the model could use
    x_tr, x_te, x_sy = x_tr[:, informative], x_te[:, informative], x_sy[:, informative]
    x_mu, x_sd = x_tr.mean(0), x_tr.std(0)
    y_mu, y_sd = y_tr.mean(0), y_tr.std(0)
    nx = lambda x: jnp.asarray((x - x_mu) / x_sd, jnp.float32)  # noqa: E731
    ny = lambda y: jnp.asarray((y - y_mu) / y_sd, jnp.float32)  # noqa: E731

    def mlp(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    sizes = [x_tr.shape[1], hidden, hidden, y_tr.shape[1]]
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        key, k = jax.random.split(key)
        params.append((jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), jnp.zeros(b)))
    tx = optax.adam(1e-3)
    X, Y = nx(x_tr), ny(y_tr)

    @jax.jit
    def fit(params, key):
        def step(carry, k):
            p, opt = carry
            idx = jax.random.randint(k, (256,), 0, X.shape[0])
            grads = jax.grad(lambda p: jnp.mean(jnp.square(mlp(p, X[idx]) - Y[idx])))(p)
            upd, opt = tx.update(grads, opt, p)
            return (optax.apply_updates(p, upd), opt), None

        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, n_updates))
        return p

    params = fit(params, key)
    mse = lambda x, y: float(jnp.mean(jnp.square(mlp(params, nx(x)) - ny(y))))  # noqa: E731
    real_err, synth_err = mse(x_te, y_te), mse(x_sy, y_sy)
    return {
        "real_heldout_mse": real_err,
        "synthetic_mse": synth_err,
        "ratio": synth_err / max(real_err, 1e-12),
        "changing_state_dims": int(changing.sum()),
        "constant_state_dims": int((~changing).sum()),
        "synthetic_change_on_constant_dims": constant_drift,
        "real_train_transitions": int(len(x_tr)),
        "real_heldout_transitions": int(len(x_te)),
        "synthetic_transitions": int(len(x_sy)),
    }


def motion_consistency(real: EpisodeBatch, synthetic: EpisodeBatch) -> dict[str, dict[str, float]] | None:
    """For real and synthetic data: the share of known agent-steps (ally alive at t and t + 1)
    whose stored action agrees with its motion (moved: the same direction; stood: not a move),
    the share whose displacement is physically possible and the share where the unit moved;
    None off SMAX's state layout."""
    from eaq.env.project import projector

    try:
        proj = projector(real.spec.map_name)
    except ValueError:  # not a SMAX map / layout the projection knows
        return None
    return {name: motion_shares(b, proj) for name, b in (("real", real), ("synthetic", synthetic))}


def motion_shares(batch: EpisodeBatch, proj) -> dict[str, float]:
    """One dataset's ``{known_steps, action_agreement, plausible_share, move_share}`` (see
    ``motion_consistency``); ``proj``: the map's eaq.env.project StateProjector."""
    motion = proj.motion(batch.state, batch.mask)
    known = motion.known
    n = int(known.sum())

    def share(flags) -> float:  # of the known ally steps; NaN when none is known
        return float(flags[known].mean()) if n else float("nan")

    return {
        "known_steps": n,
        "action_agreement": share(motion.agrees_with(batch.actions)),
        "plausible_share": share(motion.plausible),
        "move_share": share(motion.moves >= 0),
    }


def fidelity_report(
    real: EpisodeBatch,
    synthetic: EpisodeBatch,
    *,
    n_requested: int,
    n_generated: int,
    dropped: dict[str, int],
    legality_rate: float,
    qtot=None,
    seed: int = 0,
) -> FidelityReport:
    """Compares ``synthetic`` (valid samples) with ``real`` (the training data)."""
    by_kind, per_channel = channel_distances(real, synthetic)
    q = None
    if qtot is not None:
        q = {
            "real": mean_ci(episode_q_tot(qtot, real)).to_dict(),
            "synthetic": mean_ci(episode_q_tot(qtot, synthetic)).to_dict(),
        }
    return FidelityReport(
        n_requested=n_requested,
        n_generated=n_generated,
        n_valid=synthetic.n_episodes,
        validity_rate=(n_generated - sum(dropped.values())) / max(n_generated, 1),
        dropped=dropped,
        legality_rate=legality_rate,
        channel_distance=by_kind,
        per_channel_distance=[float(d) for d in per_channel],
        returns={"real": _stats(real.returns()), "synthetic": _stats(synthetic.returns())},
        normalized_returns={
            "real": _stats(real.normalized_returns()),
            "synthetic": _stats(synthetic.normalized_returns()),
        },
        lengths={"real": _stats(real.lengths()), "synthetic": _stats(synthetic.lengths())},
        win_rate={"real": float(real.wins().mean()), "synthetic": float(synthetic.wins().mean())},
        q_tot=q,
        dynamics=dynamics_consistency(real, synthetic, seed=seed),
        motion=motion_consistency(real, synthetic),
        samples={
            name: {
                "normalized_return": [float(r) for r in b.normalized_returns()],
                "length": [int(n) for n in b.lengths()],
            }
            for name, b in (("real", real), ("synthetic", synthetic))
        },
        extra={"map": real.spec.map_name, "seed": seed},
    )
