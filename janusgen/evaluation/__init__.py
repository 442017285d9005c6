"""Evaluation: corpus metrics (sacreBLEU BLEU and chrF, ROUGE) and speed measurements."""
