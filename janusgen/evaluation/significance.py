"""Paired bootstrap resampling (Koehn, 2004) through sacreBLEU, for claims like "system beats baseline"."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import sacrebleu
from sacrebleu.significance import PairedTest


@dataclass(frozen=True)
class PairedBootstrap:
    system: str
    baseline: str
    system_bleu: float
    baseline_bleu: float
    system_mean: float  # bootstrap estimate of the true mean, with the 95% confidence half-width
    system_ci: float
    baseline_mean: float
    baseline_ci: float
    p_value: float  # probability of a difference at least this large if the systems were equal
    samples: int

    @property
    def delta(self) -> float:
        return self.system_bleu - self.baseline_bleu

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delta": round(self.delta, 2)}

    def __str__(self) -> str:
        return (
            f"{self.system} vs {self.baseline}: {self.system_bleu:.2f} vs {self.baseline_bleu:.2f} "
            f"({self.delta:+.2f}), 95% CI ±{self.system_ci:.2f} / ±{self.baseline_ci:.2f}, "
            f"p = {self.p_value:.4f}"
        )


def paired_bootstrap(
    system: tuple[str, list[str]],
    baseline: tuple[str, list[str]],
    references: list[str],
    samples: int = 1000,
    seed: int = 12345,
) -> PairedBootstrap:
    """BLEU of (name, hypotheses) `system` against `baseline` on the same references, with sacreBLEU's
    paired bootstrap test (`samples` resamples of the test set, seeded)."""
    if not len(system[1]) == len(baseline[1]) == len(references):
        raise ValueError(
            f"{len(system[1])} and {len(baseline[1])} hypotheses for {len(references)} references"
        )
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)  # sacreBLEU reads its resampling seed from here
    try:
        test = PairedTest(
            [baseline, system],
            {"BLEU": sacrebleu.metrics.BLEU()},
            [references],
            test_type="bs",
            n_samples=samples,
        )
        _, scores = test()
    finally:
        if previous is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = previous
    base, sys_ = scores["BLEU"]
    # sacreBLEU counts resampled differences strictly above the observed one, which for identical
    # outputs (all differences 0) gives the smallest p-value; identical outputs cannot differ.
    p_value = 1.0 if system[1] == baseline[1] else float(sys_.p_value)
    r2 = lambda x: round(float(x), 2)
    return PairedBootstrap(
        system[0],
        baseline[0],
        r2(sys_.score),
        r2(base.score),
        r2(sys_.mean),
        r2(sys_.ci),
        r2(base.mean),
        r2(base.ci),
        round(p_value, 4),
        samples,
    )
