"""The Python API and the `generate` / `evaluate` commands on a trained tiny checkpoint."""

import contextlib
import io
import json
import shutil

import pytest

from janusgen.cli import main
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.evaluation.metrics import chrf
from tests.conftest import _SRC_WORDS, _TGT_WORDS

SENTENCES = [
    "casa perro",
    "sol luna mar rio",
    "agua",
    "fuego tierra cielo dia noche luz sal vino",
    "flor arbol pan",
    "monte",
    "gato gato gato",
    "rio mar luna sol agua casa",
]


@pytest.fixture(scope="module")
def translator(toy_checkpoint):
    return Translator.load(toy_checkpoint)


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="ar", beam=1),
        dict(mode="ar", beam=4),
        dict(mode="nar", iterations=4, length_beam=3),
        dict(mode="nar", iterations=2, length_beam=2, rerank=True),
        dict(mode="nar", iterations=2, length_beam=2, rerank=True, collapse_repeats=True),
    ],
)
def test_alone_equals_inside_a_batch_of_32_mixed_lengths(translator, options):
    batch = (SENTENCES * 4)[:32]
    together = translator.generate(batch, **options, max_tokens=64)  # several token-budget batches
    alone = [translator.generate([s], **options)[0] for s in SENTENCES]
    assert together == (alone * 4)[:32]
    assert translator.generate(batch, **options) == together  # deterministic


def test_the_model_translates_the_toy_task(translator):
    """The toy task maps each word and reverses the order; a random model scores near 0 chrF."""
    words = dict(zip(_SRC_WORDS, _TGT_WORDS, strict=True))
    expected = [" ".join(words[w] for w in reversed(s.split())) for s in SENTENCES]
    assert chrf(translator.generate(SENTENCES, mode="ar", beam=4), expected).score > 60
    assert chrf(translator.generate(SENTENCES, mode="nar", iterations=10), expected).score > 30


def test_empty_lines_give_empty_outputs_in_place(translator):
    outputs = translator.generate(["casa", "", "   ", "sol"], mode="nar", iterations=2, return_scores=True)
    assert [o[0] for o in outputs][1:3] == ["", ""]
    assert outputs[0][0] and outputs[3][0]


def test_too_long_inputs_are_truncated_with_a_warning(translator):
    long = " ".join(["casa"] * 200)
    with pytest.warns(UserWarning, match="truncated"):
        out = translator.generate([long, "sol"], mode="ar", beam=1)
    assert len(out) == 2 and out[1]


def test_characters_outside_the_vocabulary_do_not_break_decoding(translator):
    outputs = translator.generate(["漢字 ☃ casa", "ÆØÅ"], mode="ar", beam=2)
    assert len(outputs) == 2 and all("⁇" not in o for o in outputs)  # <unk> is never generated


