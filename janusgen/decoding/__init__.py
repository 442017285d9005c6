"""Decoding in both modes: AR greedy / beam search with a key/value cache, and NAR Mask-Predict with a
length beam and optional self-reranking by the AR view."""

from janusgen.decoding.api import decode_ar, decode_nar
from janusgen.decoding.common import Decoded, Hypotheses, teacher_forced_log_probs
from janusgen.decoding.mask_predict import MaskSchedule, linear_schedule, mask_predict
from janusgen.decoding.search import beam_search, greedy_search

__all__ = [
    "Decoded",
    "Hypotheses",
    "MaskSchedule",
    "beam_search",
    "decode_ar",
    "decode_nar",
    "greedy_search",
    "linear_schedule",
    "mask_predict",
    "teacher_forced_log_probs",
]
