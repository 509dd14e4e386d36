"""The benchmark end to end on a tiny configuration: real stages, resumable, honest report."""

from __future__ import annotations

import json

import pytest

from eaq.pipeline import Benchmark, BenchmarkConfig, run_benchmark

TINY = (
    ("dataset_episodes", 24),
    ("qtot_steps", 20),
    ("diffusion_steps", 20),
    ("diffusion_size", "tiny"),
    ("sampler_steps", 4),
    ("synthetic_episodes", 12),
    ("offline_steps", 20),
    ("eval_episodes", 16),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cfg = BenchmarkConfig(
        maps=("3m",), qualities=("poor",), seeds=1, preset="smoke", overrides=TINY,
        out=root / "results", cache_dir=root / "cache", behaviour="tiny", band=(0.0, 100.0),
    )
    paths = run_benchmark(cfg)
    return cfg, paths


def test_writes_every_report_file(tiny_run):
    cfg, paths = tiny_run
    for key in ("csv", "json", "table", "bars", "returns-3m-poor"):
        assert paths[key].exists(), key
    assert paths["bars"].read_bytes()[:4] == b"\x89PNG"
    table = paths["table"].read_text()
    assert "EAQ^-Q" in table and "+12.9" in table  # the paper's Poor gain sits beside ours


def test_cells_hold_real_measurements(tiny_run):
    cfg, paths = tiny_run
    data = json.loads(paths["json"].read_text())
    cells = {c["variant"]: c for c in data["cells"]}
    assert set(cells) == {"original", "eaq-noq", "eaq"}
    assert cells["original"]["synthetic_episodes"] == 0
    for v in ("eaq-noq", "eaq"):
        assert cells[v]["synthetic_episodes"] == 12
    for c in cells.values():
        assert 0.0 <= c["normalized_return"] <= 100.0
        assert c["eval_episodes"] == 16
    summary = {r["variant"]: r for r in data["summary"]}
    assert "gain_points" in summary["eaq"] and "gain_points" not in summary["original"]
    # the resolved configuration is saved beside the results
    saved = json.loads((cfg.run_dir / "config.json").read_text())
    assert saved["preset"]["synthetic_episodes"] == 12


def test_rerun_resumes_without_recomputing(tiny_run):
    cfg, paths = tiny_run
    cell_files = sorted((cfg.run_dir / "cells").glob("*.json"))
    before = {f: f.stat().st_mtime_ns for f in cell_files}
    bench = Benchmark(cfg)
    bench.run()
    assert {f: f.stat().st_mtime_ns for f in cell_files} == before
    # only the (cached) original dataset was touched to draw the figures; nothing trained
    assert all("updates" not in stage for stage in bench.log.times), bench.log.times


def test_stages_only_prepares_the_synthetic_data_and_a_resume_trains_only_learners(tiny_run):
    """The GPU-then-CPU split: --stages-only trains the Q_tot and diffusion models and samples,
    writes no cell; the same run without it trains the learners and reuses every stage. (This
    run also keeps the best-rated half of twice the samples: --synthetic-oversample 2.)"""
    import dataclasses

    from eaq.data.store import load_dataset

    cfg, _ = tiny_run
    staged = dataclasses.replace(cfg, run="staged", variants=("original", "eaq"), stages_only=True,
                                 overrides=(*cfg.overrides, ("synthetic_oversample", 2.0)))
    bench = Benchmark(staged)
    paths = bench.run()
    assert list(paths) == ["synthetic 3m-poor-eaq-s0"] and (paths["synthetic 3m-poor-eaq-s0"] / "meta.json").exists()
    chosen = load_dataset(paths["synthetic 3m-poor-eaq-s0"]).meta.generator["selection"]
    assert chosen["n_kept"] == 12 and 12 < chosen["n_candidates"] <= 24 and chosen["oversample"] == 2.0
    assert any("best-rated by Q_tot of 24" in stage for stage in bench.log.times), bench.log.times
    assert not list((staged.run_dir / "cells").glob("*.json"))
    assert any("diffusion model for eaq" in stage for stage in bench.log.times)
    bench = Benchmark(dataclasses.replace(staged, stages_only=False))
    bench.run()
    assert {f.stem for f in (staged.run_dir / "cells").glob("*.json")} == {"3m-poor-original-s0", "3m-poor-eaq-s0"}
    assert not any("diffusion" in stage or "sample" in stage for stage in bench.log.times), bench.log.times


def test_changing_preset_needs_a_new_run(tiny_run):
    cfg, _ = tiny_run
    other = BenchmarkConfig(**{**cfg.__dict__, "overrides": (*TINY, ("offline_steps", 21))})
    with pytest.raises(ValueError, match="another preset"):
        run_benchmark(other)


def test_extend_from_continues_the_learners_and_reuses_every_stage(tiny_run):
    cfg, _ = tiny_run
    longer = (*TINY[:-2], ("offline_steps", 26), ("eval_episodes", 16))
    ext = BenchmarkConfig(**{**cfg.__dict__, "overrides": longer, "run": "longer", "extend_from": cfg.run_dir.name})
    bench = Benchmark(ext)
    bench.run()
    # only the learners trained (6 more updates each); Q_tot, diffusion and sampling were reused
    trained = [s for s in bench.log.times if "updates" in s]
    assert trained and all("qmix-cql (26 updates)" in s for s in trained), bench.log.times
    steps = [r.split(",")[0] for r in (ext.run_dir / "cells" / "3m-poor-eaq-s0" / "curve.csv").read_text().splitlines()[1:]]
    assert steps == ["20", "26"]  # the earlier run's evaluation, then the continued one
    cell = json.loads((ext.run_dir / "cells" / "3m-poor-eaq-s0.json").read_text())
    assert cell["status"] == "ok"
    # the earlier run is untouched
    assert json.loads((cfg.run_dir / "config.json").read_text())["preset"]["offline_steps"] == 20
    # anything but the learners' length is refused, as is training for fewer steps
    for bad, match in (((*TINY, ("diffusion_steps", 21)), "diffusion_steps"), ((*TINY[:-2], ("offline_steps", 10), TINY[-1]), "below"),
                       ((*TINY, ("cql_weight", 3.0)), "offline.cql_weight")):
        with pytest.raises(ValueError, match=match):
            run_benchmark(BenchmarkConfig(**{**cfg.__dict__, "overrides": bad, "run": "bad", "extend_from": cfg.run_dir.name}))
    with pytest.raises(FileNotFoundError, match="no benchmark run 'nope'"):
        run_benchmark(BenchmarkConfig(**{**cfg.__dict__, "run": "x", "extend_from": "nope"}))


def test_stages_from_trains_new_learners_on_an_earlier_runs_samples(tiny_run):
    """--stages-from: a learner-side ablation (here CQL on real episodes only) reuses the Q_tot,
    diffusion models and samples of an earlier run and trains only the learners."""
    cfg, _ = tiny_run
    realcql = (*TINY, ("synthetic_cql", False))
    new = BenchmarkConfig(**{**cfg.__dict__, "overrides": realcql, "run": "realcql", "stages_from": cfg.run_dir.name})
    bench = Benchmark(new)
    bench.run()
    assert not any(w in s for s in bench.log.times for w in ("Q_tot", "diffusion", "sample")), bench.log.times
    assert sum("qmix-cql (20 updates)" in s for s in bench.log.times) == 3, bench.log.times
    assert json.loads((new.run_dir / "config.json").read_text())["offline"]["cql_on_synthetic"] is False
    assert json.loads((cfg.run_dir / "config.json").read_text())["offline"]["cql_on_synthetic"] is True
    assert {f.stem for f in (new.run_dir / "cells").glob("*.json")} == {f"3m-poor-{v}-s0" for v in ("original", "eaq-noq", "eaq")}
    # a stage setting may not differ, and the two ways of seeding a run exclude each other
    with pytest.raises(ValueError, match="preset.diffusion_steps"):
        run_benchmark(BenchmarkConfig(**{**cfg.__dict__, "overrides": (*realcql, ("diffusion_steps", 21)), "run": "bad2",
                                         "stages_from": cfg.run_dir.name}))
    with pytest.raises(ValueError, match="choose one"):
        BenchmarkConfig(**{**cfg.__dict__, "run": "bad3", "stages_from": cfg.run_dir.name, "extend_from": cfg.run_dir.name}).validate()
    # a run is seeded when it starts: a resume may not name another source, nor one for a run
    # that began with stages of its own; a resume without the flag keeps the recorded source
    with pytest.raises(ValueError, match=f"was started from run '{cfg.run_dir.name}'; --stages-from nope can only seed a new run"):
        run_benchmark(BenchmarkConfig(**{**new.__dict__, "stages_from": "nope"}))
    with pytest.raises(ValueError, match="records no run it was seeded from; --stages-from realcql .*resume without"):
        run_benchmark(BenchmarkConfig(**{**cfg.__dict__, "stages_from": "realcql"}))
    Benchmark(BenchmarkConfig(**{**new.__dict__, "stages_from": None}))._record_config()
    assert json.loads((new.run_dir / "config.json").read_text())["benchmark"]["stages_from"] == cfg.run_dir.name


def test_runs_saved_before_q_target_resume_as_episode(tmp_path):
    """An old run's config.json has no q_target: it was trained with the whole-episode Q loss,
    so only a config asking for "episode" may resume it (no training happens here)."""
    import dataclasses

    base = dict(maps=("3m",), qualities=("poor",), preset="smoke", overrides=TINY, out=tmp_path)
    Benchmark(BenchmarkConfig(**base, run="old"))._record_config()
    path = tmp_path / "old" / "config.json"
    record = json.loads(path.read_text())
    del record["preset"]["q_target"]  # as written before the field existed
    del record["preset"]["relabel_rewards"]  # (added later still: read as False)
    del record["preset"]["actions_from_motion"]  # (and later: read as False)
    for k in ("inpaint_lengths", "inpaint_prefix", "inpaint_guidance"):
        del record["preset"][k]  # (and later still: no inpainting)
    for k in ("diffusion_horizon", "synthetic_cql", "snap_motion"):
        del record["preset"][k]  # (sessions 14-15: the time limit, CQL on every episode, no snapping)
    del record["offline"]["cql_on_synthetic"]
    del record["diffusion"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="another preset"):
        Benchmark(BenchmarkConfig(**base, run="old"))._record_config()
    # (today's presets read actions from motion and copy a real first step: the old run did not)
    legacy = (*TINY, ("q_target", "episode"), ("actions_from_motion", False), ("inpaint_prefix", 0.0))
    episode = BenchmarkConfig(**{**base, "overrides": legacy}, run="old")
    Benchmark(episode)._record_config()
    assert json.loads(path.read_text())["preset"]["q_target"] == "episode"
    assert dataclasses.asdict(Benchmark(episode).preset)["q_target"] == "episode"
    for change in (("relabel_rewards", True), ("inpaint_lengths", True), ("actions_from_motion", True),
                   ("synthetic_cql", False), ("diffusion_horizon", -1), ("snap_motion", True)):
        changed = BenchmarkConfig(**{**base, "overrides": (*legacy, change)}, run="old")
        with pytest.raises(ValueError, match="another preset"):
            Benchmark(changed)._record_config()


def test_runs_recorded_before_the_cql_weight_resume_only_with_weight_3(tmp_path):
    """Runs recorded before 2026-11-27 stored neither the CQL weight nor the learner config and
    used weight 3; the default is now 0.3, so resuming one with the default must be refused (its
    finished cells would silently mix weights) and with --cql-weight 3 it must resume."""
    from eaq.offline import OfflineConfig

    base = dict(maps=("3m",), qualities=("poor",), preset="smoke", overrides=TINY, out=tmp_path, run="old")
    Benchmark(BenchmarkConfig(**base))._record_config()
    path = tmp_path / "old" / "config.json"
    record = json.loads(path.read_text())
    assert record["preset"]["cql_weight"] == 0.3 == record["offline"]["cql_weight"]
    assert record["offline"]["lr"] == OfflineConfig().lr and "steps" not in record["offline"]
    del record["preset"]["cql_weight"], record["offline"]  # as written before 2026-11-27
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"preset.cql_weight, offline.cql_weight\) \(this run used --cql-weight 3: pass it"):
        Benchmark(BenchmarkConfig(**base))._record_config()
    weight3 = BenchmarkConfig(**{**base, "overrides": (*TINY, ("cql_weight", 3.0))})
    Benchmark(weight3)._record_config()  # resumes, and now records what it uses
    assert json.loads(path.read_text())["offline"]["cql_weight"] == 3.0
    # a learner hyper-parameter that changes default later is caught too
    record = json.loads(path.read_text())
    record["offline"]["lr"] = 1e-3
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"\(offline.lr\)"):
        Benchmark(weight3)._record_config()


