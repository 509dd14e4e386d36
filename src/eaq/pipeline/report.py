"""Benchmark report: per-cell results -> results.csv, results.json, table.md and figures.

A *cell* is one (map, quality, variant, seed) run; the table aggregates seeds into a mean with a
95 % CI and compares each augmented variant with ``original`` on the same map and quality, both
unpaired (Welch) and paired by seed (the variants of one seed share the dataset and the learner's
seed, so the paired difference is the sharper test). A second table holds the results against the
benchmark's goal: per quality, averaged over maps, EAQ's gain against the paper's margin, EAQ
against EAQ^-Q, and whether Good is degraded.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from eaq.data.card import save_figure
from eaq.data.store import atomic_write_text
from eaq.evaluation.stats import Estimate, mean_ci, paired_diff_ci, welch_diff_ci
from eaq.pipeline.config import LEGACY_PRESET_DEFAULTS

# The paper's reported relative normalized-return gains of EAQ over the original data (SMAC).
PAPER_GAIN_PERCENT = {"medium": 17.3, "poor": 12.9}
VARIANT_NAMES = {"original": "original", "eaq-noq": "EAQ^-Q", "eaq": "EAQ"}
# The goal asks for this many seeds; with fewer, a verdict is indicative only.
GOAL_SEEDS = 5


def group_cells(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        groups[(c["map"], c["quality"], c["variant"])].append(c)
    return groups


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (map, quality, variant): means, CIs and the gain over original."""
    groups = group_cells([c for c in cells if c.get("status", "ok") == "ok"])
    rows = []
    for (m, q, v), cs in sorted(groups.items(), key=lambda kv: (kv[0][0], _qorder(kv[0][1]), _vorder(kv[0][2]))):
        nr = np.array([c["normalized_return"] for c in cs])
        wr = np.array([c["win_rate"] for c in cs])
        row: dict[str, Any] = {
            "map": m,
            "quality": q,
            "variant": v,
            "seeds": sorted(int(c["seed"]) for c in cs),
            "normalized_return": mean_ci(nr).to_dict(),
            "win_rate": mean_ci(100 * wr).to_dict(),
            "dataset_normalized_return": float(np.mean([c.get("dataset_normalized_return", math.nan) for c in cs])),
        }
        if v != "original":
            for k in ("synthetic_normalized_return", "synthetic_mean_length", "synthetic_validity_rate"):
                vals = [c[k] for c in cs if c.get(k) is not None]
                row[k] = float(np.mean(vals)) if vals else math.nan
        base = groups.get((m, q, "original"))
        if v != "original" and base:
            b = np.array([c["normalized_return"] for c in base])
            d = welch_diff_ci(nr, b)
            row["gain_points"] = d.to_dict()
            row["gain_percent"] = 100 * d.mean / b.mean() if b.mean() != 0 else math.nan
            row["significant"] = _excludes_zero(d)
            paired = _paired_by_seed(cs, base)
            if paired is not None:
                row["paired_gain_points"] = paired.to_dict()
                row["paired_significant"] = _excludes_zero(paired)
        noq = groups.get((m, q, "eaq-noq"))
        if v == "eaq" and noq and (vs_noq := _paired_by_seed(cs, noq)) is not None:
            row["vs_noq_points"] = vs_noq.to_dict()
        rows.append(row)
    return rows


def _excludes_zero(e: Estimate) -> bool:
    return bool(e.lo > 0 or e.hi < 0) if not math.isnan(e.lo) else False


def _by_seed(cells: list[dict[str, Any]]) -> dict[int, float]:
    return {int(c["seed"]): float(c["normalized_return"]) for c in cells}


