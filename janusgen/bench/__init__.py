"""`janus bench quality` and `janus bench speed`: the paper's claims, measured side by side.

quality: train `ar`, `cmlm` and `janus` with the same model, data, batches, seed and number of updates,
evaluate each on the test split in every decoding setting it supports, and test the claims with
sacreBLEU's paired bootstrap. speed: batch-1 latency and batch-64 throughput of every setting on the
same test sentences, in one process, as speedups over AR beam 5.

Everything is written under --out and every finished step is skipped on a second run, so an
interrupted bench resumes where it stopped (an interrupted training run resumes from its `last`).

One module per job: `budgets` (what one system changes in its budget; the budgets are
janusgen.presets.BUDGETS), `quality` (train, evaluate, test the claims), `speed` (time every setting),
`compare` (one bench against another), `report` (Markdown tables and the validation-BLEU plot), `common`
(the bench folder's layout and what every report records). The names below are the package's public
ones; patch a name in the module that looks it up.
"""

from janusgen.bench.budgets import (
    EQUAL_TIME_MAX_UPDATES,
    SYSTEMS,
    check_distilled,
    decodes,
    settings_for,
    system_setup,
)
from janusgen.bench.common import PLOT, QUALITY, SPEED, hardware
from janusgen.bench.compare import compare_benches
from janusgen.bench.quality import CLAIMS, run_quality_bench
from janusgen.bench.report import format_quality, format_speed, format_tests, plot_valid_bleu, valid_curves
from janusgen.bench.speed import run_speed_bench

__all__ = [
    "CLAIMS",
    "EQUAL_TIME_MAX_UPDATES",
    "PLOT",
    "QUALITY",
    "SPEED",
    "SYSTEMS",
    "check_distilled",
    "compare_benches",
    "decodes",
    "format_quality",
    "format_speed",
    "format_tests",
    "hardware",
    "plot_valid_bleu",
    "run_quality_bench",
    "run_speed_bench",
    "settings_for",
    "system_setup",
    "valid_curves",
]