def test_a_run_of_older_preset_defaults_is_refused_with_the_flags_that_resume_it(tmp_path):
    """The presets' defaults changed on 2026-11-27 (motion channels, actions from motion, real
    starts, eta 0.03): an older run must not be resumed silently with the new ones, and the error
    must say which flags reproduce its settings."""
    import tyro

    from eaq.cli.benchmark import Benchmark as BenchmarkArgs

    def record(*flags):
        args = tyro.cli(BenchmarkArgs, args=["--preset", "smoke", "--maps", "3m", "--out", str(tmp_path), "--run", "old", *flags])
        Benchmark(args.config())._record_config()

    old = ("--q-weight", "0.0123456789", "--observations", "generated", "--no-actions-from-motion", "--inpaint-prefix", "0")
    record(*old)
    with pytest.raises(ValueError, match="this run used --no-actions-from-motion --inpaint-prefix 0 --observations generated "
                                         "--q-weight 0.0123456789: pass them to resume"):
        record()
    record(*old)  # resumes
    with pytest.raises(ValueError, match=r"learner\); use --run NAME") as refused:
        record("--learner", "bc")  # no preset flag resumes a run of another learner
    assert "this run used" not in str(refused.value)
    demo = BenchmarkConfig(maps=("3m",), qualities=("poor",), preset="smoke", out=tmp_path, run="old")
    with pytest.raises(ValueError, match=r"\(preset\.[^;]*\); use --run NAME") as refused:
        Benchmark(demo, command="eaq demo --run old")._record_config()  # the demo has no flags to suggest
    assert "this run used" not in str(refused.value)


