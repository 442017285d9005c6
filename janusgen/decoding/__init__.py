"""Decoding in both modes: AR greedy / beam search with a key/value cache, and NAR Mask-Predict with a
length beam and optional self-reranking by the AR view, and self-speculative decoding (NAR drafts, AR
verifies: AR greedy's outputs, up to floating-point near-ties)."""

from janusgen.decoding.api import decode
from janusgen.decoding.common import Decoded, Hypotheses, teacher_forced_log_probs
from janusgen.decoding.mask_predict import MaskSchedule, linear_schedule, mask_predict
from janusgen.decoding.search import beam_search, greedy_search
from janusgen.decoding.speculative import SpeculativeStats, speculative_search

__all__ = [
    "Decoded",
    "Hypotheses",
    "MaskSchedule",
    "SpeculativeStats",
    "beam_search",
    "decode",
    "greedy_search",
    "linear_schedule",
    "mask_predict",
    "speculative_search",
    "teacher_forced_log_probs",
]
