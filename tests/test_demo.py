"""The demo's plan: it measures the machine and picks the largest candidate model the budget can train."""

from __future__ import annotations

import dataclasses

from janusgen.demo import NO_KL_NAME, TARGET_UPDATES, _problems, objective_name, plan_demo
from janusgen.presets import DemoPreset, objective_preset

TINY = DemoPreset(d_model=32, ffn_dim=64, heads=2, encoder_layers=2, decoder_layers=2)
TINIER = DemoPreset(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=1)


def test_plan_takes_the_largest_candidate_the_budget_trains_enough(toy_data):
    plan = plan_demo(toy_data, time_budget_s=1e6, candidates=(TINY, TINIER), steps=1)
    assert plan.preset == TINY and plan.planned_updates >= TARGET_UPDATES
    assert plan.ar_update_s > 0 and plan.joint_update_s > 0
    assert plan.precision.precision in ("fp32", "bf16") and plan.precision.reason
    short = plan_demo(toy_data, time_budget_s=1.0, candidates=(TINY, TINIER), steps=1)
    assert short.preset == TINIER and "fewer than" in short.reason  # nothing is enough: the smallest
    assert short.to_dict()["model"] == {"encoder_layers": 1, "decoder_layers": 1}


def test_recipe_fractions_reach_the_demo_configs():
    preset = DemoPreset()
    objective = preset.objective()
    assert objective.ar_only_fraction > 0 and objective.kl_ar_aux == objective.kl_ar_nar == 0
    train = preset.train(900.0, seed=2)
    assert train.warmup_fraction and train.time_budget_s == 900.0 and train.precision == "auto"
    assert preset.model().dropout == 0.0


def test_the_demo_names_its_model_without_the_kl_terms_never_as_the_papers_loss():
    assert objective_name(dataclasses.asdict(DemoPreset().objective())) == NO_KL_NAME
    assert "without the KL terms" in NO_KL_NAME and "cpu recipe" in NO_KL_NAME
    paper = objective_name(dataclasses.asdict(objective_preset("janus")))
    assert "paper's loss" in paper and "without" not in paper


def test_a_table_of_zeros_is_never_printed_without_comment():
    report = {
        "training": {"step": 24, "warnings": ["the run made only 24 updates: too few to learn"]},
        "results": [{"setting": "AR beam 5", "bleu": 0.0}, {"setting": "NAR T=10 l=3", "bleu": 7.0}],
    }
    problems = _problems(report)
    assert problems[0].startswith("the run made only 24 updates")
    assert "BLEU is near 0 in AR beam 5" in problems[1] and "NAR" not in problems[1]


def test_the_plan_says_when_the_machine_is_too_busy_to_measure(toy_data, monkeypatch, capsys):
    """timings taken under load were used without a word."""
    import janusgen.demo
    from janusgen.hardware import Timing

    monkeypatch.setattr(janusgen.demo, "time_pairs", lambda *a, **k: Timing(2.0, 1.0, 2.0, 1.0, 4.0, True))
    plan = plan_demo(toy_data, time_budget_s=1e6, candidates=(TINY,), steps=1)
    assert plan.busy and plan.to_dict()["busy"] is True
    assert "too busy to measure" in capsys.readouterr().err
    assert plan.ar_update_s == 2.0 and plan.joint_update_s == 1.0