def test_runs_of_the_narrow_small_model_are_not_resumed_with_the_wide_one(tmp_path):
    """The 'small' diffusion preset was widened on 2026-11-26 without its name changing: a run
    recorded before (no model config in config.json) must not reuse its cells with the new model."""
    base = dict(maps=("3m",), qualities=("poor",), preset="smoke", out=tmp_path, run="old")
    Benchmark(BenchmarkConfig(**base))._record_config()
    path = tmp_path / "old" / "config.json"
    record = json.loads(path.read_text())
    assert record["diffusion"]["base_channels"] == 64
    Benchmark(BenchmarkConfig(**base))._record_config()  # the same configuration resumes
    del record["diffusion"]  # as written before the model config was recorded
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="diffusion model"):
        Benchmark(BenchmarkConfig(**base))._record_config()


def test_bad_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="valid maps"):
        BenchmarkConfig(maps=("3z",)).validate()
    with pytest.raises(ValueError, match="quality"):
        BenchmarkConfig(qualities=("excellent",)).validate()
    with pytest.raises(ValueError, match="variants lists eaq, eaq: name each once"):
        BenchmarkConfig(variants=("eaq", "eaq")).validate()


def test_malformed_run_files_are_named(tmp_path):
    base = dict(maps=("3m",), qualities=("poor",), preset="smoke", overrides=TINY, out=tmp_path, run="r")
    bench = Benchmark(BenchmarkConfig(**base))
    bench._record_config()
    (tmp_path / "r" / "cells").mkdir()
    for bad in ('{"map": "3m"}', '{"map": "3m", "quality": "poor", "variant": "eaq", "seed": 0, "status": "ok"}'):
        (tmp_path / "r" / "cells" / "3m-poor-eaq-s0.json").write_text(bad)
        with pytest.raises(ValueError, match=r"3m-poor-eaq-s0.json: not a benchmark cell .*delete it"):
            bench.finished_cells()
    (tmp_path / "r" / "config.json").write_text('{"preset": {"no_such_field": 1}}')
    with pytest.raises(ValueError, match=r"r/config.json: not a benchmark run record"):
        Benchmark(BenchmarkConfig(**base))._record_config()


