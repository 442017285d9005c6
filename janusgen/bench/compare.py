"""`janus bench compare`: one bench's system against the same system of another bench (an ablation
against the default, or one seed against another), setting by setting, with the paired bootstrap on the
outputs both benches kept; two benches evaluated on different test sets are refused.
"""

from __future__ import annotations

from pathlib import Path

from janusgen.bench.common import QUALITY, _outputs_file, _read_outputs, _read_path
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import id_of
from janusgen.errors import JanusError
from janusgen.evaluation.significance import PairedBootstrap, paired_bootstrap
from janusgen.fileio import read_json


def compare_benches(
    out: Path, baseline_out: Path, system: str = "janus", samples: int = 1000
) -> list[PairedBootstrap]:
    """`system` of the bench in `out` against the same system of the bench in `baseline_out` (an ablation
    against the default, or one seed against another), setting by setting, with the paired bootstrap."""
    reports = []
    for folder in (Path(out), Path(baseline_out)):
        quality_file = folder / QUALITY
        if not quality_file.is_file():
            raise JanusError(f"{quality_file}: not found; run `janus bench quality --out {folder}` first")
        report = read_json(quality_file)
        if system not in report["systems"]:
            raise JanusError(f"{quality_file}: no {system} system in this bench")
        reports.append(report)
    report, baseline = reports
    data, baseline_data = (
        _read_path(f, r["data"]).resolve() for f, r in ((out, report), (baseline_out, baseline))
    )
    if (data, report["test_sentences"]) != (baseline_data, baseline["test_sentences"]):
        raise JanusError(
            f"{out} and {baseline_out} were evaluated on different test sets "
            f"({report['test_sentences']} sentences of {data} against "
            f"{baseline['test_sentences']} of {baseline_data})"
        )
    _, references = PairDataset.open(data, "test").texts()
    references = references[: report["test_sentences"]]
    in_baseline = {id_of(r) for r in baseline["systems"][system]["results"]}
    tests = []
    for r in report["systems"][system]["results"]:
        setting_id = id_of(r)
        if setting_id is not None and setting_id in in_baseline:
            named = [
                (
                    f"{folder.name}: {system} {r['setting']}",
                    _read_outputs(_outputs_file(folder, system, setting_id)),
                )
                for folder in (Path(out), Path(baseline_out))
            ]
            tests.append(paired_bootstrap(named[0], named[1], references, samples))
    return tests
