"""``eaq dataset``: info, validate, import-vault, export-vault."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from eaq.cli._util import subcommand_union


@dataclass(frozen=True)
class Info:
    """Print a dataset's card (episodes, returns, win rate, lengths)."""

    path: tyro.conf.Positional[Path]
    """Dataset directory."""
    plot: Path | None = None
    """Also save a histogram of normalized returns to this PNG file."""
    json: bool = False
    """Print the card as JSON instead of a table."""

    def run(self) -> int:
        from eaq.data.card import dataset_card, plot_returns, render_card
        from eaq.data.store import load_dataset

        batch = load_dataset(self.path)
        card = dataset_card(batch)
        if self.json:
            print(json.dumps(card, indent=2, default=str))
        else:
            render_card(card, title=str(self.path))
        if self.plot is not None:
            plot_returns({batch.meta.source: batch}, self.plot, title=f"{batch.spec.map_name} {batch.meta.quality}")
            print(f"saved {self.plot}")
        return 0


@dataclass(frozen=True)
class Validate:
    """Check a dataset fully; exit 0 when valid, non-zero with the error otherwise."""

    path: tyro.conf.Positional[Path]
    """Dataset directory."""

    def run(self) -> int:
        from eaq.data.store import load_dataset

        batch = load_dataset(self.path)
        print(f"{self.path}: valid ({batch.n_episodes} episodes, {batch.n_transitions} transitions, {batch.spec.map_name})")
        return 0


@dataclass(frozen=True)
class ImportVault:
    """Import an OG-MARL (flashbax) Vault, e.g. vaults/smac_v1/3m.vlt --uid Good."""

    vault_dir: tyro.conf.Positional[Path]
    """The Vault directory that holds the uid folders (e.g. vaults/smac_v1/3m.vlt)."""
    uid: str
    """Which dataset inside the Vault: Good, Medium, Poor, ..."""
    out: Path
    """Dataset directory to write."""
    map: str | None = None
    """SMAX map the data comes from; default: the Vault folder name without '.vlt'."""
    quality: str = "unknown"
    """Quality label to record (poor / medium / good / unknown)."""
    force: bool = False
    """Overwrite an existing dataset at --out."""

    def run(self) -> int:
        from eaq.data.card import dataset_card, render_card
        from eaq.data.store import save_dataset
        from eaq.data.vault import import_vault
        from eaq.env import make_env

        map_name = self.map or self.vault_dir.name.removesuffix(".vlt")
        spec = make_env(map_name).spec
        batch = import_vault(self.vault_dir, self.uid, spec, quality=self.quality)
        save_dataset(batch, self.out, force=self.force)
        render_card(dataset_card(batch), title=f"imported {self.vault_dir}/{self.uid} -> {self.out}")
        return 0


@dataclass(frozen=True)
class ExportVault:
    """Export a dataset as an OG-MARL (flashbax) Vault."""

    path: tyro.conf.Positional[Path]
    """Dataset directory."""
    out: Path
    """Vault directory to write into (e.g. vaults/smax/3m.vlt)."""
    uid: str
    """Name of the dataset inside the Vault (e.g. Medium)."""
    force: bool = False
    """Overwrite an existing uid in the Vault."""

    def run(self) -> int:
        from eaq.data.store import load_dataset
        from eaq.data.vault import export_vault

        target = export_vault(load_dataset(self.path), self.out, self.uid, force=self.force)
        print(f"wrote Vault {target}")
        return 0


_SUB = {"info": Info, "validate": Validate, "import-vault": ImportVault, "export-vault": ExportVault}
DatasetSubcommand = Annotated[subcommand_union(_SUB), tyro.conf.arg(name="")]


@dataclass(frozen=True)
class DatasetCommand:
    """Inspect, validate, import and export episode datasets."""

    cmd: DatasetSubcommand

    def run(self) -> int:
        return self.cmd.run()