def test_report_lists_failed_cells_and_keeps_them_out_of_the_means():
    from eaq.pipeline.report import summarize, table_markdown

    cells = [
        {"map": "3m", "quality": "medium", "variant": "original", "seed": s, "normalized_return": 40.0 + s, "win_rate": 0.2}
        for s in range(3)
    ] + [
        {"map": "3m", "quality": "medium", "variant": "eaq", "seed": 0, "status": "no valid synthetic episodes",
         "error": "none of 2048 samples was a valid episode"},
    ]
    rows = summarize(cells)
    assert [r["variant"] for r in rows] == ["original"]
    assert rows[0]["normalized_return"]["mean"] == 41.0
    table = table_markdown(rows, cells=cells)
    assert "Failed cell" in table and "none of 2048 samples" in table


def test_a_failed_eaq_cell_is_named_in_the_goal_and_fails_it():
    """Leaving a failed EAQ cell out of the goal's average would favour EAQ: the row names it
    and is not met, although the cells that did finish gain +10 points."""
    from eaq.pipeline.report import goal_check, goal_markdown

    cells = [{"map": m, "quality": "medium", "variant": v, "seed": s, "normalized_return": 30.0 + s + (10.0 if v == "eaq" else 0.0),
              "win_rate": 0.1} for m in ("3m", "8m") for v in ("original", "eaq") for s in range(5)]
    (goal,) = goal_check(cells)
    assert goal["met"] and "failed_cells" not in goal
    failed = {"map": "2s3z", "quality": "medium", "variant": "eaq", "seed": 0, "status": "no valid synthetic episodes"}
    (goal,) = goal_check([*cells, failed])
    assert goal["maps"] == ["3m", "8m"] and goal["failed_cells"] == ["2s3z-eaq-s0"] and not goal["met"]
    assert "no (1 failed cell(s) without a return: 2s3z-eaq-s0)" in goal_markdown([goal])
    # a quality whose every EAQ cell failed still has its row: not met, nothing to average
    good = [{**c, "quality": "good"} for c in cells if c["variant"] == "original"]
    good += [{**failed, "quality": "good", "map": m, "seed": s} for m in ("3m", "8m") for s in range(5)]
    (row,) = goal_check(good)
    assert row["quality"] == "good" and not row["met"] and len(row["failed_cells"]) == 10 and "gain_points" not in row
    assert "| good | — | 0 | — (no finished EAQ cell to pair) |" in goal_markdown([row])