def test_bad_options_and_checkpoints(translator, toy_checkpoint, tmp_path):
    with pytest.raises(JanusError, match="--mode"):
        translator.generate(["casa"], mode="fast")
    with pytest.raises(JanusError, match="--beam"):
        translator.generate(["casa"], beam=0)
    with pytest.raises(JanusError, match="unknown decoding option"):
        translator.generate(["casa"], temperature=2.0)
    broken = tmp_path / "broken"
    shutil.copytree(toy_checkpoint, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(JanusError, match="missing model.safetensors"):
        Translator.load(broken)
    config = json.loads((toy_checkpoint / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((toy_checkpoint / "model.safetensors").read_bytes())
    (broken / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    (broken / "checksums.json").unlink()  # as an older janusgen wrote it: no manifest to catch it first
    with pytest.raises(JanusError, match="another version"):
        Translator.load(broken)


def test_generate_cli_streams_one_line_per_input(toy_checkpoint, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("casa perro\n\nsol luna\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    argv = [
        "generate",
        "--checkpoint",
        str(toy_checkpoint),
        "--mode",
        "nar",
        "--iterations",
        "4",
        "--input",
        str(src),
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert main(argv[:-2] + ["--scores"]) == 0
    scored = capsys.readouterr().out.splitlines()
    assert len(scored) == 3 and scored[1] == "0.0000\t"
    src.write_bytes(b"casa\n\xff\xfe\n")
    assert main(argv) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_evaluate_cli_reports_bleu_chrf_and_speed(toy_checkpoint, toy_data, tmp_path, capsys):
    report = tmp_path / "eval.json"
    argv = [
        "evaluate",
        "--checkpoint",
        str(toy_checkpoint),
        "--data",
        str(toy_data),
        "--mode",
        "ar",
        "--beam",
        "2",
        "--json",
        str(report),
        "--hypotheses",
        str(tmp_path / "hyp.txt"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AR beam 2" in printed and "nrefs:1" in printed
    result = json.loads(report.read_text())
    assert result["sentences"] == 40 and result["bleu"] > 10 and result["sentences_per_s"] > 0
    assert result["bleu_signature"].startswith("nrefs:1") and result["decode"]["beam"] == 2
    assert len((tmp_path / "hyp.txt").read_text().splitlines()) == 40
    assert main(argv[:-4] + ["--split", "train"]) == 2
    assert "every split but train" in capsys.readouterr().err


class Terminal(io.StringIO):
    """stderr as a terminal: tqdm shows its bars only there (or when asked)."""

    def isatty(self) -> bool:
        return True


def test_generate_and_evaluate_show_progress_in_lines_and_sentences(toy_checkpoint, toy_data, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("casa perro\n\nsol luna\nagua\nluz", encoding="utf-8")  # 5 lines, no final newline
    common = ["--checkpoint", str(toy_checkpoint), "--mode", "nar"]
    out = tmp_path / "out.txt"
    for argv, done in (
        (["generate", *common, "--input", str(src), "--output", str(out), "--buffer-lines", "2"], "5/5 ["),
        (["evaluate", *common, "--data", str(toy_data), "--limit", "30"], "30/30 ["),
    ):
        with contextlib.redirect_stderr(Terminal()) as err:
            assert main(argv) == 0
        final = err.getvalue().split("\r")[-1]
        unit = "lines" if argv[0] == "generate" else "sentences"
        assert final.startswith(f"{argv[0]}: 100%") and done in final and f" {unit}/s]" in final, final
    with contextlib.redirect_stderr(Terminal()) as err:
        assert main(["--quiet", "generate", *common, "--input", str(src), "--output", str(out)]) == 0
    assert err.getvalue() == ""


# --------------------------------------------------------------- views a checkpoint never trained


@pytest.mark.parametrize(
    "objective, options, message",
    [
        (
            "ar",
            dict(mode="nar"),
            r"--mode nar: .* trained with the ar objective, which never trains the NAR view",
        ),
        ("cmlm", dict(mode="ar"), r"--mode ar: .* cmlm objective, which never trains the AR view"),
        ("cmlm", dict(mode="speculative"), r"--mode speculative: .* never trains the AR view"),
        ("cmlm", dict(mode="nar", rerank=True), r"--rerank: .* never trains the AR view"),
    ],
)
def test_decoding_a_view_the_objective_never_trained_is_refused(translator, objective, options, message):
    """NAR decoding of an `ar` checkpoint (and AR of a `cmlm` one) ran silently."""
    from janusgen.config import to_dict
    from janusgen.presets import objective_preset

    untrained = Translator(
        translator.model, translator.tokenizer, {"objective": to_dict(objective_preset(objective))}
    )
    with pytest.raises(JanusError, match=message):
        untrained.generate(["casa"], **options)
    untrained.generate(["casa"], mode="speculative" if objective == "ar" else "nar")  # what it trained


def test_the_cli_refuses_nar_decoding_of_an_ar_checkpoint(toy_checkpoint, tmp_path, capsys, resign):
    from janusgen.config import to_dict
    from janusgen.presets import objective_preset

    ckpt = shutil.copytree(toy_checkpoint, tmp_path / "ar")
    config = json.loads((ckpt / "config.json").read_text())
    config["objective"] = to_dict(objective_preset("ar"))
    (ckpt / "config.json").write_text(json.dumps(config))
    resign(ckpt)
    (tmp_path / "in.txt").write_text("casa\n")
    argv = ["generate", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in.txt"), "--mode", "nar"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--mode nar:" in err and "use --mode ar" in err and "Traceback" not in err
