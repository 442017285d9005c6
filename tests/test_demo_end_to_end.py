"""`janus demo` from start to end on a tiny budget: corpus, prepare, plan, train, translate, report.

Only the reading of the SWORD modules is replaced (`janusgen.data.bible.build.read_sword_modules`, where
`build_bible_corpus` looks it up): the Bible itself comes from Debian packages, which a test may not be
able to fetch. Everything after it is the demo's own code on the demo's own settings: the Bible build
(cleaning, alignment, split, manifest and report), SentencePiece with the demo's 4,000 pieces, the
machine measurement that picks the model, a few seconds of training, AR and NAR decoding of the test
split, and the report. The synthetic "Bible" is a word-for-word translation with reversed word order in
two made-up syllable languages, with enough distinct words for a 4,000-piece vocabulary (the toy corpus of
conftest.py has 40 words). A few seconds of training teach the model nothing, so the test checks the
demo's wiring and its report, not its BLEU.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from janusgen.cli import main
from janusgen.data.bible import RawModule, SwordText
from janusgen.data.bible import build as bible_build
from janusgen.decoding.settings import SPEED_BASELINE, label
from janusgen.demo import SETTINGS

VERSES = 4000
WORDS = 4000  # per language; with 4,000 verses SentencePiece can make up to ~5,700 pieces of them


def synthetic_bible(seed: int = 0) -> dict[str, dict[str, str]]:
    """Raw "OSIS" verses of the source (sparv) and target (web) texts, by reference."""
    rng = random.Random(seed)
    consonants, vowels = "bcdfgjlmnprstvz", "aeiou"
    source_syllables = [c + v for c in consonants for v in vowels]
    target_syllables = [v + c for v in vowels for c in consonants]
    lexicon: dict[str, str] = {}
    while len(lexicon) < WORDS:
        word = rng.choice(source_syllables) + rng.choice(source_syllables)
        lexicon.setdefault(word, rng.choice(target_syllables) + rng.choice(target_syllables))
    words = list(lexicon)
    source, target = {}, {}
    for i in range(VERSES):
        ref = f"Gen.{i // 30 + 1}.{i % 30 + 1}"
        verse = [rng.choice(words) for _ in range(rng.randint(3, 10))]
        # a little markup for clean_osis to remove, as in the real modules
        source[ref] = f'<w lemma="x">{verse[0]}</w> ' + " ".join(verse[1:]) + "."
        target[ref] = " ".join(lexicon[w] for w in reversed(verse)) + '.<note placement="foot">n</note>'
    return {"sparv": source, "web": target}


@pytest.mark.slow
def test_demo_runs_every_step_and_reports_both_modes(tmp_path, capsys, monkeypatch):
    texts = synthetic_bible()
    reads = []

    def read_sword_modules(
        wanted: Sequence[SwordText], sword_path: str | None = None, cache_dir: Path | None = None
    ) -> list[RawModule]:
        reads.append([t.key for t in wanted])
        return [RawModule(dict(texts[t.key]), conf_version="1.0") for t in wanted]

    monkeypatch.setattr(bible_build, "read_sword_modules", read_sword_modules)
    work = tmp_path / "work"
    assert main(["demo", "--work", str(work), "--time-budget", "3s", "--limit", "6"]) == 0
    printed = capsys.readouterr()
    assert reads == [["sparv", "web"]]

    # the steps, in order, and what each printed
    steps = re.findall(r"^== (\d)/4 ", printed.err, flags=re.MULTILINE)
    assert steps == ["1", "2", "3", "4"]
    assert "Bible corpus sparv (es, spaRV1909eb) -> web (en, engWEB2015eb)" in printed.out
    assert "vocabulary 4000 pieces" in printed.out
    assert "measuring this machine to choose the model" in printed.err
    assert re.search(r"^  chosen: \d\+\d layers: ", printed.out, flags=re.MULTILINE)

    # the report: a BLEU / chrF / speed row for each setting, AR and NAR, speed relative to AR beam 5
    name = "JANUS without the KL terms (the cpu recipe)"  # never to be read as the paper's loss
    assert f"Spanish->English Bible, test split (6 verses), {name}" in printed.out
    assert f"3/4 training {name} for" in printed.err
    names = [label(s) for s in SETTINGS]
    assert any(n.startswith("AR ") for n in names) and any(n.startswith("NAR ") for n in names)
    header = re.search(r"^setting\s+BLEU\s+chrF\s+sent/s\s+tok/s\s+speedup$", printed.out, flags=re.MULTILINE)
    assert header
    number = r"\s+(\d+\.\d+)"
    rows = {}
    for name in names:
        row = re.search(
            rf"^{re.escape(name)}{number}{number}{number}\s+\d+{number}x$", printed.out, re.MULTILINE
        )
        assert row, f"no report row for {name}"
        rows[name] = [float(v) for v in row.groups()]
    assert rows[label(SPEED_BASELINE)][3] == 1.0  # the speedup baseline
    assert all(0 <= bleu <= 100 and sentences_per_s > 0 for bleu, _, sentences_per_s, _ in rows.values())
    assert "BLEU: nrefs:1" in printed.out and "chrF: nrefs:1" in printed.out
    # a few seconds of training: the report says that the model did not learn, rather than staying silent
    assert "warning: " in printed.out

    # what it leaves in the work folder
    bible = work / "bible"
    for split in ("train", "valid", "test"):
        for suffix in ("ref", "sparv", "web"):
            assert (bible / f"{split}.{suffix}").is_file()
    corpus = (bible / "train.sparv").read_text(encoding="utf-8") + (bible / "train.web").read_text("utf-8")
    assert "<" not in corpus  # the markup was cleaned
    manifest = json.loads((bible / "manifest.json").read_text())
    assert sum(s["pairs"] for s in manifest["splits"].values()) == VERSES
    meta = json.loads((work / "bible_data" / "meta.json").read_text())
    assert (meta["src"], meta["tgt"], meta["vocab_size"]) == ("sparv", "web", 4000)
    for name in ("best", "last", "log.jsonl", "summary.json"):
        assert (work / "run" / name).exists(), name
    plan = json.loads((work / "demo_plan.json").read_text())
    assert plan["planned_updates"] >= 0 and plan["ar_update_s"] > 0 and plan["joint_update_s"] > 0
    results = json.loads((work / "demo_results.json").read_text())
    assert [r["setting"] for r in results["results"]] == names
    assert all(r["sentences"] == 6 for r in results["results"])
    assert results["training"]["stop"] == "time_budget" and results["training"]["step"] >= 1
    assert results["plan"] == plan

    # a second run finds every step's output and only translates again
    assert main(["demo", "--work", str(work), "--time-budget", "3s", "--limit", "2"]) == 0
    again = capsys.readouterr()
    assert reads == [["sparv", "web"]]  # the corpus was not built again
    for already in ("1/4 corpus already in", "2/4 prepared data already in", "3/4 trained model already in"):
        assert already in again.err
    assert "measuring this machine" not in again.err
    assert "test split (2 verses)" in again.out
