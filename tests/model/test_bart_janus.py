"""BART-JANUS end to end on tiny local files (no network): HF tokenizer, GLGE task loaders, `janus
convert`, `janus data prepare --tokenizer`, `janus train --init-from`, `janus evaluate` with ROUGE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from janusgen.checkpoint import load_model  # noqa: E402
from janusgen.cli import main  # noqa: E402
from janusgen.data.dataset import PairDataset  # noqa: E402
from janusgen.data.hf_tokenizer import HFTokenizer  # noqa: E402
from janusgen.data.sources import HuggingFaceSource, open_source  # noqa: E402
from janusgen.data.tasks import SEP, task  # noqa: E402
from janusgen.errors import DataError, JanusError  # noqa: E402
from janusgen.evaluation.metrics import rouge  # noqa: E402
from tests.conftest import train_argv  # noqa: E402
from tests.model.test_bart import TEXTS, build_bart, build_tokenizer  # noqa: E402


def save_splits(folder: Path, rows: dict[str, list[dict]]) -> Path:
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()}).save_to_disk(
        str(folder)
    )
    return folder


def xsum_rows(n: int) -> list[dict]:
    return [
        {"document": TEXTS[i % 4], "summary": " ".join(TEXTS[i % 4].split()[:3]), "id": str(i)}
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------ tokenizer


def test_hf_tokenizer_round_trip_and_special_ids(tmp_path: Path) -> None:
    build_tokenizer(tmp_path)
    tok = HFTokenizer.from_pretrained(tmp_path)  # a folder holding tokenizer.json
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, tok.vocab_size - 1)
    ids = tok.encode(TEXTS)
    assert all(ids) and tok.bos_id not in ids[0] and tok.eos_id not in ids[0]
    assert tok.decode([[tok.bos_id, *i, tok.eos_id, tok.pad_id] for i in ids]) == TEXTS
    assert HFTokenizer.from_bytes(tok.model_bytes).encode(TEXTS) == ids


def test_hf_tokenizer_without_special_tokens_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).save(str(tmp_path / "t.json"))
    with pytest.raises(JanusError, match="no <pad>, <s>, </s>, <mask> token"):
        HFTokenizer.from_file(tmp_path / "t.json")


# ---------------------------------------------------------------------------------------- tasks


def test_task_loaders_read_their_field_layouts(tmp_path: Path) -> None:
    squad = save_splits(
        tmp_path / "squad",
        {
            "train": [
                {
                    "id": "1",
                    "title": "t",
                    "context": "The fox lives in the wood.",
                    "question": "Where does the fox live?",
                    "answers": {"text": ["in the wood"], "answer_start": [14]},
                }
            ]
        },
    )
    persona = save_splits(
        tmp_path / "persona",
        {
            "train": [
                {
                    "personality": ["i like dogs .", "i am tall ."],
                    "candidates": ["wrong reply", "i have two dogs !"],
                    "history": ["hi", "hello , do you have pets ?"],
                    "conv_id": 0,
                    "utterance_idx": 1,
                }
            ]
        },
    )
    cnn = save_splits(
        tmp_path / "cnn", {"train": [{"article": "A  long\narticle.", "highlights": "Short.", "id": "x"}]}
    )
    pairs = {
        name: next(open_source(hf_dataset=str(path), src=None, tgt=None, task_name=name).pairs("train"))
        for name, path in (("squad_qg", squad), ("personachat", persona), ("cnn_dailymail", cnn))
    }
    assert pairs["squad_qg"] == (f"in the wood{SEP}The fox lives in the wood.", "Where does the fox live?")
    assert pairs["personachat"] == (
        f"i like dogs . i am tall .{SEP}hi{SEP}hello , do you have pets ?",
        "i have two dogs !",
    )
    assert pairs["cnn_dailymail"] == ("A long article.", "Short.")
    assert task("xsum").hub == "EdinburghNLP/xsum" and task("xsum").metric == "rouge"


def test_task_with_missing_columns_names_them(tmp_path: Path) -> None:
    path = save_splits(tmp_path / "d", {"train": [{"text": "a", "label": "b"}]})
    source = HuggingFaceSource(str(path), None, "document", "summary", task("xsum"))
    with pytest.raises(DataError, match="task xsum needs column\\(s\\) document, summary"):
        next(source.pairs("train"))
    with pytest.raises(JanusError, match="--task 'nope'"):
        task("nope")
    with pytest.raises(JanusError, match="--task only applies to --hf-dataset"):
        open_source(text=tmp_path, src=None, tgt=None, task_name="xsum")


def test_rouge_scores_identical_and_disjoint_text() -> None:
    same = rouge(["the cat sat"], ["the cat sat"])
    assert {k: round(v.score, 6) for k, v in same.items()} == {
        "rouge1": 100.0,
        "rouge2": 100.0,
        "rougeL": 100.0,
    }
    assert all(v.score == 0.0 for v in rouge(["a b"], ["c d"]).values())


# -------------------------------------------------------------------------------- end to end


def test_convert_prepare_finetune_decode_with_rouge(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bart = tmp_path / "bart"
    bart.mkdir()
    build_tokenizer(bart)
    build_bart(bart, HFTokenizer.from_file(bart / "tokenizer.json").vocab_size)
    ckpt = tmp_path / "bart-janus"
    assert main(["convert", "--hf", str(bart), "--out", str(ckpt), "--max-target-length", "40"]) == 0
    assert main(["convert", "--hf", str(bart), "--out", str(ckpt)]) == 2  # never overwrites

    xsum = save_splits(
        tmp_path / "xsum", {"train": xsum_rows(16), "validation": xsum_rows(4), "test": xsum_rows(4)}
    )
    data = tmp_path / "data"
    prepare = ["data", "prepare", "--hf-dataset", str(xsum), "--task", "xsum", "--out", str(data)]
    assert main([*prepare, "--tokenizer", str(ckpt / "tokenizer.json")]) == 0
    meta = json.loads((data / "meta.json").read_text())
    assert meta["tokenizer"] == "tokenizer.json" and not (data / "spm.model").exists()
    assert meta["special_ids"] == {"pad": 1, "unk": 3, "bos": 0, "eos": 2, "mask": meta["vocab_size"] - 1}
    assert meta["source"]["task"] == "xsum" and (meta["src"], meta["tgt"]) == ("document", "summary")
    assert PairDataset.open(data, "test").texts()[0][0] == TEXTS[0]

    run = tmp_path / "run"
    options = ["--max-updates", "3", "--validate-every", "3", "--max-tokens", "400", "--lr", "1e-4"]
    options += ["--valid-bleu-sentences", "2", "--precision", "fp32", "--device", "cpu"]
    train = train_argv(
        str(data),
        str(run),
        "--init-from",
        str(ckpt),
        "--objective",
        "janus",
    )
    assert main([*train, *options]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary
    model, tok, config = load_model(run / "last")
    assert isinstance(tok, HFTokenizer) and config["init_from"] == str(ckpt.resolve())
    assert model.cfg.ar_stream == "content" and config["train"]["lr"] == 1e-4
    assert config["train"]["warmup_updates"] == 500 and config["train"]["adam_beta2"] == 0.999  # finetune

    for mode in ("ar", "nar"):
        evaluate = ["evaluate", "--checkpoint", str(run / "last"), "--data", str(data), "--mode", mode]
        assert main([*evaluate, "--beam", "2", "--device", "cpu", "--max-len-b", "12"]) == 0
        out = capsys.readouterr().out
        assert "ROUGE-1" in out and "ROUGE-L" in out, out

    # --init-from needs a checkpoint and refuses --preset (the model is the checkpoint's)
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--out", str(run), "--init-from"])
    assert main([*train, "--preset", "tiny", *options]) == 2
