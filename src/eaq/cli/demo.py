"""``eaq demo``: the main job on a small embedded default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Demo:
    """Run the main job on a small default (for now: a random-policy 3m dataset and its card)."""

    map: str = "3m"
    """SMAX map."""
    episodes: int = 256
    """Episodes to collect."""
    seed: int = 0
    """Random seed."""
    out: Path = Path("out/demo")
    """Output directory."""

    def run(self) -> int:
        import jax

        from eaq.data import DatasetMeta, EpisodeBatch, save_dataset
        from eaq.data.card import dataset_card, plot_returns, render_card
        from eaq.env import make_env
        from eaq.env.rollout import make_rollout, random_legal_policy

        env = make_env(self.map)
        rollout = jax.jit(make_rollout(env, random_legal_policy), static_argnums=2)
        episodes = rollout((), jax.random.PRNGKey(self.seed), self.episodes)
        meta = DatasetMeta(
            spec=env.spec, quality="random", source="real", generator={"policy": "uniform random legal"}, seed=self.seed
        )
        batch = EpisodeBatch.from_arrays(episodes, meta)
        path = save_dataset(batch, self.out / f"{self.map}-random", force=True)
        render_card(dataset_card(batch), title=f"demo dataset {path}")
        png = plot_returns({"random": batch}, self.out / f"{self.map}-random-returns.png")
        print(f"saved {path} and {png}")
        return 0
