"""Dataset cards: summary statistics, a rich table and a return histogram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eaq.data.batch import EpisodeBatch


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def dataset_card(batch: EpisodeBatch) -> dict[str, Any]:
    """Statistics a user wants before training on a dataset (JSON-ready)."""
    ret = batch.returns()
    return {
        "map": batch.spec.map_name,
        "quality": batch.meta.quality,
        "source": batch.meta.source,
        "episodes": batch.n_episodes,
        "transitions": batch.n_transitions,
        "return": _stats(ret),
        "normalized_return": _stats(batch.normalized_returns()),
        "win_rate": float(batch.wins().mean()),
        "episode_length": _stats(batch.lengths()),
        "terminal_episodes": int((batch.terminals & batch.mask).any(axis=1).sum()),
        "truncated_episodes": int((batch.truncations & batch.mask).any(axis=1).sum()),
        "generator": batch.meta.generator,
        "seed": batch.meta.seed,
    }


def render_card(card: dict[str, Any], title: str = "dataset") -> None:
    """Prints a card as a rich table."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{title}", show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k in ("map", "quality", "source", "episodes", "transitions"):
        t.add_row(k, str(card[k]))
    for k in ("return", "normalized_return", "episode_length"):
        s = card[k]
        t.add_row(k, f"{s['mean']:.3f} ± {s['std']:.3f}  (min {s['min']:.3f}, max {s['max']:.3f})")
    t.add_row("win_rate", f"{100 * card['win_rate']:.1f} %")
    t.add_row("endings", f"{card['terminal_episodes']} terminal, {card['truncated_episodes']} truncated")
    if card.get("seed") is not None:
        t.add_row("seed", str(card["seed"]))
    for k, v in (card.get("generator") or {}).items():
        t.add_row(f"generator.{k}", str(v))
    Console().print(t)


def plot_returns(batches: dict[str, EpisodeBatch], out: str | Path, title: str | None = None) -> Path:
    """Saves a histogram of normalized returns, one series per named batch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 100, 41)
    for name, b in batches.items():
        ax.hist(b.normalized_returns(), bins=bins, alpha=0.6, label=f"{name} (n={b.n_episodes})")
    ax.set_xlabel("normalized return (% of max)")
    ax.set_ylabel("episodes")
    ax.set_title(title or "return distribution")
    ax.legend()
    return save_figure(fig, out)


def save_figure(fig, out: str | Path) -> Path:
    """Saves a matplotlib figure as PNG atomically (temporary file, then rename) and closes it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out