def test_report_pairs_by_seed_and_checks_the_goal_averaged_over_maps():
    from eaq.pipeline.report import goal_check, summarize, table_markdown

    # Seeds differ a lot (shared by every variant of a seed); EAQ adds a steady +10 points on
    # Medium (+25 %, above the paper's 17.3 %), EAQ^-Q +2; on Good EAQ loses 5 points every seed.
    base = {0: 30.0, 1: 50.0, 2: 40.0}
    shift = {("medium", "original"): 0.0, ("medium", "eaq-noq"): 2.0, ("medium", "eaq"): 10.0,
             ("good", "original"): 40.0, ("good", "eaq"): 35.0}
    cells = [
        {"map": m, "quality": q, "variant": v, "seed": s, "normalized_return": base[s] + d + (1.0 if m == "8m" else 0.0), "win_rate": 0.1}
        for (q, v), d in shift.items() for m in ("3m", "8m") for s in base
    ]
    rows = {(r["map"], r["quality"], r["variant"]): r for r in summarize(cells)}
    medium = rows[("3m", "medium", "eaq")]
    assert not medium["significant"]  # Welch drowns in the seed spread...
    assert medium["paired_significant"] and medium["paired_gain_points"]["mean"] == pytest.approx(10.0)  # ...pairing does not
    assert medium["vs_noq_points"]["mean"] == pytest.approx(8.0)

    goal = {g["quality"]: g for g in goal_check(cells)}
    assert goal["medium"]["maps"] == ["3m", "8m"] and goal["medium"]["seeds"] == [0, 1, 2]
    assert goal["medium"]["gain_percent"] == pytest.approx(100 * 10.0 / 40.5)
    assert goal["medium"]["met"] and not goal["medium"]["enough_seeds"]
    assert goal["good"]["gain_points"]["hi"] < 0 and not goal["good"]["met"]  # degraded
    assert "vs_noq_points" not in goal["good"]  # Good has no EAQ^-Q cells here
    # EAQ^-Q on one map only: EAQ - EAQ^-Q over that map, and the row says so
    one_noq = [c for c in cells if not (c["variant"] == "eaq-noq" and c["map"] == "8m")]
    partial = {g["quality"]: g for g in goal_check(one_noq)}["medium"]
    assert partial["maps"] == ["3m", "8m"] and partial["vs_noq_maps"] == ["3m"]
    assert partial["vs_noq_points"]["mean"] == pytest.approx(8.0)
    assert "; over 3m, 3 seeds" in table_markdown(summarize(one_noq), cells=one_noq)
    table = table_markdown(list(rows.values()), cells=cells)
    assert "Against the goal" in table and "indicative" in table and "EAQ >= EAQ^-Q, significant" in table
    one_seed = [c for c in cells if c["quality"] == "good" and c["seed"] == 0 and c["map"] == "3m"]
    assert not goal_check(one_seed)[0]["met"]  # no interval with one seed: the mean (-5) decides


