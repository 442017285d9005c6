"""Named decoding settings: one registry, with stable ids, shared by the demo, the benches and compare.

A setting's id is what results refer to it by: the quality bench's output files
(`outputs/{system}.{id}.txt`), the claims it tests, the speed bench's baseline, the settings `bench
compare` pairs up, the demo's table. An id never changes once results were written under it; the label
(`describe`, what tables print) may be reworded freely. The ids are the file-name slugs the labels had
when the benches first wrote them, so bench folders written before the registry read unchanged.
"""

from __future__ import annotations

from typing import Any

from janusgen.config import DecodeConfig
from janusgen.errors import JanusError


def describe(cfg: DecodeConfig) -> str:
    """A short label for a decoding setting, e.g. "AR beam 5" or "NAR T=10 l=3 +rerank" (display only:
    results are keyed by the setting's id)."""
    if cfg.mode == "ar":
        return "AR greedy" if cfg.beam == 1 else f"AR beam {cfg.beam}"
    if cfg.mode == "speculative":
        return "speculative (= AR greedy)"
    lengths = f"l={cfg.length_beam}" if cfg.length_offsets is None else f"offsets={list(cfg.length_offsets)}"
    collapse = " +collapse" if cfg.collapse_repeats else ""
    stop = " +early-stop" if cfg.early_stop else ""
    return f"NAR T={cfg.iterations} {lengths}" + collapse + stop + (" +rerank" if cfg.rerank else "")


def _nar(iterations: int, **options: Any) -> DecodeConfig:
    """A Mask-Predict setting; its id names its length beam, so l = 3 is written here, not taken from
    DecodeConfig's default (the setting must not change with it)."""
    return DecodeConfig(mode="nar", iterations=iterations, **{"length_beam": 3, **options})


SETTINGS: dict[str, DecodeConfig] = {  # id -> setting; never rename an id (see above)
    "ar_beam_5": DecodeConfig(mode="ar", beam=5),
    "ar_greedy": DecodeConfig(mode="ar", beam=1),
    "nar_t_1_l_3": _nar(1),
    "nar_t_2_l_3": _nar(2),
    "nar_t_4_l_3": _nar(4),
    "nar_t_10_l_3": _nar(10),
    "nar_t_1_l_3_rerank": _nar(1, rerank=True),
    "nar_t_2_l_3_rerank": _nar(2, rerank=True),
    "nar_t_4_l_3_rerank": _nar(4, rerank=True),
    "nar_t_10_l_3_rerank": _nar(10, rerank=True),
    "speculative": DecodeConfig(mode="speculative"),
    "nar_t_4_l_3_collapse": _nar(4, collapse_repeats=True),
    "nar_t_10_l_3_collapse": _nar(10, collapse_repeats=True),
    "nar_t_10_l_3_collapse_rerank": _nar(10, rerank=True, collapse_repeats=True),
    # the latency of one sentence: one length candidate, few passes, stopping when a pass changes nothing
    "nar_t_1_l_1": _nar(1, length_beam=1),
    "nar_t_2_l_1": _nar(2, length_beam=1),
    "nar_t_4_l_1": _nar(4, length_beam=1),
    "nar_t_4_l_1_collapse": _nar(4, length_beam=1, collapse_repeats=True),
    "nar_t_10_l_1_early_stop": _nar(10, length_beam=1, early_stop=True),
    "nar_t_10_l_3_early_stop": _nar(10, early_stop=True),
}

SPEED_BASELINE = "ar_beam_5"  # speedups are relative to this setting (the demo's table, bench speed)


def setting(setting_id: str) -> DecodeConfig:
    """The DecodeConfig registered under `setting_id`."""
    if setting_id not in SETTINGS:
        raise JanusError(f"unknown decoding setting {setting_id!r}; choose one of {', '.join(SETTINGS)}")
    return SETTINGS[setting_id]


def label(setting_id: str) -> str:
    """What tables print for the setting `setting_id`."""
    return describe(setting(setting_id))


def id_of(result: dict) -> str | None:
    """The id of a stored result (`EvalResult.to_dict()` plus "id"); results written before the registry
    carry only their label, looked up here. None for a label no registered setting has."""
    if "id" in result:
        return result["id"]
    return next((sid for sid, cfg in SETTINGS.items() if describe(cfg) == result["setting"]), None)
