"""The whole EAQ benchmark, end to end and resumable.

For every (map, quality): collect the original dataset (cached), train the frozen Q_tot
(QMIX+CQL), train one diffusion model per augmented variant (EAQ^-Q: eta = 0, EAQ: eta > 0).
For every (map, quality, variant, seed) cell: sample synthetic episodes (seeded), train the
offline learner on original (+ synthetic) data and evaluate it greedily in SMAX.

Layout of ``OUT/<run>/``::

    config.json                     resolved benchmark config and preset
    stages/<map>-<quality>/qtot/    Q_tot learner run (orbax checkpoints, curve)
    stages/<map>-<quality>/diffusion-<variant>/   diffusion model (checkpoints, normaliser)
    stages/<map>-<quality>/synthetic-<variant>-s<seed>/  synthetic dataset + fidelity report
    cells/<key>/                    offline learner run of one cell (checkpoints, curve)
    cells/<key>.json                the cell's result (its presence means 'done')
    results.csv results.json table.md bars.png returns-<map>-<quality>.png

Every stage resumes from its own checkpoints, and finished cells are never recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from eaq.data import EpisodeBatch, load_dataset, save_dataset
from eaq.data.store import atomic_write_text
from eaq.diffusion.config import SELECT_BY_LABEL, n_candidates, resolve_horizon
from eaq.pipeline.config import (
    LEGACY_PRESET_DEFAULTS,
    QUALITIES,
    VARIANTS,
    Cell,
    Preset,
    resolve_preset,
)
from eaq.pipeline.report import (
    plot_bars,
    read_cell_files,
    summarize,
    table_markdown,
    with_synthetic_fidelity,
    write_report,
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to run: the cells (maps x qualities x variants x seeds) and the stage sizes."""

    maps: tuple[str, ...] = ("3m",)
    """SMAX maps."""
    qualities: tuple[str, ...] = ("medium",)
    """Dataset qualities: poor, medium, good."""
    variants: tuple[str, ...] = VARIANTS
    """original (no augmentation), eaq-noq (EAQ without the Q_tot loss), eaq."""
    learner: str = "qmix-cql"
    """Offline learner judged on each variant: qmix-cql, maicq or bc."""
    seeds: int = 1
    """Seeds per cell (learner init, batch sampling, synthetic sample and evaluation)."""
    preset: str = "smoke"
    """Stage sizes: smoke, fast or full (see eaq.pipeline.config.PRESETS)."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """Preset fields to override, as (name, value) pairs."""
    out: Path = Path("results")
    """Results root."""
    run: str | None = None
    """Run name (default: the preset name); re-running the same run resumes it."""
    cache_dir: Path | None = None
    """Cache for behaviour runs and datasets (default: $EAQ_CACHE_DIR or ~/.cache/eaq)."""
    data_seed: int = 0
    """Seed of the behaviour training run and dataset collection."""
    behaviour: str = "default"
    """Behaviour-policy training size: default (per-map IPPO) or tiny (tests; learns little)."""
    band: tuple[float, float] | None = None
    """Override the quality band (normalized return %, lo and hi) used to pick the behaviour
    checkpoint, for tests and experiments; the band is recorded with the dataset."""
    extend_from: str | None = None
    """Name of an earlier run (under the same results root) to continue with longer learner
    training: its stages (Q_tot, diffusion models, synthetic data) are reused and every cell's
    learner resumes from its last checkpoint. Only offline_steps (raised) and eval_episodes may
    differ; the earlier run is left untouched."""
    stages_from: str | None = None
    """Name of an earlier run (under the same results root) whose stages (Q_tot guides, diffusion
    models, synthetic data) this new run reuses, training fresh learners on them: for ablations on
    the learner side. Only the learner and its settings (offline_steps, eval_episodes,
    synthetic_cql, synthetic_weight) may differ; the earlier run is left untouched."""
    stages_only: bool = False
    """Prepare what the cells need (datasets, Q_tot, diffusion models, synthetic data) and stop
    before the learners: run the model-heavy stages where compute is cheap (a GPU), then resume
    the same run without this flag to train and evaluate the learners (the stages are reused)."""

    def validate(self) -> BenchmarkConfig:
        from eaq.env.smax import UnknownMapError, available_maps
        from eaq.offline import LEARNERS

        maps = available_maps()
        for m in self.maps:
            if m not in maps:
                raise UnknownMapError(f"unknown SMAX map {m!r}; valid maps are: {', '.join(maps)}")
        for q in self.qualities:
            if q not in QUALITIES:
                raise ValueError(f"unknown quality {q!r}; choose from {', '.join(QUALITIES)}")
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; choose from {', '.join(LEARNERS)}")
        if self.behaviour not in ("default", "tiny"):
            raise ValueError(f"unknown behaviour size {self.behaviour!r}; choose default or tiny")
        for name, values in (("maps", self.maps), ("qualities", self.qualities), ("variants", self.variants)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists {', '.join(values)}: name each once")
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        if self.extend_from and self.stages_from:
            raise ValueError("--extend-from and --stages-from both seed a run from another: choose one")
        resolve_preset(self.preset, dict(self.overrides))
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / (self.run or self.preset)

    def cells(self) -> list[Cell]:
        # Seeds outermost: an interrupted run still holds every variant for the seeds it did.
        return [
            Cell(m, q, v, s)
            for s in range(self.seeds)
            for m in self.maps
            for q in self.qualities
            for v in self.variants
        ]


class StageLog:
    """Prints which cell and stage runs, and how long each stage took."""

    def __init__(self, console: Console):
        self.console = console
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        self.console.print(f"[bold cyan]▶ {label}[/]")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.times[label] = dt
        self.console.print(f"[green]✓ {label}[/] [dim]({dt:.1f} s)[/]")


def _diffusion_config(preset: Preset, q_weight: float, seed: int = 0, horizon: int | None = None):
    """The diffusion config of a preset; ``horizon``: the resolved DiffusionConfig.horizon
    (default: the preset's request as it stands, -1 included, as runs record it)."""
    from eaq.diffusion.config import PRESETS as DIFFUSION_PRESETS

    base = DIFFUSION_PRESETS.get(preset.diffusion_size)
    if base is None:
        raise ValueError(f"unknown diffusion size {preset.diffusion_size!r}; choose from {sorted(DIFFUSION_PRESETS)}")
    return dataclasses.replace(
        base,
        n_updates=preset.diffusion_steps,
        sample_steps=min(preset.sampler_steps, base.n_diffusion_steps),
        q_weight=q_weight,
        q_target=preset.q_target,
        observations=preset.observations,
        horizon=preset.diffusion_horizon if horizon is None else horizon,
        seed=seed,
    )


# The 'small' diffusion model before 2026-11-26 (runs recorded without their model config).
_LEGACY_SMALL = {"base_channels": 16, "channel_mults": [1, 2, 4]}


def _without_seed(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "seed"}


def _diffusion_record(preset: Preset, legacy: bool = False) -> dict[str, Any]:
    """The diffusion config a preset resolves to (seed aside): recorded with the run, so that a
    preset whose model changed (e.g. a widened size preset) does not reuse finished cells."""
    record = _without_seed(_diffusion_config(preset, preset.q_weight).to_dict())
    if legacy and preset.diffusion_size == "small":
        record.update(_LEGACY_SMALL)
    return record


def _read_run_record(path: Path) -> dict[str, Any]:
    """A run's config.json, with fields added since it was written given the values they had."""
    try:
        return _complete_run_record(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a benchmark run record ({e!r})") from e


def _complete_run_record(old: dict[str, Any]) -> dict[str, Any]:
    if old.get("preset"):
        for k, v in LEGACY_PRESET_DEFAULTS.items():
            old["preset"].setdefault(k, v)
        if "diffusion" not in old:  # recorded before the model was: the preset's model then
            old["diffusion"] = _diffusion_record(Preset(**old["preset"]), legacy=True)
        from eaq.diffusion.config import DiffusionConfig

        # fields added to the model config since: their legacy values, by the config's own rule
        old["diffusion"] = _without_seed(DiffusionConfig.from_dict(old["diffusion"]).to_dict())
    if "offline" in old:
        from eaq.offline import OfflineConfig

        # fields added to the learner config since: their defaults, by the config's own rule
        full = OfflineConfig.from_dict(old["offline"]).to_dict()
        old["offline"] = {k: v for k, v in full.items() if k not in _PER_CELL_OFFLINE}
    if "offline" not in old and old.get("preset") and old.get("benchmark"):
        # recorded before the learner config was: today's defaults but for the CQL weight
        old["offline"] = _offline_record(Preset(**old["preset"]), old["benchmark"].get("learner", "qmix-cql"))
    return old


# Fields of OfflineConfig that differ between the cells of one run (or between a run and its
# extension) by design; every other learner hyper-parameter is fixed for the run.
_PER_CELL_OFFLINE = ("steps", "seed", "segment", "eval_every", "eval_episodes", "final_eval_episodes")


def _offline_record(preset: Preset, learner: str) -> dict[str, Any]:
    """The learner hyper-parameters a run uses (recorded with it, so that a changed default or
    CQL weight does not silently mix with finished cells when the run is resumed or extended)."""
    record = _offline_config(learner, 1, 0, 0, preset.cql_weight, preset.synthetic_cql).to_dict()
    for k in _PER_CELL_OFFLINE:
        record.pop(k)
    return record


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names (section.field) where two run records differ."""
    out = []
    for section in ("preset", "diffusion", "offline"):
        a, b = old.get(section) or {}, new.get(section) or {}
        out += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("benchmark", {}).get("learner") != new.get("benchmark", {}).get("learner"):
        out.append("learner")
    return out


# Preset fields that `eaq benchmark` can set from its command line (tyro's --field-name), and
# the booleans among them that also have a --no-field-name form (the others only switch on).
_PRESET_FLAGS = (
    "q_weight", "q_target", "synthetic_weight", "synthetic_episodes", "offline_steps", "diffusion_steps",
    "qtot_steps", "cql_weight", "observations", "inpaint_prefix", "inpaint_guidance", "relabel_rewards",
    "project_to_env", "inpaint_lengths", "actions_from_motion", "synthetic_oversample",
    "synthetic_match_wins", "synthetic_select_by", "diffusion_horizon", "synthetic_cql", "snap_motion",
)
_ON_OFF_FLAGS = ("actions_from_motion", "synthetic_cql")


def _resume_flags(old_preset: dict[str, Any], new_preset: dict[str, Any]) -> list[str]:
    """The `eaq benchmark` flags that give today's preset an old run's values where they differ
    (none if some differing field cannot be set that way): how to resume a run recorded before a
    preset's defaults changed."""
    flags = []
    for k in sorted(set(old_preset) | set(new_preset)):
        v = old_preset.get(k)
        if v == new_preset.get(k):
            continue
        flag = "--" + k.replace("_", "-")
        if k not in _PRESET_FLAGS or (v is False and k not in _ON_OFF_FLAGS):
            return []
        if isinstance(v, bool):
            flags.append(flag if v else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {_exact(v)}" if isinstance(v, float) else f"{flag} {v}")
    return flags


def _exact(x: float) -> str:
    """The shortest text that reads back as ``x`` (3.0 -> "3", 0.0123456789 unrounded)."""
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def _preset_explains(old: dict[str, Any], learner: str) -> bool:
    """Whether an old run's preset alone reproduces its whole record (model, learner), i.e.
    whether preset flags can resume it; not when, e.g., its learner or the size preset's model
    differ."""
    if (old.get("benchmark") or {}).get("learner") != learner:
        return False
    try:
        preset = Preset(**old["preset"])
        mine = {"diffusion": _diffusion_record(preset), "offline": _offline_record(preset, learner)}
    except (KeyError, TypeError, ValueError):  # a preset today's code cannot build: no flags resume it
        return False
    theirs = {"diffusion": old.get("diffusion"), "offline": old.get("offline")}
    return json.loads(json.dumps(mine, default=str)) == json.loads(json.dumps(theirs, default=str))


def _offline_config(
    learner: str, steps: int, seed: int, eval_episodes: int, cql_weight: float, synthetic_cql: bool = True
):
    from eaq.offline import OfflineConfig

    # One evaluation, after the last update: periodic evaluations (each a compiled rollout)
    # would cost more than the training itself at benchmark sizes on a CPU.
    return OfflineConfig(
        learner=learner,
        steps=steps,
        seed=seed,
        cql_weight=cql_weight,
        cql_on_synthetic=synthetic_cql,  # (OfflineConfig refuses False for a learner without CQL)
        segment=min(250, steps),
        eval_every=steps,
        eval_episodes=0,
        final_eval_episodes=eval_episodes,
    )


class Benchmark:
    """Runs (or resumes) every cell of a BenchmarkConfig."""

    def __init__(self, config: BenchmarkConfig, console: Console | None = None, command: str = ""):
        self.config = config.validate()
        self.preset = resolve_preset(config.preset, dict(config.overrides))
        if not self.preset.synthetic_cql and config.learner != "qmix-cql":
            raise ValueError(f"--no-synthetic-cql changes QMIX+CQL's conservative term; learner {config.learner!r} has none")
        self.console = console or Console()
        self.log = StageLog(self.console)
        self.dir = config.run_dir
        self.command = command
        self._originals: dict[tuple[str, str], EpisodeBatch] = {}
        self._qtots: dict[tuple[str, str], Any] = {}
        self._models: dict[tuple[str, str, str], Path] = {}

    # ---- bookkeeping -------------------------------------------------------------------
    def _record_config(self) -> None:
        record = {
            "benchmark": {
                **{k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("out", "cache_dir")},
                "out": str(self.config.out),
                "cache_dir": None if self.config.cache_dir is None else str(self.config.cache_dir),
            },
            "preset": dataclasses.asdict(self.preset),
            "diffusion": _diffusion_record(self.preset),
            "offline": _offline_record(self.preset, self.config.learner),
        }
        path = self.dir / "config.json"
        if path.exists():
            old = _read_run_record(path)
            self._check_seeding(path, old, record)
            diff = _differing(old, record)
            if diff:
                # (eaq demo has no such flags: its remedy is the new run name below)
                settable = not self.command.startswith("eaq demo") and _preset_explains(old, self.config.learner)
                flags = _resume_flags(old.get("preset") or {}, record["preset"]) if settable else []
                hint = f" (this run used {' '.join(flags)}: pass {'it' if len(flags) == 1 else 'them'} to resume)" if flags else ""
                raise ValueError(
                    f"{path}: run '{self.dir.name}' was started with another preset, diffusion model or learner "
                    f"({', '.join(diff)}){hint}; use --run NAME for a new run (finished cells are only reused "
                    "within one configuration)"
                )
            # Later calls may add maps, qualities, variants or seeds to the same run.
        atomic_write_text(path, json.dumps(record, indent=2, default=str))

    def _check_seeding(self, path: Path, old: dict[str, Any], record: dict[str, Any]) -> None:
        """A run is seeded (--stages-from, --extend-from) when it starts, never on a resume: a
        resume naming another source (or a source for a run that had its own stages) is refused;
        one naming none keeps the recorded source."""
        was = old.get("benchmark") or {}
        for key, flag in (("stages_from", "--stages-from"), ("extend_from", "--extend-from")):
            then, now = was.get(key), getattr(self.config, key)
            if now and now != then:
                start = f"was started from run '{then}'" if then else "records no run it was seeded from"
                raise ValueError(f"{path}: run '{self.dir.name}' {start}; {flag} {now} can only seed a new run: "
                                 f"resume without {flag} {now}, or use --run NAME for a new run")
            record["benchmark"][key] = then

    def cell_file(self, cell: Cell) -> Path:
        return self.dir / "cells" / f"{cell.key}.json"

    def finished_cells(self) -> list[dict[str, Any]]:
        return read_cell_files(self.dir)

    # ---- stages ------------------------------------------------------------------------
    def original(self, m: str, q: str) -> EpisodeBatch:
        if (m, q) not in self._originals:
            from eaq.behaviour.bands import Band
            from eaq.behaviour.collect import collect_dataset
            from eaq.behaviour.config import tiny_config

            band = None if self.config.band is None else Band(q, *self.config.band, sum(self.config.band) / 2)
            with self.log.stage(f"{m} {q}: original dataset ({self.preset.dataset_episodes} episodes)"):
                self._originals[(m, q)] = collect_dataset(
                    m, q, self.preset.dataset_episodes, seed=self.config.data_seed, cache_dir=self.config.cache_dir,
                    config=tiny_config() if self.config.behaviour == "tiny" else None, band=band,
                )
        return self._originals[(m, q)]

    def qtot(self, m: str, q: str):
        if (m, q) not in self._qtots:
            from eaq.offline import qtot_from_params, train_offline

            cfg = _offline_config("qmix-cql", self.preset.qtot_steps, seed=0, eval_episodes=0,
                                  cql_weight=self.preset.cql_weight)
            out = self.dir / "stages" / f"{m}-{q}" / "qtot"
            with self.log.stage(f"{m} {q}: Q_tot (QMIX+CQL, {cfg.steps} updates)"):
                res = train_offline(cfg, [self.original(m, q)], out_dir=out, names=["original"], progress=True)
            self._qtots[(m, q)] = (qtot_from_params(res.spec, res.config, res.params), out)
        return self._qtots[(m, q)]

    def diffusion(self, m: str, q: str, variant: str) -> Path:
        if (m, q, variant) not in self._models:
            self._models[(m, q, variant)] = self._train_diffusion(m, q, variant)
        return self._models[(m, q, variant)]

    def _train_diffusion(self, m: str, q: str, variant: str) -> Path:
        from eaq.diffusion.train import train_diffusion

        q_weight = self.preset.q_weight if variant == "eaq" else 0.0
        original = self.original(m, q)
        horizon = resolve_horizon(self.preset.diffusion_horizon, int(original.lengths().max()))
        cfg = _diffusion_config(self.preset, q_weight, horizon=horizon)
        qtot, qtot_dir = self.qtot(m, q) if q_weight > 0 else (None, None)
        out = self.dir / "stages" / f"{m}-{q}" / f"diffusion-{variant}"
        with self.log.stage(f"{m} {q}: diffusion model for {variant} (eta={q_weight}, {cfg.n_updates} updates)"):
            return train_diffusion(cfg, original, qtot, out, qtot_path=qtot_dir, progress=True)

    def synthetic(self, cell: Cell) -> EpisodeBatch:
        from eaq.diffusion.augment import augment

        out = self.dir / "stages" / f"{cell.map}-{cell.quality}" / f"synthetic-{cell.variant}-s{cell.seed}"
        if (out / "meta.json").exists():
            return load_dataset(out)
        model_dir = self.diffusion(cell.map, cell.quality, cell.variant)
        qtot, _ = self.qtot(cell.map, cell.quality)
        # EAQ^-Q is the ablation without Q_tot: only EAQ's samples are chosen by it
        n, k = self.preset.synthetic_episodes, (self.preset.synthetic_oversample if cell.variant == "eaq" else 1.0)
        wins = ", the data's share of wins" if self.preset.synthetic_match_wins else ""
        by = SELECT_BY_LABEL[self.preset.synthetic_select_by]
        best_of = f" (the best-rated by {by} of {n_candidates(n, k)}{wins})" if k > 1 else ""
        with self.log.stage(f"{cell.key}: sample {n} synthetic episodes{best_of}"):
            batch, report = augment(
                model_dir, self.preset.synthetic_episodes, seed=1000 + cell.seed, real=self.original(cell.map, cell.quality), qtot=qtot,
                relabel=self.preset.relabel_rewards, project=self.preset.project_to_env,
                inpainting=self.preset.inpainting(), actions_from_motion=self.preset.actions_from_motion,
                oversample=k, match_wins=self.preset.synthetic_match_wins and k > 1,
                select_by=self.preset.synthetic_select_by, snap_motion=self.preset.snap_motion,
            )
            # the report first: the dataset's meta.json marks the stage done on a resume
            report.save_json(out.with_name(out.name + "-fidelity.json"))
            save_dataset(batch, out, force=True)
        return batch

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from eaq.offline import train_offline

        t0 = time.perf_counter()
        original = self.original(cell.map, cell.quality)
        datasets, names, weights = [original], ["original"], None
        if cell.variant != "original":
            from eaq.diffusion.augment import NoValidSamplesError

            try:
                synthetic = self.synthetic(cell)
            except NoValidSamplesError as e:
                # No usable synthetic data is a result, not a crash: record it and move on.
                self.console.print(f"[bold red]✗ {cell.key}: {e}[/]")
                result = {**dataclasses.asdict(cell), "status": "no valid synthetic episodes", "error": str(e),
                          "wall_s": time.perf_counter() - t0, "preset": self.config.preset}
                atomic_write_text(self.cell_file(cell), json.dumps(result, indent=2))
                return result
            datasets.append(synthetic)
            names.append(f"synthetic ({cell.variant})")
            w = self.preset.synthetic_weight
            weights = [1.0 - w, w]
        cfg = _offline_config(self.config.learner, self.preset.offline_steps, cell.seed, self.preset.eval_episodes,
                              self.preset.cql_weight, self.preset.synthetic_cql)
        with self.log.stage(f"{cell.key}: {cfg.learner} ({cfg.steps} updates) + evaluation ({cfg.final_eval_episodes} episodes)"):
            res = train_offline(cfg, datasets, weights, out_dir=self.dir / "cells" / cell.key, names=names, progress=True)
        final = res.final
        result = {
            **dataclasses.asdict(cell),
            "status": "ok",
            "learner": cfg.learner,
            "normalized_return": final.normalized_return.mean,
            "win_rate": final.win_rate.mean,
            "return": final.ret.mean,
            "eval_episodes": final.episodes,
            "dataset_normalized_return": float(original.normalized_returns().mean()),
            "dataset_win_rate": float(original.wins().mean()),
            "synthetic_episodes": 0 if len(datasets) == 1 else datasets[1].n_episodes,
            "synthetic_normalized_return": None if len(datasets) == 1 else float(datasets[1].normalized_returns().mean()),
            "wall_s": time.perf_counter() - t0,
            "preset": self.config.preset,
        }
        atomic_write_text(self.cell_file(cell), json.dumps(result, indent=2))
        return result

    # ---- the whole thing ---------------------------------------------------------------
    def _extend_from(self, name: str) -> None:
        """Seeds this run with an earlier run's stages and learner checkpoints (see
        BenchmarkConfig.extend_from). Resuming a learner with more steps is exact: the PRNG key
        is part of its checkpoint, so the result equals training that many steps straight."""
        old = self._seed_from(name, "--extend-from", free={"offline_steps", "eval_episodes"}, same_learner=True)
        if old is None:
            return
        if self.preset.offline_steps < old["preset"]["offline_steps"]:
            raise ValueError(f"--extend-from {name}: offline_steps {self.preset.offline_steps} is below that run's "
                             f"{old['preset']['offline_steps']}; a learner can only be trained further")
        self._copy_stages(name, with_learners=True)
        self.console.print(f"[dim]extending run '{name}': stages and learner checkpoints copied[/]")

    def _stages_from(self, name: str) -> None:
        """Seeds this run with an earlier run's stages only (see BenchmarkConfig.stages_from)."""
        free = {"offline_steps", "eval_episodes", "synthetic_cql", "synthetic_weight"}
        if self._seed_from(name, "--stages-from", free=free, same_learner=False) is None:
            return
        self._copy_stages(name, with_learners=False)
        self.console.print(f"[dim]run '{self.dir.name}': the stages of run '{name}' copied; the learners train anew[/]")

    def _seed_from(self, name: str, flag: str, free: set[str], same_learner: bool) -> dict[str, Any] | None:
        """The earlier run's record after checking that it prepared the same stages (and, with
        ``same_learner``, the same learner) as this run; None when this run is a resume."""
        src_cfg = Path(self.config.out) / name / "config.json"
        if src_cfg.parent.resolve() == self.dir.resolve():
            raise ValueError(f"{flag} {name}: a run cannot be seeded from itself; name a new run with --run")
        if (self.dir / "config.json").exists():
            return None  # already seeded (a resume; _record_config checks it was seeded from `name`)
        if not src_cfg.exists():
            raise FileNotFoundError(f"{src_cfg}: no benchmark run '{name}' to reuse (missing config.json)")
        old = _read_run_record(src_cfg)
        mine = {k: v for k, v in dataclasses.asdict(self.preset).items() if k not in free}
        theirs = {k: v for k, v in old.get("preset", {}).items() if k not in free}
        new = {"preset": mine, "diffusion": _diffusion_record(self.preset)}
        if same_learner:
            new["offline"] = _offline_record(self.preset, self.config.learner)
        else:
            old = {**old, "offline": None}
        diff = _differing({**old, "preset": theirs, "benchmark": {}}, {**new, "benchmark": {}})
        if diff:
            what = "stage or learner settings" if same_learner else "stage settings"
            raise ValueError(f"{src_cfg}: run '{name}' used other {what} ({', '.join(diff)}); {flag} allows only "
                             f"{', '.join(sorted(free))}{'' if same_learner else ' and the learner'} to differ")
        same = ("learner", "data_seed", "behaviour", "band") if same_learner else ("data_seed", "behaviour", "band")
        for k in same:
            recorded = (old.get("benchmark") or {}).get(k)
            if json.dumps(recorded) != json.dumps(getattr(self.config, k)):
                raise ValueError(f"{src_cfg}: run '{name}' used {k}={recorded!r}, this run {getattr(self.config, k)!r}")
        return old

    def _copy_stages(self, name: str, with_learners: bool) -> None:
        import shutil

        src = Path(self.config.out) / name
        if (src / "stages").exists():
            shutil.copytree(src / "stages", self.dir / "stages", dirs_exist_ok=True)
        if not with_learners:
            return
        for cell_dir in sorted(p for p in (src / "cells").glob("*") if p.is_dir()):
            # the directories only (checkpoints): the cell results (.json) are this run's to write
            shutil.copytree(cell_dir, self.dir / "cells" / cell_dir.name, dirs_exist_ok=True)

    def run(self) -> dict[str, Path]:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.config.extend_from:
            self._extend_from(self.config.extend_from)
        if self.config.stages_from:
            self._stages_from(self.config.stages_from)
        self._record_config()
        cells = self.config.cells()
        if self.config.stages_only:
            return self.prepare_stages(cells)
        done = {c.key for c in cells if self.cell_file(c).exists()}
        self.console.rule(f"EAQ benchmark '{self.dir.name}': {len(cells)} cells, {len(done)} already done")
        for i, cell in enumerate(cells, 1):
            if cell.key in done:
                self.console.print(f"[dim]cell {i}/{len(cells)} {cell.key}: done, reused[/]")
                continue
            self.console.rule(f"cell {i}/{len(cells)}: {cell.key}")
            self.run_cell(cell)
        return self.report()

    def prepare_stages(self, cells: list[Cell]) -> dict[str, Path]:
        """Every stage of ``cells`` but the learners (BenchmarkConfig.stages_only); returns the
        stage directories prepared (cached ones are reused as always)."""
        self.console.rule(f"EAQ benchmark '{self.dir.name}': the stages of {len(cells)} cells, no learners")
        from eaq.diffusion.augment import NoValidSamplesError

        paths = {}
        for cell in cells:
            self.original(cell.map, cell.quality)
            if cell.variant == "original":
                continue
            try:
                self.synthetic(cell)
            except NoValidSamplesError as e:  # a result: the resume records it in the cell
                self.console.print(f"[yellow]{cell.key}: no valid synthetic episode: {e}[/]")
            else:
                paths[f"synthetic {cell.key}"] = self.dir / "stages" / f"{cell.map}-{cell.quality}" / f"synthetic-{cell.variant}-s{cell.seed}"
        self.console.print("stages ready; run the same command without --stages-only to train and evaluate the learners")
        return paths

    def report(self) -> dict[str, Path]:
        wanted = {c.key for c in self.config.cells()}
        cells = [c for c in self.finished_cells() if Cell(c["map"], c["quality"], c["variant"], c["seed"]).key in wanted]
        cells = [with_synthetic_fidelity(c, self.dir) for c in cells]
        header = (
            f"EAQ benchmark `{self.dir.name}`, preset `{self.config.preset}`, learner `{self.config.learner}`, "
            f"{self.config.seeds} seed(s); written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
            + (f"\nCommand: `{self.command}`" if self.command else "")
        )
        paths = write_report(cells, self.dir, header, extra={"stage_seconds": self.log.times})
        rows = summarize(cells)
        paths["bars"] = plot_bars(rows, self.dir / "bars.png")
        paths.update(self._return_figures())
        print(table_markdown(rows, header, cells))  # plain: rich would wrap the markdown rows
        return paths

    def _return_figures(self) -> dict[str, Path]:
        from eaq.data.card import plot_returns

        out = {}
        for m in self.config.maps:
            for q in self.config.qualities:
                series = {"original": self.original(m, q)}
                for v in ("eaq-noq", "eaq"):
                    p = self.dir / "stages" / f"{m}-{q}" / f"synthetic-{v}-s0"
                    if (p / "meta.json").exists():
                        series[f"synthetic {v}"] = load_dataset(p)
                if len(series) > 1:
                    out[f"returns-{m}-{q}"] = plot_returns(series, self.dir / f"returns-{m}-{q}.png", title=f"{m} {q}: real vs synthetic returns")
        return out


def run_benchmark(config: BenchmarkConfig, console: Console | None = None, command: str = "") -> dict[str, Path]:
    """Runs or resumes the benchmark; returns the paths of the written report files."""
    return Benchmark(config, console, command).run()
