"""Corpus metrics through sacreBLEU, with their signatures so that numbers can be trusted and compared."""

from __future__ import annotations

from dataclasses import dataclass

import sacrebleu


@dataclass(frozen=True)
class Score:
    name: str
    score: float
    signature: str

    def __str__(self) -> str:
        return f"{self.name} {self.score:.2f} ({self.signature})"


def bleu(hypotheses: list[str], references: list[str]) -> Score:
    """Corpus BLEU with sacreBLEU's default 13a tokenisation against one detokenised reference each."""
    metric = sacrebleu.metrics.BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return Score("BLEU", result.score, str(metric.get_signature()))


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, Score]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (x100, mean over sentences) with Porter stemming, as the
    summarisation papers (BART, BANG, GLGE) report them; `rouge-score` (the rouge extra)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ValueError("ROUGE needs rouge-score: pip install 'janusgen[rouge]'") from None
    names = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(names), use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for hyp, ref in zip(hypotheses, references, strict=True):
        for name, s in scorer.score(ref, hyp).items():
            totals[name] += s.fmeasure
    n = max(len(hypotheses), 1)
    signature = "rouge-score|F1|stemmer:porter|mean-over-sentences"
    return {
        name: Score(name.upper().replace("ROUGE", "ROUGE-"), 100 * totals[name] / n, signature)
        for name in names
    }


def chrf(hypotheses: list[str], references: list[str]) -> Score:
    metric = sacrebleu.metrics.CHRF()
    result = metric.corpus_score(hypotheses, [references])
    return Score("chrF", result.score, str(metric.get_signature()))
