"""Pairing cleaned verses by reference, the split each verse belongs to, and the filters.

The split comes from a hash of the reference alone, so every pair of texts and both directions of a pair
share one split, and no filter setting moves a verse between splits.

The RV1909 module keeps the Spanish verse numbers in a few places (Num 13, 1 Sam 24, Jonah 2, ...)
although it declares the KJV versification; such stretches are found from verse lengths and dropped
(see `misnumbered`).
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from janusgen.config import BibleConfig

SPLITS = ("train", "valid", "test")


def split_of(ref: str, valid_fraction: float, test_fraction: float) -> str:
    """The split of a verse, from a hash of its reference alone: the same for every pair and direction."""
    u = int.from_bytes(hashlib.sha256(ref.encode("utf-8")).digest()[:8], "big") / 2**64  # uniform [0, 1)
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def align(
    src: dict[str, str], tgt: dict[str, str], cfg: BibleConfig
) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, int]]:
    """Pair cleaned verses by reference, in the source's order; return (split -> [(ref, src, tgt)], drops).

    Each dropped reference is counted once, under the first reason that applies, in the order of the
    returned dict.
    """
    common = [ref for ref in src if ref in tgt]
    src_words = np.array([len(src[ref].split()) for ref in common], dtype=np.int64)
    tgt_words = np.array([len(tgt[ref].split()) for ref in common], dtype=np.int64)
    both = (src_words > 0) & (tgt_words > 0)
    shifted = np.zeros(len(common), dtype=bool)
    # Checked both ways round, so that both directions of a pair (es->en, en->es) keep the same verses.
    shift_args = (cfg.shift_window, cfg.max_shift, cfg.shift_margin)
    shifted[both] = misnumbered(src_words[both], tgt_words[both], *shift_args) | misnumbered(
        tgt_words[both], src_words[both], *shift_args
    )

    dropped = {
        "only_in_source": len(src) - len(common),
        "only_in_target": len(tgt) - len(common),
        "empty_source": 0,
        "empty_target": 0,
        "too_long": 0,
        "bad_ratio": 0,
        "misnumbered": 0,
    }
    splits: dict[str, list[tuple[str, str, str]]] = {name: [] for name in SPLITS}
    for i, ref in enumerate(common):
        # The split is fixed before filtering, so a filter setting never moves a verse between splits.
        split = split_of(ref, cfg.valid_fraction, cfg.test_fraction)
        ns, nt = int(src_words[i]), int(tgt_words[i])
        if ns == 0:
            dropped["empty_source"] += 1
        elif nt == 0:
            dropped["empty_target"] += 1
        elif max(ns, nt) > cfg.max_words:
            dropped["too_long"] += 1
        elif max(ns, nt) / min(ns, nt) > cfg.max_ratio:
            dropped["bad_ratio"] += 1
        elif shifted[i]:
            dropped["misnumbered"] += 1
        else:
            splits[split].append((ref, src[ref], tgt[ref]))
    return splits, dropped


def misnumbered(
    src_words: np.ndarray, tgt_words: np.ndarray, window: int, max_shift: int, margin: float
) -> np.ndarray:
    """Which pairs lie in a stretch where one text numbers its verses differently from the other.

    A translation's length ratio is steady. For each run of 2 * window + 1 consecutive pairs, compare
    the mean |log length ratio| (less its median) when verses are paired by number with the same when one
    side is shifted by 1..max_shift verses; if a shift fits better by `margin`, every pair of the run is
    flagged. Word counts are > 0; returns a boolean mask.
    """
    n, width = len(src_words), 2 * window + 1
    flagged = np.zeros(n, dtype=bool)
    if max_shift == 0 or n < width:
        return flagged
    # + 2 words steadies the ratio of very short verses ("Jesus wept.").
    log_src, log_tgt = np.log(src_words + 2.0), np.log(tgt_words + 2.0)
    median = np.median(log_src - log_tgt)

    def window_cost(shift: int) -> np.ndarray:
        cost = np.full(n, np.inf)  # pairing past either end never fits
        lo, hi = max(0, -shift), min(n, n - shift)
        cost[lo:hi] = np.abs(log_src[lo:hi] - log_tgt[lo + shift : hi + shift] - median)
        return sliding_window_view(cost, width).mean(axis=1)  # (n - width + 1,)

    in_place = window_cost(0)
    best_shifted = np.min([window_cost(s) for s in range(-max_shift, max_shift + 1) if s != 0], axis=0)
    bad = best_shifted < in_place - margin
    for offset in range(width):  # flag every pair of each bad window
        flagged[offset : offset + len(bad)] |= bad
    return flagged
