"""The registry of named decoding settings: stable ids, one per setting, that everything refers to."""

from pathlib import Path

import pytest

from janusgen import bench, demo
from janusgen.bench.common import _outputs_file
from janusgen.decoding.settings import SETTINGS, SPEED_BASELINE, describe, id_of, label, setting
from janusgen.errors import JanusError


def test_ids_are_the_file_names_benches_already_wrote():
    """Bench folders name outputs by id: renaming one would orphan every folder written before."""
    assert list(SETTINGS) == [
        "ar_beam_5",
        "ar_greedy",
        "nar_t_1_l_3",
        "nar_t_2_l_3",
        "nar_t_4_l_3",
        "nar_t_10_l_3",
        "nar_t_1_l_3_rerank",
        "nar_t_2_l_3_rerank",
        "nar_t_4_l_3_rerank",
        "nar_t_10_l_3_rerank",
        "speculative",
        "nar_t_4_l_3_collapse",
        "nar_t_10_l_3_collapse",
        "nar_t_10_l_3_collapse_rerank",
        "nar_t_1_l_1",
        "nar_t_2_l_1",
        "nar_t_4_l_1",
        "nar_t_4_l_1_collapse",
        "nar_t_10_l_1_early_stop",
        "nar_t_10_l_3_early_stop",
    ]
    assert label("nar_t_10_l_3_rerank") == "NAR T=10 l=3 +rerank" and label("ar_greedy") == "AR greedy"
    assert label("nar_t_10_l_3_collapse_rerank") == "NAR T=10 l=3 +collapse +rerank"
    assert setting("nar_t_4_l_3").iterations == 4 and setting("ar_beam_5").beam == 5


def test_every_setting_has_its_own_config_and_label():
    assert len(set(SETTINGS.values())) == len(SETTINGS)
    assert len({describe(cfg) for cfg in SETTINGS.values()}) == len(SETTINGS)


def test_the_demo_and_the_benches_name_registered_settings_only():
    used = set(demo.SETTINGS) | {SPEED_BASELINE}
    used |= {sid for system in bench.SYSTEMS for sid in bench.settings_for(system)}
    used |= {sid for claim in bench.CLAIMS for _, sid in claim}
    assert used <= set(SETTINGS)
    assert demo.SETTINGS[0] == SPEED_BASELINE  # the demo's table shows speed relative to its first row
    for system, sid in (s for claim in bench.CLAIMS for s in claim):
        assert sid in bench.settings_for(system), (system, sid)  # a claim the bench can test


def test_results_are_found_by_id_and_older_ones_by_label():
    assert id_of({"id": "ar_greedy", "setting": "anything"}) == "ar_greedy"
    assert id_of({"setting": "NAR T=4 l=3"}) == "nar_t_4_l_3"  # written before the registry
    assert id_of({"setting": "NAR T=3 l=7"}) is None
    with pytest.raises(JanusError, match="unknown decoding setting 'beam_9'"):
        setting("beam_9")


def test_a_reworded_label_changes_no_id(monkeypatch):
    """What tables print may change; what results are filed under does not."""
    import janusgen.decoding.settings as settings

    monkeypatch.setattr(settings, "describe", lambda cfg: f"{cfg.mode}/{cfg.beam}/{cfg.iterations}")
    assert label("ar_beam_5") == "ar/5/10"
    assert _outputs_file(Path("b"), "janus", "ar_beam_5").name == "janus.ar_beam_5.txt"