def test_benchmark_flags_become_preset_overrides():
    import tyro

    from eaq.cli.benchmark import Benchmark as BenchmarkArgs
    from eaq.pipeline.config import resolve_preset

    args = tyro.cli(BenchmarkArgs, args=["--preset", "fast", "--qtot-steps", "4000", "--offline-steps", "2000", "--cql-weight", "3",
                                         "--no-actions-from-motion", "--inpaint-prefix", "0", "--synthetic-oversample", "2"])
    cfg = args.config()
    preset = resolve_preset(cfg.preset, dict(cfg.overrides))
    assert preset.synthetic_oversample == 2.0 and resolve_preset("fast").synthetic_oversample == 1.0
    with pytest.raises(ValueError, match="synthetic_oversample"):
        resolve_preset("fast", {"synthetic_oversample": 0.5})
    with pytest.raises(ValueError, match="synthetic_match_wins"):
        resolve_preset("fast", {"synthetic_match_wins": True})
    with pytest.raises(ValueError, match="synthetic_select_by"):
        resolve_preset("fast", {"synthetic_select_by": "nope"})
    assert tyro.cli(BenchmarkArgs, args=["--synthetic-select-by", "plausible"]).config().overrides == (
        ("synthetic_select_by", "plausible"), ("actions_from_motion", True))
    with pytest.raises(ValueError, match="no-synthetic-cql"):
        Benchmark(BenchmarkConfig(maps=("3m",), qualities=("poor",), preset="smoke", learner="maicq",
                                  overrides=(("synthetic_cql", False),)))
    off = tyro.cli(BenchmarkArgs, args=["--no-synthetic-cql", "--diffusion-horizon", "-1"]).config().overrides
    assert dict(off)["synthetic_cql"] is False and dict(off)["diffusion_horizon"] == -1
    assert not resolve_preset("fast", dict(off)).synthetic_cql and resolve_preset("fast").synthetic_cql
    with pytest.raises(ValueError, match="diffusion_horizon"):
        resolve_preset("fast", {"diffusion_horizon": -2})
    snap = tyro.cli(BenchmarkArgs, args=["--snap-motion"]).config().overrides
    assert resolve_preset("fast", dict(snap)).snap_motion and not resolve_preset("fast").snap_motion
    with pytest.raises(ValueError, match="snap_motion"):
        resolve_preset("fast", {"snap_motion": True, "observations": "from_state"})
    assert (preset.qtot_steps, preset.offline_steps, preset.cql_weight) == (4000, 2000, 3.0)
    assert not preset.actions_from_motion and resolve_preset("fast").actions_from_motion
    assert preset.inpaint_prefix == 0.0 and resolve_preset("fast").inpaint_prefix == 0.01
    default = resolve_preset(args.preset, dict(tyro.cli(BenchmarkArgs, args=[]).config().overrides))
    assert default == resolve_preset("fast")  # no flag: exactly the preset
    assert preset.diffusion_steps == resolve_preset("fast").diffusion_steps  # untouched