def _paired_by_seed(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Estimate | None:
    """a - b over the seeds both have (None when they share none)."""
    ra, rb = _by_seed(a), _by_seed(b)
    seeds = sorted(ra.keys() & rb.keys())
    if not seeds:
        return None
    return paired_diff_ci([ra[s] for s in seeds], [rb[s] for s in seeds])


def _mean_over_maps(per_map: list[dict[int, float]], seeds: list[int]) -> np.ndarray:
    """[len(seeds)]: each seed's normalized return averaged over maps."""
    return np.array([np.mean([d[s] for d in per_map]) for s in seeds])


def goal_check(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark's goal, per quality, averaged over the maps that have original and EAQ.

    Per seed (those common to all such maps), the EAQ - original and EAQ - EAQ^-Q differences are
    averaged over maps (EAQ - EAQ^-Q over those of the maps that have EAQ^-Q, which the row
    names); the CI is over seeds. The relative gain is of the mean over maps and seeds.
    Medium and Poor meet the goal when the gain reaches the paper's margin and the paired CI is
    above 0; Good when EAQ is not significantly below original. Failed cells (an EAQ variant that
    made no valid episode) have no return to average: they are listed in the row, and a failed EAQ
    cell means the goal is not met (leaving it out would favour EAQ).
    """
    groups = group_cells([c for c in cells if c.get("status", "ok") == "ok"])
    failed = [c for c in cells if c.get("status", "ok") != "ok"]
    out = []
    for q in sorted({k[1] for k in groups} | {c["quality"] for c in failed}, key=_qorder):
        q_failed = [c for c in failed if c["quality"] == q]
        failed_eaq = any(c["variant"] == "eaq" for c in q_failed)
        maps = sorted(m for (m, qq, v) in groups if qq == q and v == "eaq" and (m, q, "original") in groups)
        per_map = {v: [_by_seed(groups.get((m, q, v), [])) for m in maps] for v in ("original", "eaq-noq", "eaq")}
        seeds = sorted(set.intersection(*(set(d) for v in ("original", "eaq") for d in per_map[v]))) if maps else []
        if not seeds:
            if failed_eaq:  # nothing to average, but EAQ failed here: a row that says so
                out.append({"quality": q, "maps": maps, "seeds": [], "met": False, "enough_seeds": False,
                            "failed_cells": _failed_names(q_failed)})
            continue
        eaq, orig = _mean_over_maps(per_map["eaq"], seeds), _mean_over_maps(per_map["original"], seeds)
        gain = paired_diff_ci(eaq, orig)
        pct = 100 * gain.mean / orig.mean() if orig.mean() != 0 else math.nan
        row: dict[str, Any] = {"quality": q, "maps": maps, "seeds": seeds, "gain_points": gain.to_dict(), "gain_percent": pct}
        # EAQ - EAQ^-Q over the maps of the row that have EAQ^-Q (the ablation may be run on fewer)
        noq_maps = [m for m in maps if (m, q, "eaq-noq") in groups]
        noq = {v: [_by_seed(groups[(m, q, v)]) for m in noq_maps] for v in ("eaq", "eaq-noq")}
        noq_seeds = sorted(set.intersection(*(set(d) for v in noq for d in noq[v]))) if noq_maps else []
        if noq_seeds:
            vs_noq = paired_diff_ci(_mean_over_maps(noq["eaq"], noq_seeds), _mean_over_maps(noq["eaq-noq"], noq_seeds))
            row["vs_noq_points"] = vs_noq.to_dict()
            row["vs_noq_significant"] = _excludes_zero(vs_noq)
            row["vs_noq_maps"], row["vs_noq_seeds"] = noq_maps, noq_seeds
        paper = PAPER_GAIN_PERCENT.get(q)
        if paper is not None:
            row["paper_gain_percent"] = paper
            row["met"] = bool(pct >= paper and gain.lo > 0)
        else:  # Good: not degraded (with one seed, no interval: the mean decides)
            row["met"] = bool(gain.mean >= 0 or gain.hi >= 0)
        row["enough_seeds"] = len(seeds) >= GOAL_SEEDS
        if q_failed:
            row["failed_cells"] = _failed_names(q_failed)
            row["met"] = row["met"] and not failed_eaq
        out.append(row)
    return out


def _failed_names(cells: list[dict[str, Any]]) -> list[str]:
    return [f"{c['map']}-{c['variant']}-s{c['seed']}" for c in cells]


def goal_markdown(goal: list[dict[str, Any]]) -> str:
    """The goal table (empty when no quality has both original and EAQ)."""
    if not goal:
        return ""
    out = io.StringIO()
    out.write(
        "\n### Against the goal\n\n"
        "| quality | maps | seeds | EAQ − original (paired, points) | gain % | goal | met? | EAQ − EAQ^-Q (paired, points) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    for g in goal:
        paper = g.get("paper_gain_percent")
        target = f">= +{paper} %, CI above 0" if paper is not None else "not significantly below 0"
        met = ("yes" if g["met"] else "no") + ("" if g["enough_seeds"] else f" (< {GOAL_SEEDS} seeds: indicative)")
        if g.get("failed_cells"):
            met += f" ({len(g['failed_cells'])} failed cell(s) without a return: {', '.join(g['failed_cells'])})"
        noq = g.get("vs_noq_points")
        noq_txt = "—"
        if noq is not None:
            order = "EAQ >= EAQ^-Q" if noq["mean"] >= 0 else "EAQ < EAQ^-Q"
            noq_txt = f"{_fmt(noq)} ({order}, {'significant' if g['vs_noq_significant'] else 'n.s.'})"
            if g["vs_noq_maps"] != g["maps"] or g["vs_noq_seeds"] != g["seeds"]:
                noq_txt += f"; over {', '.join(g['vs_noq_maps'])}, {len(g['vs_noq_seeds'])} seeds"
        gain = _fmt(g["gain_points"]) if "gain_points" in g else "— (no finished EAQ cell to pair)"
        pct = f"{g['gain_percent']:+.1f}" if "gain_percent" in g else "—"
        out.write(
            f"| {g['quality']} | {', '.join(g['maps']) or '—'} | {len(g['seeds'])} | {gain} "
            f"| {pct} | {target} | {met} | {noq_txt} |\n"
        )
    out.write(
        "\nThe goal: EAQ beats original on Medium and Poor by at least the paper's margins, EAQ >= EAQ^-Q, "
        f"and Good is not degraded, averaged over the maps with >= {GOAL_SEEDS} seeds. Differences are "
        "per seed, averaged over maps, with a 95 % t interval over seeds. A verdict speaks only for the "
        "maps in its row (the full benchmark has 3m, 2s3z, 5m_vs_6m and 8m).\n"
    )
    return out.getvalue()


def _qorder(q: str) -> int:
    return {"poor": 0, "medium": 1, "good": 2}.get(q, 3)


def _vorder(v: str) -> int:
    return {"original": 0, "eaq-noq": 1, "eaq": 2}.get(v, 3)


def _fmt(e: dict[str, float]) -> str:
    if e["n"] < 2 or math.isnan(e["lo"]):
        return f"{e['mean']:.1f}"
    return f"{e['mean']:.1f} ± {(e['hi'] - e['lo']) / 2:.1f}"


def _synthetic(r: dict[str, Any]) -> str:
    if r["variant"] == "original":
        return "—"
    vals = [r.get(k, math.nan) for k in ("synthetic_normalized_return", "synthetic_mean_length", "synthetic_validity_rate")]
    if all(math.isnan(v) for v in vals):
        return "n/a"
    return f"{vals[0]:.1f} / {vals[1]:.1f} / {100 * vals[2]:.0f}"


def table_markdown(rows: list[dict[str, Any]], header: str = "", cells: list[dict[str, Any]] | None = None) -> str:
    """The paper-style table, with the paper's gains beside ours and significance spelled out."""
    out = io.StringIO()
    if header:
        out.write(header.rstrip() + "\n\n")
    out.write(
        "| map | quality | variant | seeds | normalized return | win rate % | gain (points, Welch) | gain (points, paired) | gain % | paper gain % | significant? (Welch / paired) | data return | synthetic return / length / valid % |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    for r in rows:
        gain = r.get("gain_points")
        paper = PAPER_GAIN_PERCENT.get(r["quality"]) if r["variant"] == "eaq" else None
        pct = f"{r['gain_percent']:+.1f}" if gain and not math.isnan(r["gain_percent"]) else "—"
        paired = r.get("paired_gain_points")
        sig = "—"
        if gain:
            sig = ("yes" if r["significant"] else "no") + " / " + (("yes" if r["paired_significant"] else "no") if paired else "—")
        out.write(
            f"| {r['map']} | {r['quality']} | {VARIANT_NAMES.get(r['variant'], r['variant'])} | {len(r['seeds'])} "
            f"| {_fmt(r['normalized_return'])} | {_fmt(r['win_rate'])} "
            f"| {_fmt(gain) if gain else '—'} | {_fmt(paired) if paired else '—'} "
            f"| {pct} | {f'+{paper}' if paper else '—'} | {sig} "
            f"| {r['dataset_normalized_return']:.1f} | {_synthetic(r)} |\n"
        )
    failed = [c for c in (cells or []) if c.get("status", "ok") != "ok"]
    for c in failed:
        out.write(f"\n**Failed cell** {c['map']} {c['quality']} {VARIANT_NAMES.get(c['variant'], c['variant'])} seed {c['seed']}: {c.get('status')} ({c.get('error', '')})\n")
    out.write(
        "\nMeans over seeds with 95 % confidence intervals (Student t). Gain = variant − original in "
        "normalized-return points, unpaired (Welch 95 % CI) and paired by seed (the variants of a seed "
        "share the dataset and the learner's seed; t CI of the per-seed differences), and relative to "
        "original in percent; 'significant' means the CI of the difference excludes 0. The paper's gains are for EAQ on SMAC (StarCraft II), "
        "not SMAX. 'data return' is the original dataset's mean normalized return; the last column "
        "describes the synthetic episodes the learner saw (mean normalized return, mean length in steps, "
        "share of sampled episodes that passed the validity filter).\n"
    )
    out.write(goal_markdown(goal_check(cells or [])))
    return out.getvalue()


def with_synthetic_fidelity(cell: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """``cell`` plus its synthetic data's validity rate, mean length and return, read from the
    fidelity report the run saved beside that data, so a table can never hide degenerate
    synthetic episodes (unchanged for ``original`` cells or when no report exists)."""
    f = (Path(run_dir) / "stages" / f"{cell['map']}-{cell['quality']}"
         / f"synthetic-{cell['variant']}-s{cell['seed']}-fidelity.json")
    if cell["variant"] == "original" or not f.exists():
        return cell
    try:
        rep = json.loads(f.read_text())
        return {
            **cell,
            "synthetic_validity_rate": rep["validity_rate"],
            "synthetic_mean_length": rep["lengths"]["synthetic"]["mean"],
            "synthetic_normalized_return": rep["normalized_returns"]["synthetic"]["mean"],
        }
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{f}: not a fidelity report ({e!r})") from e


def check_cell(cell: dict[str, Any]) -> None:
    """Raises KeyError/ValueError/TypeError unless ``cell`` has what a table reads from it."""
    int(cell["seed"]), cell["map"], cell["quality"], cell["variant"]
    if cell.get("status", "ok") == "ok":
        float(cell["normalized_return"]), float(cell["win_rate"])


def read_cell_files(run_dir: Path) -> list[dict[str, Any]]:
    """The cell results a benchmark run has written (``cells/*.json``), each checked."""
    cells = []
    for f in sorted((Path(run_dir) / "cells").glob("*.json")):
        try:
            cell = json.loads(f.read_text())
            check_cell(cell)
        except (KeyError, TypeError, ValueError) as e:  # (json.JSONDecodeError is a ValueError)
            raise ValueError(f"{f}: not a benchmark cell ({e!r}); delete it to recompute the cell") from e
        cells.append(cell)
    return cells


def _finished_cells(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Every finished cell of a run and how many of them its last report (``results.json``)
    leaves out. A run's report covers the cells of its last command only (e.g. EAQ^-Q added for
    two seeds later), so merging reads the cell files, which every command keeps."""
    results = run_dir / "results.json"
    try:
        reported = json.loads(results.read_text())["cells"] if results.exists() else []
        for c in reported:
            check_cell(c)
        keys = {(c["map"], c["quality"], c["variant"], int(c["seed"])) for c in reported}
    except (KeyError, TypeError, ValueError) as e:  # (json.JSONDecodeError is a ValueError)
        raise ValueError(f"{results}: not a benchmark report ({e!r})") from e
    files = sorted((run_dir / "cells").glob("*.json"))
    if not files:
        if not results.exists():
            raise FileNotFoundError(f"{results} not found: is {run_dir} a benchmark run that has written its report? "
                                    "(re-running its eaq benchmark command writes it)")
        return reported, 0
    # (with_synthetic_fidelity names a malformed fidelity report itself)
    cells = [with_synthetic_fidelity(c, run_dir) for c in read_cell_files(run_dir)]
    return cells, sum((c["map"], c["quality"], c["variant"], int(c["seed"])) not in keys for c in cells)


def merge_runs(run_dirs: list[str | Path]) -> tuple[list[dict[str, Any]], str]:
    """The finished cells of several benchmark runs as one set, and a header naming each run.

    Each run needs its ``config.json`` and its cells (``cells/*.json``, or the ``results.json``
    of its report). A cell (map, quality, variant, seed) may come from one run only, and the
    cells of one map and quality from runs of one learner (kind, updates, CQL weight) and one
    dataset (data seed, behaviour, band). The header
    lists every run's learner and the preset fields in which it differs from the first run's,
    since a merged table is only as comparable as its runs' settings, and how many cells its last
    report did not show.
    """
    cells: list[dict[str, Any]] = []
    origin: dict[tuple, str] = {}
    lines = []
    first_preset: dict[str, Any] | None = None
    learners: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)  # (map, quality) -> {learner and data: run}
    for d in map(Path, run_dirs):
        config = d / "config.json"
        run_cells, unreported = _finished_cells(d)
        if not config.exists():
            raise FileNotFoundError(f"{config} not found: is {d} a benchmark run?")
        try:
            cfg = json.loads(config.read_text())
            preset, learner = dict(cfg["preset"]), cfg["benchmark"]["learner"]
            for k, v in LEGACY_PRESET_DEFAULTS.items():  # fields added since the run was recorded
                preset.setdefault(k, v)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{config}: not a benchmark configuration ({e!r})") from e
        # The cells of one map and quality are compared with each other (paired by seed): they must
        # come from one learner trained alike on one dataset, or a difference would measure those.
        bench = cfg.get("benchmark") or {}
        trained = (f"{learner}, {preset.get('offline_steps')} updates, CQL weight {preset.get('cql_weight')}, data seed "
                   f"{bench.get('data_seed', 0)}, behaviour {bench.get('behaviour', 'default')}, band {bench.get('band')}")
        for m, q in sorted({(c["map"], c["quality"]) for c in run_cells}):
            other = next(((t, r) for t, r in learners[(m, q)].items() if t != trained), None)
            if other is not None:
                raise ValueError(f"{m} {q}: cells from {other[1]} ({other[0]}) and {d} ({trained}) would be compared "
                                 "across learners or datasets; merge runs of one learner, training and dataset")
            learners[(m, q)].setdefault(trained, str(d))
        for c in run_cells:
            key = (c["map"], c["quality"], c["variant"], int(c["seed"]))
            if key in origin:
                raise ValueError(f"cell {'-'.join(key[:3])}-s{key[3]} is in both {origin[key]} and {d}; "
                                 "merge runs that cover different cells")
            origin[key] = str(d)
            cells.append({**c, "run": d.name})
        if first_preset is None:
            first_preset, diff = preset, "reference settings"
        else:
            changed = {k: preset.get(k) for k in set(preset) | set(first_preset) if first_preset.get(k) != preset.get(k)}
            diff = ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "same settings"
        if unreported:
            diff += f"; {unreported} finished cell(s) beyond its last report included"
        qualities = sorted({c["quality"] for c in run_cells}, key=_qorder)
        lines.append(f"- `{d.name}` ({learner}; {', '.join(qualities) or 'no cells'}): {diff}")
    header = "Merged benchmark runs (preset fields that differ from the first run's):\n" + "\n".join(lines)
    return cells, header


def write_report(cells: list[dict[str, Any]], out_dir: str | Path, header: str = "", extra: dict | None = None) -> dict[str, Path]:
    """Writes results.csv (one line per cell), results.json (cells + summary) and table.md."""
    out_dir = Path(out_dir)
    rows = summarize(cells)
    buf = io.StringIO()
    keys = ["map", "quality", "variant", "seed", "normalized_return", "win_rate", "return", "dataset_normalized_return", "synthetic_episodes", "wall_s"]
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for c in sorted(cells, key=lambda c: (c["map"], _qorder(c["quality"]), _vorder(c["variant"]), c["seed"])):
        w.writerow(c)
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    atomic_write_text(out_dir / "results.json", json.dumps({"summary": rows, "goal": goal_check(cells), "cells": cells, **(extra or {})}, indent=2, default=str))
    atomic_write_text(out_dir / "table.md", table_markdown(rows, header, cells))
    return {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "table": out_dir / "table.md"}


def plot_bars(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Grouped bars (variant within map/quality) of normalized return with 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    groups = sorted({(r["map"], r["quality"]) for r in rows}, key=lambda g: (g[0], _qorder(g[1])))
    variants = sorted({r["variant"] for r in rows}, key=_vorder)
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups)), 4))
    for i, v in enumerate(variants):
        xs, ms, errs = [], [], []
        for j, g in enumerate(groups):
            r = next((r for r in rows if (r["map"], r["quality"], r["variant"]) == (*g, v)), None)
            if r is None:
                continue
            e = r["normalized_return"]
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ms.append(e["mean"])
            errs.append(0 if math.isnan(e["lo"]) else (e["hi"] - e["lo"]) / 2)
        ax.bar(xs, ms, width, yerr=errs, capsize=3, label=VARIANT_NAMES.get(v, v))
    ax.set_xticks(range(len(groups)), [f"{m}\n{q}" for m, q in groups])
    ax.set_ylabel("normalized return (%)")
    ax.set_title("offline learner on original vs augmented data (95 % CI)", fontsize=10)
    ax.legend()
    return save_figure(fig, out)
