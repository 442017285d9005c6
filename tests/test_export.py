"""`janus export`: every configuration that maps onto BART, mBART or Pegasus exports to a Hugging Face
folder and a CTranslate2 model whose greedy (and beam-4) outputs equal ours on 200 inputs; the exported
tokenizer encodes and decodes as ours; the rest is refused with the setting that prevents it; and HF BART
-> `janus convert` -> `janus export --format hf` gives the original model back.

The models are tiny and briefly trained (a random one repeats one token, near-ties everywhere), on the
toy word-reversal task of tests/conftest.py, with both kinds of tokenizer (SentencePiece, byte-level BPE)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from janusgen.checkpoint import load_model, save_checkpoint  # noqa: E402
from janusgen.cli import main  # noqa: E402
from janusgen.config import DecodeConfig  # noqa: E402
from janusgen.data.batching import pad_sequences  # noqa: E402
from janusgen.data.hf_tokenizer import HFTokenizer  # noqa: E402
from janusgen.data.tokenizer import Tokenizer  # noqa: E402
from janusgen.decoding.api import decode  # noqa: E402
from janusgen.decoding.common import ar_prefix  # noqa: E402
from janusgen.errors import JanusError  # noqa: E402
from janusgen.export import INFO_FILE, export  # noqa: E402
from janusgen.export.architecture import standard_architecture  # noqa: E402
from janusgen.export.ctranslate2 import ctranslate2_options  # noqa: E402
from janusgen.model.config import ModelConfig  # noqa: E402
from janusgen.model.transformer import JanusTransformer  # noqa: E402
from janusgen.model_card import CARD_FILE  # noqa: E402
from janusgen.objectives import JanusObjective  # noqa: E402
from janusgen.presets import model_preset, objective_preset  # noqa: E402
from tests.conftest import _SRC_WORDS, _TGT_WORDS  # noqa: E402

INPUTS = 200
LIMIT = 30  # output tokens at most: every output of the trained models ends before it (checked)
EXPORTABLE = {"ar_stream": "content", "relative_positions": 0}
NEAR_TIE = 1e-4  # two hypotheses' length-normalised log-probs this close are equal up to rounding


@dataclass(frozen=True)
class Case:
    tokenizer: str  # "spm" (janusgen's own) or "bpe" (a Hugging Face byte-level BPE, as `janus convert`'s)
    architecture: str
    changes: dict[str, Any]


# Each architecture once, with both start-token layouts (BOS; a converted BART's </s>, then BOS forced
# or chosen by the model) and every other option in one state or the other somewhere
CASES = {
    "bart-converted": Case(  # what `janus convert` makes of a BART like bart-large: BOS forced after </s>
        "bpe",
        "BART",
        {
            "pre_norm": False,
            "embedding_norm": True,
            "position_offset": 2,
            "source_bos": True,
            "logits_bias": True,
            "forced_bos": True,
            "activation": "gelu",
            "tie_output": False,
            "scale_embedding": False,
        },
    ),
    "bart-sinusoidal": Case(
        "spm", "BART", {"pre_norm": False, "embedding_norm": True, "learned_positions": False}
    ),
    "mbart-free-bos": Case(  # </s> first, BOS chosen by the model (as bart-base)
        "bpe",
        "mBART",
        {
            "pre_norm": True,
            "embedding_norm": True,
            "source_bos": True,
            "logits_bias": True,
            "position_offset": 2,
        },
    ),
    "pegasus": Case(
        "spm",
        "Pegasus",
        {"pre_norm": True, "embedding_norm": False, "activation": "gelu", "tie_output": False},
    ),
}


def toy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """The toy task of tests/conftest.py: target = the source's words translated, in reverse order."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        ids = [rng.randrange(len(_SRC_WORDS)) for _ in range(rng.randint(1, 8))]
        pairs.append((" ".join(_SRC_WORDS[i] for i in ids), " ".join(_TGT_WORDS[i] for i in reversed(ids))))
    return pairs