def test_report_merges_runs_and_refuses_overlaps(tmp_path):
    from eaq.cli import main
    from eaq.pipeline.report import merge_runs

    def fake_run(name, quality, offline_steps, seeds=range(2), learner="qmix-cql", **preset_fields):
        d = tmp_path / name
        d.mkdir()
        cells = [
            {"map": "3m", "quality": quality, "variant": v, "seed": s, "normalized_return": 20.0 + s + (3.0 if v == "eaq" else 0.0), "win_rate": 0.1}
            for v in ("original", "eaq") for s in seeds
        ]
        (d / "results.json").write_text(json.dumps({"cells": cells}))
        preset = {"offline_steps": offline_steps, "qtot_steps": 1000, **preset_fields}
        (d / "config.json").write_text(json.dumps({"benchmark": {"learner": learner}, "preset": preset}))
        return d

    poor, medium = fake_run("a", "poor", 1000), fake_run("b", "medium", 4000, cql_weight=0.3)
    cells, header = merge_runs([poor, medium])
    assert len(cells) == 8 and {c["run"] for c in cells} == {"a", "b"}
    # a run recorded before the CQL weight was (a) used 3: the header says the weights differ
    assert "`b` (qmix-cql; medium): cql_weight=0.3, offline_steps=4000" in header
    # a field added since (a) was recorded, at its legacy value, is no difference
    _, header = merge_runs([poor, fake_run("d", "medium", 1000, snap_motion=False, synthetic_cql=True)])
    assert "`d` (qmix-cql; medium): same settings" in header
    with pytest.raises(ValueError, match="3m-poor-original-s0 is in both"):
        merge_runs([poor, fake_run("c", "poor", 1000)])
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        merge_runs([tmp_path / "missing"])
    # more seeds of one map and quality, but from another learner, length or CQL weight: refused
    for name, steps, learner, weight in (("e", 4000, "qmix-cql", 3.0), ("f", 1000, "bc", 3.0), ("h", 1000, "qmix-cql", 0.3)):
        with pytest.raises(ValueError, match=f"3m poor: cells from .*a \\(qmix-cql, 1000 updates, CQL weight 3.0, .*\\) and .*{name} "
                                             f"\\({learner}, {steps} updates, CQL weight {weight}, .*would be compared across"):
            merge_runs([poor, fake_run(name, "poor", steps, seeds=range(2, 4), learner=learner, cql_weight=weight)])
    assert len(merge_runs([poor, fake_run("g", "poor", 1000, seeds=range(2, 4))])[0]) == 8
    for bad in ("[]", '{"cells": [{"map": "3m"}]}'):
        (tmp_path / "g" / "results.json").write_text(bad)
        with pytest.raises(ValueError, match="results.json: not a benchmark report"):
            merge_runs([tmp_path / "g"])
    assert main(["report", str(poor), str(medium), "--out", str(tmp_path / "merged")]) == 0
    goal = json.loads((tmp_path / "merged" / "results.json").read_text())["goal"]
    assert [g["quality"] for g in goal] == ["poor", "medium"] and goal[0]["gain_points"]["mean"] == pytest.approx(3.0)


