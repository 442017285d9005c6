import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from janusgen import bench
from janusgen.bench import (
    decodes,
    quality,
    run_quality_bench,
    run_speed_bench,
    settings_for,
)
from janusgen.checkpoint import read_config
from janusgen.decoding.settings import SETTINGS, label
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.presets import BUDGETS, Budget, cpu_budget, gpu_budget, model_preset, objective_preset
from janusgen.training.config import TrainConfig


def _tiny_budget(updates: int = 6) -> Budget:
    train = TrainConfig(
        max_updates=updates,
        max_tokens=512,
        lr=3e-3,
        warmup_updates=2,
        log_every=3,
        validate_every=3,
        valid_bleu_sentences=8,
        keep_last=1,
        precision="fp32",
    )
    objectives = {name: objective_preset(name) for name in bench.SYSTEMS}
    objectives["janus"] = dataclasses.replace(objectives["janus"], ar_only_updates=2, kl_warmup_updates=2)
    model = dataclasses.replace(model_preset("tiny"), d_model=32, ffn_dim=64)
    return Budget("test", model, train, objectives)


@pytest.fixture(scope="module")
def quality_run(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    report = run_quality_bench(toy_data, out, _tiny_budget(), device="cpu", limit=12, bootstrap_samples=50)
    return out, report


def test_quality_bench_trains_equal_budgets_and_evaluates_every_setting(quality_run):
    out, report = quality_run
    assert json.loads((out / bench.QUALITY).read_text()) == report
    # the trained model, whose vocabulary is the data's, not the budget's preset
    assert report["model"] == read_config(out / "janus" / "last")["model"]
    assert report["model"]["vocab_size"] == 64 != _tiny_budget().model.vocab_size
    assert set(report["systems"]) == {"ar", "cmlm", "janus"}
    for system, entry in report["systems"].items():
        assert entry["training"]["step"] == 6  # the same number of updates for every system
        assert [r["id"] for r in entry["results"]] == list(settings_for(system))
        assert [r["setting"] for r in entry["results"]] == [label(sid) for sid in settings_for(system)]
        assert all(r["sentences"] == 12 for r in entry["results"])
        assert (out / "outputs" / f"{system}.ar_beam_5.txt").is_file() == (system != "cmlm")
    assert "NAR T=10 l=3 +rerank" in [r["setting"] for r in report["systems"]["janus"]["results"]]
    claims = {(t["system"], t["baseline"]) for t in report["significance"]}
    assert ("janus AR beam 5", "ar AR beam 5") in claims
    assert ("janus NAR T=10 l=3", "cmlm NAR T=10 l=3") in claims
    assert all(0.0 <= t["p_value"] <= 1.0 for t in report["significance"])
    assert (out / bench.PLOT).stat().st_size > 0
    curves = bench.valid_curves(out / "janus")
    assert [step for step, _ in curves["bleu_ar"]] == [3, 6]
    assert [step for step, _ in curves["bleu_nar"]] == [3, 6]
    table = bench.format_quality(report)
    assert "| janus | NAR T=4 l=3 |" in table and "p |" in table


def test_quality_bench_resumes_without_retraining_or_redecoding(quality_run, toy_data, monkeypatch):
    out, report = quality_run

    def fail(*args, **kwargs):
        raise AssertionError("a finished step was run again")

    monkeypatch.setattr(quality, "train", fail)  # where the quality bench looks them up
    monkeypatch.setattr(quality, "evaluate", fail)
    again = run_quality_bench(toy_data, out, _tiny_budget(), device="cpu", limit=12, bootstrap_samples=50)
    assert again["systems"]["janus"]["results"] == report["systems"]["janus"]["results"]
    assert again["significance"] == report["significance"]


def test_quality_bench_refuses_a_run_trained_with_other_settings(quality_run, toy_data, monkeypatch):
    out, _ = quality_run
    monkeypatch.setattr(quality, "train", None)  # nothing may be trained or overwritten
    budget = _tiny_budget()
    ablation = dataclasses.replace(budget.objectives["janus"], kl_ar_aux=0.0)
    budget = dataclasses.replace(budget, objectives={**budget.objectives, "janus": ablation})
    with pytest.raises(JanusError, match=r"janus/last/config.json: the janus run there .* another objective"):
        run_quality_bench(toy_data, out, budget, device="cpu", limit=12, bootstrap_samples=50)
    wider = dataclasses.replace(_tiny_budget(), model=dataclasses.replace(budget.model, ffn_dim=128))
    with pytest.raises(JanusError, match="ar/last/config.json: the ar run there .* another model"):
        run_quality_bench(toy_data, out, wider, device="cpu", limit=12, bootstrap_samples=50)


def test_compare_tests_each_common_setting_of_two_benches(quality_run, tmp_path):
    out, report = quality_run
    other = tmp_path / "ablation"
    shutil.copytree(out / "outputs", other / "outputs")
    changed = other / "outputs" / "janus.nar_t_10_l_3.txt"
    changed.write_text("".join("the\n" for _ in range(12)), encoding="utf-8")
    ablation = json.loads((out / bench.QUALITY).read_text())
    ablation["systems"]["janus"]["results"] = ablation["systems"]["janus"]["results"][:6]  # no rerank
    # a report of an older version: absolute paths, results named by their label only
    ablation["data"] = str((out / ablation["data"]).resolve())
    for r in ablation["systems"]["janus"]["results"]:
        del r["id"]
    (other / bench.QUALITY).write_text(json.dumps(ablation))

    tests = {t.system: t for t in bench.compare_benches(other, out, "janus", samples=50)}
    assert len(tests) == 6  # the settings both benches evaluated
    same = tests["ablation: janus AR beam 5"]
    assert same.baseline == f"{out.name}: janus AR beam 5" and same.delta == 0 and same.p_value == 1.0
    worse = tests["ablation: janus NAR T=10 l=3"]
    bleu = {r["setting"]: r["bleu"] for r in report["systems"]["janus"]["results"]}
    assert worse.baseline_bleu == pytest.approx(bleu["NAR T=10 l=3"], abs=0.01) and worse.system_bleu < 1.0
    assert "| ablation: janus NAR T=10 l=3 vs" in bench.format_tests([t.to_dict() for t in tests.values()])

    ablation["test_sentences"] = 11
    (other / bench.QUALITY).write_text(json.dumps(ablation))
    with pytest.raises(JanusError, match="different test sets"):
        bench.compare_benches(other, out)
    with pytest.raises(JanusError, match="none/quality.json: not found"):
        bench.compare_benches(other, tmp_path / "none")
    del ablation["systems"]["cmlm"]
    (other / bench.QUALITY).write_text(json.dumps(ablation))
    with pytest.raises(JanusError, match="ablation/quality.json: no cmlm system"):
        bench.compare_benches(other, out, "cmlm")


def test_speed_bench_times_every_setting_against_ar_beam_5(quality_run):
    out, report = quality_run
    speed = run_speed_bench(out, sentences=5, batch_size=2, device="cpu")
    rows = speed["rows"]
    expected = [(s, sid, label(sid)) for s in report["systems"] for sid in settings_for(s)]
    assert [(r["system"], r["id"], r["setting"]) for r in rows] == expected
    assert speed["baseline"] == "janus AR beam 5"
    base = next(r for r in rows if (r["system"], r["setting"]) == ("janus", "AR beam 5"))
    assert base["latency_speedup"] == 1.0 and base["throughput_speedup"] == 1.0
    assert all(r["latency_ms"] > 0 and r["sentences_per_s"] > 0 for r in rows)
    quality_bleu = {r["setting"]: r["bleu"] for r in report["systems"]["cmlm"]["results"]}
    assert all(r["bleu"] == quality_bleu[r["setting"]] for r in rows if r["system"] == "cmlm")
    assert "| janus | AR beam 5 |" in bench.format_speed(speed)


def test_a_bench_folder_reads_back_after_a_move(quality_run, monkeypatch):
    """Reports store paths relative to the bench folder: a moved (or copied) folder reads its own runs."""
    out, report = quality_run
    assert not Path(report["data"]).is_absolute()
    assert {entry["checkpoint"] for entry in report["systems"].values()} == {
        f"{s}/last" for s in bench.SYSTEMS
    }
    moved = out.parent / f"{out.name}_moved"  # at the same depth, so the data's relative path holds
    shutil.copytree(out, moved)
    loaded = []
    load = Translator.load
    monkeypatch.setattr(Translator, "load", lambda path, **kw: loaded.append(Path(path)) or load(path, **kw))
    speed = run_speed_bench(moved, sentences=2, batch_size=2, device="cpu")
    assert speed["baseline"] == "janus AR beam 5"
    assert loaded == [moved / system / "last" for system in report["systems"]]
    tests = bench.compare_benches(moved, out, "ar", samples=50)
    assert [t.delta for t in tests] == [0.0, 0.0]


def test_speed_bench_needs_a_quality_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench quality"):
        run_speed_bench(tmp_path)


def test_budgets_compare_like_with_like():
    for budget in (cpu_budget().scaled(100, 3), gpu_budget().scaled(100, 3)):
        assert budget.train.max_updates == 100 and budget.train.seed == 3
        assert budget.train.time_budget_s is None  # equal updates, not equal time
        assert set(budget.objectives) == set(bench.SYSTEMS)
    assert cpu_budget().scaled(100, 3).objectives["janus"].ar_only_fraction > 0
    assert all(
        budget.train.precision == "auto" for budget in (cpu_budget().scaled(1, 1), gpu_budget().scaled(1, 1))
    )


def test_bench_cli_names_the_option_at_fault(tmp_path, capsys):
    from janusgen.cli import main

    assert main(["bench", "speed", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: no quality.json" in capsys.readouterr().err
    assert main(["bench", "quality", "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "not a prepared data folder" in capsys.readouterr().err
    assert main(["bench", "quality", "--data", str(tmp_path), "--out", str(tmp_path), "--updates", "0"]) == 2
    assert "--updates 0" in capsys.readouterr().err
    ablation = ["--janus-option", "kl_weight=0"]
    assert main(["bench", "quality", "--data", str(tmp_path), "--out", str(tmp_path), *ablation]) == 2
    assert "--janus-option 'kl_weight=0': expected KEY=VALUE with KEY one of" in capsys.readouterr().err
    assert main(["bench", "compare", str(tmp_path / "b"), str(tmp_path)]) == 2
    assert f"{tmp_path / 'b' / 'quality.json'}: not found" in capsys.readouterr().err


def test_bench_cli_model_option_and_keep_last_reach_every_system(tmp_path, monkeypatch, capsys):
    import janusgen.bench
    from janusgen.cli import main

    seen = {}
    monkeypatch.setattr(
        janusgen.bench, "run_quality_bench", lambda data, out, budget, *a, **k: seen.update(b=budget)
    )
    monkeypatch.setattr(janusgen.bench, "format_quality", lambda report: "")
    args = [
        "bench",
        "quality",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path),
        "--model-option",
        "dropout=0.1",
    ]
    assert main(args) == 0
    assert seen["b"].model.dropout == 0.1 and cpu_budget().scaled(1500, 1).model.dropout == 0.0
    assert seen["b"].train.keep_last == cpu_budget().scaled(1500, 1).train.keep_last == 1
    assert main([*args, "--keep-last", "1000"]) == 0
    assert seen["b"].train.keep_last == 1000 and seen["b"].model.dropout == 0.1
    assert main([*args, "--keep-last", "-1"]) == 2
    assert "--keep-last -1: must be >= 0" in capsys.readouterr().err
    assert main([*args[:-1], "drop=0.1"]) == 2
    assert "--model-option 'drop=0.1': expected KEY=VALUE with KEY one of" in capsys.readouterr().err


def test_system_setup_gives_equal_time_and_distilled_targets(tmp_path):
    budget = cpu_budget().scaled(1500, 1)
    data, distilled = tmp_path / "data", tmp_path / "distilled"
    # equal updates: the budget's own options, everything on --data
    for system in bench.SYSTEMS:
        where, cfg = bench.system_setup(system, data, budget, None, None)
        assert where == data and cfg == budget.train
    # equal time: the clock stops every system, and the schedule fractions follow it
    where, cfg = bench.system_setup("janus", data, budget, None, 1800.0)
    assert cfg.time_budget_s == 1800.0 and cfg.max_updates == bench.EQUAL_TIME_MAX_UPDATES
    assert cfg.warmup_fraction == budget.train.warmup_fraction
    # distilled: ar on the data, cmlm on the teacher's outputs, janus's AR view on the references
    no_ar_kl = dataclasses.replace(budget.objectives["janus"], kl_ar_nar=0.0, kl_ar_aux=0.0)
    distil_budget = dataclasses.replace(budget, objectives={**budget.objectives, "janus": no_ar_kl})
    assert bench.system_setup("ar", data, distil_budget, distilled, None) == (data, budget.train)
    assert bench.system_setup("cmlm", data, distil_budget, distilled, None) == (distilled, budget.train)
    where, cfg = bench.system_setup("janus", data, distil_budget, distilled, None)
    assert where == distilled and cfg.ar_targets == "references"
    with pytest.raises(JanusError, match="kl_ar_nar=0"):
        bench.system_setup("janus", data, budget, distilled, None)
    # distilled for all: every system and view on the teacher's outputs, so the KLs are allowed
    for system in bench.SYSTEMS:
        assert bench.system_setup(system, data, budget, distilled, None, "all") == (distilled, budget.train)
    with pytest.raises(JanusError, match="--distilled-for"):
        bench.system_setup("ar", data, budget, distilled, None, "ar")
    # the long budget is the short one at more updates
    long = BUDGETS["cpu-long"]().scaled(None, 1)
    assert long.train.max_updates == 4 * BUDGETS["cpu"]().train.max_updates == 6000
    assert long.model == budget.model and long.objectives == budget.objectives


def test_a_bench_refuses_to_reuse_a_run_of_another_time_budget_or_data(quality_run, toy_data, tmp_path):
    out, _ = quality_run
    with pytest.raises(JanusError, match="time_budget_s"):
        run_quality_bench(toy_data, out, _tiny_budget(), ("ar",), device="cpu", limit=12, time_budget_s=60.0)
    with pytest.raises(JanusError, match="not a folder written by `janus distill`"):
        run_quality_bench(toy_data, tmp_path, _tiny_budget(), ("ar",), device="cpu", distilled=toy_data)
    other = tmp_path / "other_data"  # e.g. --distilled-for all trains ar on the teacher's outputs
    shutil.copytree(toy_data, other)
    with pytest.raises(JanusError, match=re.escape(f"the ar run there was trained on {toy_data}")):
        run_quality_bench(other, out, _tiny_budget(), ("ar",), device="cpu", limit=12)


def test_the_gpu_budget_is_the_papers_model_and_encoding():
    budget = gpu_budget().scaled(100, 1)
    assert budget.model == model_preset("paper-iwslt")
    assert not budget.model.pre_norm and budget.model.relative_positions == 0 and budget.model.init == "bert"
    assert budget.objectives["janus"].encode_per_view and budget.objectives["janus"].masking == "release"
    assert budget.objectives["janus"] == dataclasses.replace(
        objective_preset("janus"), encode_per_view=True, masking="release"
    )


def test_the_gpu_budget_trains_as_the_release_script_and_gpu_ours_as_we_did():
    """The release's IWSLT script: lr 5e-4, inverse sqrt after 10,000 warmup updates from 1e-7, Adam
    (0.9, 0.98), no clipping, 200,000 updates by default; `gpu-ours` keeps our warmup and clipping."""
    train = gpu_budget().scaled(100, 1).train
    assert (train.lr, train.warmup_updates, train.warmup_fraction, train.warmup_init_lr) == (
        5e-4,
        10_000,
        None,
        1e-7,
    )
    assert (train.adam_beta1, train.adam_beta2, train.clip_norm, train.max_tokens) == (0.9, 0.98, 0.0, 8192)
    assert BUDGETS["gpu"]().train.max_updates == 200_000
    assert all(
        objective.label_smoothing == 0.1 for objective in gpu_budget().scaled(100, 1).objectives.values()
    )
    ours = BUDGETS["gpu-ours"]().scaled(100, 1)
    assert (ours.name, ours.train.warmup_updates, ours.train.clip_norm) == ("gpu-ours", 4000, 1.0)
    assert dataclasses.replace(ours.train, warmup_updates=10_000, clip_norm=0.0) == train
    assert ours.model == model_preset("paper-iwslt") and ours.objectives == gpu_budget().objectives
    assert BUDGETS["gpu-ours"]().train.max_updates == 50_000


def test_a_run_saved_before_a_config_field_existed_is_still_reused(quality_run, toy_data, tmp_path):
    """A field added to ModelConfig / ObjectiveConfig after a run was trained takes its default when the
    bench compares setups: the run is the same, not "another configuration"."""
    out, _ = quality_run
    run = tmp_path / "ar"
    shutil.copytree(out / "ar" / "last", run / "last")
    config_file = run / "last" / "config.json"
    config = json.loads(config_file.read_text())
    del config["model"]["init"], config["objective"]["kl_ar_detach"]
    config_file.write_text(json.dumps(config))
    budget = _tiny_budget()
    quality._check_same_setup(run, budget, "ar", budget.train, toy_data)  # no error
    config["model"]["d_model"] = 48
    config_file.write_text(json.dumps(config))
    with pytest.raises(JanusError, match="another model configuration"):
        quality._check_same_setup(run, budget, "ar", budget.train, toy_data)


def test_each_system_decodes_the_settings_its_views_allow():
    assert decodes("ar", "ar_beam_5") and not decodes("ar", "nar_t_10_l_3")
    assert decodes("cmlm", "nar_t_10_l_3_collapse") and not decodes("cmlm", "ar_greedy")
    assert not decodes("cmlm", "nar_t_10_l_3_rerank")  # reranking needs an AR view
    assert all(decodes("janus", sid) for sid in SETTINGS)
    assert all(decodes(system, sid) for system in bench.SYSTEMS for sid in settings_for(system))


def test_only_the_settings_asked_for_are_evaluated(quality_run, toy_data):
    out, _ = quality_run
    budget = _tiny_budget()
    report = run_quality_bench(
        toy_data,
        out,
        budget,
        ("ar", "janus"),
        device="cpu",
        limit=12,
        bootstrap_samples=20,
        only_settings=("ar_greedy", "nar_t_4_l_3_collapse"),  # a registered setting beyond the defaults
    )
    assert [r["id"] for r in report["systems"]["ar"]["results"]] == ["ar_greedy"]
    assert [r["id"] for r in report["systems"]["janus"]["results"]] == ["ar_greedy", "nar_t_4_l_3_collapse"]
    assert report["systems"]["janus"]["results"][1]["setting"] == "NAR T=4 l=3 +collapse"
    with pytest.raises(JanusError, match="--settings nar_t_3: unknown"):
        run_quality_bench(toy_data, out, budget, ("ar",), device="cpu", limit=12, only_settings=("nar_t_3",))
    with pytest.raises(JanusError, match="--settings nar_t_10_l_3: none of ar can decode it"):
        run_quality_bench(toy_data, out, budget, ("ar",), device="cpu", only_settings=("nar_t_10_l_3",))
    # the full report again, for the other tests of this module
    run_quality_bench(toy_data, out, budget, device="cpu", limit=12, bootstrap_samples=50)