def build_tokenizer(kind: str, folder: Path) -> Any:
    texts = [t for pair in toy_pairs(500, seed=1) for t in pair]
    if kind == "spm":
        return Tokenizer.train(texts, vocab_size=64)
    from tokenizers import Tokenizer as HFBackend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFBackend(models.BPE(unk_token="<unk>"))  # BART's layout: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.save(str(folder / "tokenizer.json"))
    return HFTokenizer.from_file(folder / "tokenizer.json")


def ids_with_eos(tokenizer: Any, texts: list[str], bos: bool = False) -> list[list[int]]:
    head = [tokenizer.bos_id] if bos else []
    return [head + ids + [tokenizer.eos_id] for ids in tokenizer.encode(texts)]


def batch(rows: list[list[int]], pad: int) -> torch.Tensor:
    import numpy as np

    return pad_sequences([np.asarray(r) for r in rows], pad)


def trained_model(cfg: ModelConfig, tokenizer: Any, updates: int = 250) -> JanusTransformer:
    """A tiny model trained on the toy task (AR loss only, no label smoothing): confident, varied outputs
    that end with EOS, so that greedy and beam search have clear winners."""
    torch.manual_seed(0)
    model = JanusTransformer(cfg)
    objective = JanusObjective(dataclasses.replace(objective_preset("ar"), label_smoothing=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    pairs = toy_pairs(2048, seed=2)
    src_ids = ids_with_eos(tokenizer, [s for s, _ in pairs])  # encoded once, batched 32 at a time
    tgt_ids = ids_with_eos(tokenizer, [t for _, t in pairs], bos=True)
    for step in range(updates):
        rows = slice((step * 32) % len(pairs), (step * 32) % len(pairs) + 32)
        optimizer.zero_grad()
        objective(
            model, batch(src_ids[rows], tokenizer.pad_id), batch(tgt_ids[rows], tokenizer.pad_id)
        ).loss.backward()
        optimizer.step()
    return model.eval()


@dataclass
class Exported:
    case: Case
    model: JanusTransformer
    tokenizer: Any
    checkpoint: Path
    hf: Path
    ct2: Path | None
    texts: list[str]  # the 200 test inputs


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    tokenizer = build_tokenizer(case.tokenizer, folder)
    specials = {f"{n}_id": getattr(tokenizer, f"{n}_id") for n in ("pad", "unk", "bos", "eos", "mask")}
    changes = dict(case.changes)
    if case.tokenizer == "bpe":  # the converted-BART layout: the decoder reads </s> first
        changes["decoder_start_id"] = tokenizer.eos_id
    cfg = dataclasses.replace(
        model_preset("tiny"), vocab_size=tokenizer.vocab_size, **specials, **EXPORTABLE, **changes
    )
    assert standard_architecture(cfg).name == case.architecture
    model = trained_model(cfg, tokenizer)
    save_checkpoint(folder / "ckpt", model, tokenizer, {"model": dataclasses.asdict(cfg)})
    export(folder / "ckpt", folder / "hf", "hf")
    ct2 = None
    if importlib.util.find_spec("ctranslate2") is not None:
        export(folder / "ckpt", folder / "ct2", "ctranslate2")
        ct2 = folder / "ct2"
    texts = [s for s, _ in toy_pairs(INPUTS, seed=3)]
    return Exported(
        case, load_model(folder / "ckpt")[0], tokenizer, folder / "ckpt", folder / "hf", ct2, texts
    )


@dataclass
class Outputs:
    tokens: list[list[int]]  # per input, as our search returns them (no start tokens, no EOS)
    at_limit: list[bool]  # the search stopped at the length limit, without choosing EOS


def ours(e: Exported, beam: int) -> Outputs:
    src = batch(ids_with_eos(e.tokenizer, e.texts), e.tokenizer.pad_id)
    out = decode(
        e.model, src, DecodeConfig(beam=beam, max_len_a=0.0, max_len_b=LIMIT, length_penalty=1.0)
    ).tokens
    assert len({len(o) for o in out}) > 3 and len({tuple(o) for o in out}) > INPUTS // 2, "outputs too alike"
    chosen_bos = int(ar_prefix(e.model.cfg).free_bos)  # a chosen BOS counts against the limit, then goes
    return Outputs(out, [len(o) + chosen_bos >= LIMIT for o in out])


def theirs(e: Exported, generated: list[list[int]]) -> Outputs:
    """Outputs from generated ids that follow the start tokens (a chosen BOS first, if any)."""
    cfg = e.model.cfg
    tokens, at_limit = [], []
    for ids in generated:
        ids = ids[: ids.index(cfg.eos_id)] if cfg.eos_id in ids else ids
        at_limit.append(len(ids) >= LIMIT)
        tokens.append(ids[1:] if cfg.decoder_start_id is not None and ids[:1] == [cfg.bos_id] else ids)
    return Outputs(tokens, at_limit)


def hf_prefix(e: Exported) -> list[int]:
    """What Hugging Face's generate returns before the first chosen token: the start token, a forced BOS."""
    cfg = e.model.cfg
    return list(ar_prefix(cfg).tokens) if cfg.forced_bos else [ar_prefix(cfg).tokens[0]]


def search_score(e: Exported, index: int, tokens: list[int]) -> float:
    """What our beam search ranks `tokens` (an output for input `index`) by: the log-prob of its tokens and
    EOS (and of a chosen BOS), over their number (and a forced BOS's)."""
    cfg = e.model.cfg
    prefix = ar_prefix(cfg)
    chosen = ([cfg.bos_id] if prefix.free_bos else []) + tokens + [cfg.eos_id]
    seq = torch.tensor([[*prefix.tokens, *chosen]])
    src = batch(ids_with_eos(e.tokenizer, [e.texts[index]]), cfg.pad_id)
    with torch.no_grad():
        logp = e.model.ar_logits(seq, e.model.encode(src)).float().log_softmax(-1)
    picked = logp[0, len(prefix.tokens) - 1 :].gather(-1, torch.tensor(chosen)[:, None])
    return picked.sum().item() / (len(chosen) + prefix.counted)


def compare(name: str, expected: Outputs, got: Outputs, beam: int) -> list[int]:
    """The inputs whose outputs differ, after printing the counts. Greedy: every input is compared. Beam:
    the inputs where neither search reached the length limit, where the three searches score the
    last token differently (ours charges the forced EOS its log-prob, as fairseq does; Hugging Face's
    forced EOS costs nothing; CTranslate2 ends the hypothesis without EOS)."""
    compared = [i for i in range(INPUTS) if beam == 1 or not (expected.at_limit[i] or got.at_limit[i])]
    differ = [i for i in compared if expected.tokens[i] != got.tokens[i]]
    print(f"{name} beam {beam}: {len(compared) - len(differ)}/{len(compared)} outputs equal", end="")
    print(f" ({INPUTS - len(compared)} at the length limit not compared)" if beam > 1 else "")
    assert len(compared) >= INPUTS - 10, "too many outputs reach the limit: the test lost its point"
    return differ


@pytest.mark.parametrize("beam", [1, 4])
def test_hf_generate_equals_ours(exported: Exported, beam: int) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(str(exported.hf))
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(exported.hf)).eval()
    expected_class = {"BART": "Bart", "mBART": "MBart", "Pegasus": "Pegasus"}[exported.case.architecture]
    assert type(hf).__name__ == f"{expected_class}ForConditionalGeneration"
    inputs = tok(exported.texts, return_tensors="pt", padding=True)
    prefix = hf_prefix(exported)
    with torch.no_grad():  # the exported generation config as it is; only the search's size given
        out = hf.generate(**inputs, num_beams=beam, max_length=len(prefix) + LIMIT + 1)
    assert all(row[: len(prefix)] == prefix for row in out.tolist())
    got = theirs(exported, [row[len(prefix) :] for row in out.tolist()])
    differ = compare(f"{exported.case.architecture} Hugging Face", ours(exported, beam), got, beam)
    assert not differ, (
        f"input {differ[0]}: ours {ours(exported, beam).tokens[differ[0]]}, HF {got.tokens[differ[0]]}"
    )


@pytest.mark.parametrize("beam", [1, 4])
def test_ctranslate2_equals_ours(exported: Exported, beam: int) -> None:
    """Greedy: equal. Beam: CTranslate2's search goes on where fairseq's (ours, and Hugging Face's with
    early stopping) stops once `beam` hypotheses have finished; where the outputs differ, CTranslate2's
    is one our own model scores higher (or as high up to rounding), and ours is among its `beam` best."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    tok = transformers.AutoTokenizer.from_pretrained(str(exported.ct2))  # the tokenizer travels with it
    source = [tok.convert_ids_to_tokens(ids) for ids in tok(exported.texts).input_ids]
    translator = ctranslate2.Translator(
        str(exported.ct2), device="cpu", compute_type="float32", intra_threads=1
    )
    cfg = exported.model.cfg
    pieces = [exported.tokenizer.piece(i) for i in range(cfg.vocab_size)]
    results = translator.translate_batch(
        source,
        beam_size=beam,
        num_hypotheses=beam,
        max_decoding_length=LIMIT + int(cfg.forced_bos),
        length_penalty=1.0,
        **ctranslate2_options(cfg, pieces, len(source)),
    )
    forced = int(cfg.forced_bos)  # the target prefix comes back as the first token
    ranked = [[tok.convert_tokens_to_ids(h)[forced:] for h in r.hypotheses] for r in results]
    got = theirs(exported, [hyps[0] for hyps in ranked])
    expected = ours(exported, beam)
    differ = compare(f"{exported.case.architecture} CTranslate2", expected, got, beam)
    if beam == 1:
        assert not differ, (
            f"input {differ[0]}: ours {expected.tokens[differ[0]]}, CT2 {got.tokens[differ[0]]}"
        )
    ties = 0
    for i in differ:
        gain = search_score(exported, i, got.tokens[i]) - search_score(exported, i, expected.tokens[i])
        assert gain > -NEAR_TIE, (i, gain)  # better, or as good up to rounding (summation order)
        ties += gain <= NEAR_TIE
        assert expected.tokens[i] in theirs(exported, ranked[i]).tokens, i
    if differ:
        print(
            f"  the other {len(differ)}: CTranslate2's output scores higher by our model ({ties} equal up "
            "to rounding); ours is among its 4"
        )


def test_exported_tokenizer_encodes_and_decodes_as_ours(exported: Exported) -> None:
    """AutoTokenizer on a text gives what the exported encoder reads ([<s>] ids </s>), and decodes our
    outputs to our texts."""
    tok = transformers.AutoTokenizer.from_pretrained(str(exported.hf))
    texts = [*exported.texts, "casa  perro", "ñandú über", "tree"]
    expected = ids_with_eos(exported.tokenizer, texts, bos=exported.model.cfg.source_bos)
    assert tok(texts).input_ids == expected
    outputs = ours(exported, 1).tokens
    assert tok.batch_decode(outputs, skip_special_tokens=True) == exported.tokenizer.decode(outputs)


def test_export_info_and_files(exported: Exported) -> None:
    info = json.loads((exported.hf / INFO_FILE).read_text())
    assert info["architecture"] == exported.case.architecture
    assert info["max_logit_difference"] < 1e-4
    names = {p.name for p in exported.hf.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert ("spm.model" in names) == (exported.case.tokenizer == "spm")
    gen = transformers.GenerationConfig.from_pretrained(str(exported.hf))
    cfg = exported.model.cfg
    assert gen.decoder_start_token_id == hf_prefix(exported)[0]
    assert gen.forced_bos_token_id == (cfg.bos_id if cfg.forced_bos else None)
    if exported.ct2 is not None:
        ct2_config = json.loads((exported.ct2 / "config.json").read_text())
        assert ct2_config["decoder_start_token"] == exported.tokenizer.piece(hf_prefix(exported)[0])
        assert json.loads((exported.ct2 / INFO_FILE).read_text())["max_log_prob_difference"] < 1e-4


def test_export_writes_a_model_card(exported: Exported) -> None:
    """README.md: the library that loads the folder, what it was exported from, the check it passed."""
    folders = {"transformers": exported.hf, "ctranslate2": exported.ct2}
    for library, folder in folders.items():
        if folder is None:
            continue
        card = (folder / CARD_FILE).read_text(encoding="utf-8")
        info = json.loads((folder / INFO_FILE).read_text())
        assert card.startswith(f"---\nlibrary_name: {library}\ntags:\n- janusgen\n")
        assert f"as a {exported.case.architecture} model ({info['class']})" in card
        difference = info.get("max_logit_difference", info.get("max_log_prob_difference"))
        assert f"by at most {difference:.2g}" in card
        assert f"{exported.model.num_parameters():,} parameters" in card


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "the model's AR view uses the query stream (ar_stream=query)"),
        ({"ar_stream": "content"}, "relative-position bias (relative_positions=32)"),
        (
            {"ar_stream": "content", "relative_positions": 0, "pre_norm": False},
            "pre_norm=false, embedding_norm=false",
        ),
    ],
    ids=["query-stream", "relative-positions", "post-norm-without-embedding-norm"],
)
def test_models_without_a_standard_architecture_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(JanusError, match="--format hf: ") as caught:
        standard_architecture(dataclasses.replace(model_preset("tiny"), **changes), "--format hf")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("preset", ["tiny", "small", "compact", "base", "paper-iwslt", "transformer-base"])
def test_no_preset_exports_as_it_is(preset: str) -> None:
    """Every preset decodes AR from the query stream (paper-iwslt too: its query rows sit at their
    content row's position, still [MASK] rows): none is a plain decoder."""
    with pytest.raises(JanusError, match="ar_stream=query"):
        standard_architecture(model_preset(preset))


def test_cli_refuses_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = build_tokenizer("spm", tmp_path)
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=tokenizer.vocab_size)
    save_checkpoint(tmp_path / "ckpt", JanusTransformer(cfg), tokenizer, {"model": dataclasses.asdict(cfg)})
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ar_stream=query" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no folder, no temporary left


@pytest.mark.parametrize("exported", ["pegasus"], indirect=True)  # one case is enough for the CLI
def test_cli_exports_once_and_never_overwrites(exported: Exported, tmp_path: Path, capsys) -> None:
    out = tmp_path / "hf"
    argv = ["export", "--checkpoint", str(exported.checkpoint), "--format", "hf", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "Pegasus"
    before = (out / "model.safetensors").read_bytes()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before


# ------------------------------------------------------------------------------ BART-JANUS round trip


def test_bart_round_trip_gives_the_original_model_back(tmp_path: Path) -> None:
    """HF BART -> `janus convert` -> `janus export --format hf`: the same weights, the same start tokens
    and the same logits as the original BartForConditionalGeneration."""
    from janusgen.checkpoint import save_checkpoint
    from janusgen.model.bart import convert
    from tests.model.test_bart import build_bart
    from tests.model.test_bart import build_tokenizer as build_bart_tokenizer

    build_bart_tokenizer(tmp_path)
    vocab = HFTokenizer.from_file(tmp_path / "tokenizer.json").vocab_size
    for start, tied in (("hf", True), ("forced", False)):
        bart = tmp_path / f"bart-{start}"
        bart.mkdir()
        build_bart_tokenizer(bart)
        build_bart(bart, vocab, tied=tied, start=start)
        save_checkpoint(tmp_path / f"janus-{start}", *convert(str(bart)))
        assert (
            main(
                [
                    "export",
                    "--checkpoint",
                    str(tmp_path / f"janus-{start}"),
                    "--format",
                    "hf",
                    "--out",
                    str(tmp_path / f"back-{start}"),
                ]
            )
            == 0
        )
        original = transformers.BartForConditionalGeneration.from_pretrained(str(bart)).eval()
        back = transformers.BartForConditionalGeneration.from_pretrained(
            str(tmp_path / f"back-{start}")
        ).eval()
        theirs, ours_ = original.state_dict(), back.state_dict()
        assert set(theirs) == set(ours_)
        for name, value in theirs.items():
            assert torch.equal(value, ours_[name]), name
        for key in ("decoder_start_token_id", "forced_bos_token_id", "eos_token_id", "pad_token_id"):
            assert getattr(back.generation_config, key) == getattr(original.generation_config, key), key
        g = torch.Generator().manual_seed(0)
        src = torch.randint(4, vocab - 1, (3, 9), generator=g)
        tgt = torch.randint(4, vocab - 1, (3, 7), generator=g)
        with torch.no_grad():
            a = original(input_ids=src, decoder_input_ids=tgt).logits
            b = back(input_ids=src, decoder_input_ids=tgt).logits
        assert torch.equal(a, b)