def test_report_merges_every_finished_cell_of_a_run(tmp_path):
    """A run's results.json covers its last command only (e.g. EAQ^-Q added later for 2 seeds);
    merging must read every cell file, with the synthetic data's fidelity beside it."""
    from eaq.pipeline.report import merge_runs

    d = tmp_path / "run"
    (d / "cells").mkdir(parents=True)
    (d / "stages" / "3m-medium").mkdir(parents=True)
    cells = [{"map": "3m", "quality": "medium", "variant": v, "seed": s, "normalized_return": 30.0 + s, "win_rate": 0.1}
             for v in ("original", "eaq", "eaq-noq") for s in range(3) if v != "eaq-noq" or s < 2]
    for c in cells:
        (d / "cells" / f"3m-medium-{c['variant']}-s{c['seed']}.json").write_text(json.dumps(c))
    fidelity = {"validity_rate": 0.9, "lengths": {"synthetic": {"mean": 17.0}}, "normalized_returns": {"synthetic": {"mean": 41.0}}}
    (d / "stages" / "3m-medium" / "synthetic-eaq-s2-fidelity.json").write_text(json.dumps(fidelity))
    # the last command's report: EAQ^-Q on seeds 0-1 only
    (d / "results.json").write_text(json.dumps({"cells": [c for c in cells if c["variant"] == "eaq-noq"]}))
    (d / "config.json").write_text(json.dumps({"benchmark": {"learner": "qmix-cql"}, "preset": {"offline_steps": 4000}}))
    merged, header = merge_runs([d])
    assert len(merged) == 8
    assert "6 finished cell(s) beyond its last report included" in header
    eaq2 = next(c for c in merged if c["variant"] == "eaq" and c["seed"] == 2)
    assert eaq2["synthetic_normalized_return"] == 41.0 and eaq2["synthetic_validity_rate"] == 0.9
    (d / "stages" / "3m-medium" / "synthetic-eaq-s2-fidelity.json").write_text(json.dumps({"validity_rate": 0.9}))
    with pytest.raises(ValueError, match="synthetic-eaq-s2-fidelity.json: not a fidelity report"):
        merge_runs([d])
    (d / "stages" / "3m-medium" / "synthetic-eaq-s2-fidelity.json").write_text(json.dumps(fidelity))
    (d / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="results.json: not a benchmark report"):
        merge_runs([d])
    (d / "results.json").unlink()
    assert len(merge_runs([d])[0]) == 8  # the cell files alone are enough
    (d / "cells" / "3m-medium-eaq-s0.json").write_text("{not json")
    with pytest.raises(ValueError, match="3m-medium-eaq-s0.json: not a benchmark cell"):
        merge_runs([d])
