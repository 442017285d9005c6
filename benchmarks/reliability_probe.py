"""Replay the reliability checklist (RELIABILITY.md, round 3: items 1-16) against the real `janus` command;
print held / broken per case.

Every case sets itself up in a fresh temporary folder, runs `python -m janusgen ...` in a subprocess (as a
user would), and checks the outcome: the exit status, one `janus: error:` line and no traceback, the user's
files byte for byte, nothing written outside `--out`, nothing half-written left. Cases that need root (a
small tmpfs for a full disk, a read-only mount) or strace (a SIGKILL at a chosen rename) say "skipped"
where those are missing. A tiny corpus and three tiny runs (ar, janus, cmlm) are made first (~1 minute).

    python benchmarks/reliability_probe.py --json benchmarks/results/reliability_probe.json

Exit status 0 when no case is broken.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import pickle
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

JANUS = [sys.executable, "-m", "janusgen"]
TINY = ["--preset", "tiny", "--max-tokens", "512", "--valid-bleu-sentences", "0", "--precision", "fp32"]
TINY += ["--device", "cpu", "--warmup", "1", "--lr", "1e-3"]
HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------- running


@dataclass
class Proc:
    rc: int
    out: str
    err: str
    seconds: float

    def errors(self) -> list[str]:
        return [
            line for line in self.err.replace("\r", "\n").splitlines() if line.startswith("janus: error:")
        ]

    def tail(self) -> str:
        lines = [line for line in self.err.replace("\r", "\n").splitlines() if line.strip()]
        return " | ".join(lines[-3:])[-400:]


def janus(*args: object, timeout: float = 900, prefix: list[str] | None = None) -> Proc:
    start = time.perf_counter()
    cmd = [*(prefix or []), *JANUS, *[str(a) for a in args]]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return Proc(-1, "", f"timed out after {timeout} s: {e}", time.perf_counter() - start)
    return Proc(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


def clean_error(p: Proc, *needles: str) -> tuple[bool, str]:
    """Exit 2, exactly one `janus: error:` line holding every needle, no traceback."""
    errors = p.errors()
    ok = p.rc == 2 and len(errors) == 1 and "Traceback" not in p.err and all(n in errors[0] for n in needles)
    return ok, (errors[0] if len(errors) == 1 else f"rc {p.rc}: {p.tail()}")


def ok_run(p: Proc) -> tuple[bool, str]:
    return p.rc == 0 and "Traceback" not in p.err, f"rc {p.rc}" + ("" if p.rc == 0 else f": {p.tail()}")


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its sha256."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def hidden_temporaries(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in Path(folder).rglob(".*")
        if re.search(r"\.(tmp|old)(-\d+-|$)|\.deleting$", p.name)
    )


def resign(folder: Path) -> None:
    """Recompute a checkpoint's checksums.json after an edit: a checksum-valid but wrong file."""
    names = sorted(
        p.name for p in folder.iterdir() if p.name != "checksums.json" and not p.name.startswith(".")
    )
    sums = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
    (folder / "checksums.json").write_text(json.dumps({"sha256": sums}, indent=2, sort_keys=True) + "\n")


def edit_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def step_of(folder: Path) -> int | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("step")
    except (OSError, ValueError):
        return None


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False) -> Iterator[Path | None]:
    """A small tmpfs mounted at `folder` (None where it cannot be mounted: not root, no mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if (
        not is_root()
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        ).returncode
    ):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(checkpoint: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    cmd = [*JANUS, "serve", "--checkpoint", str(checkpoint), "--host", HOST, "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--dtype", "float32", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"janus serve exited: {proc.stderr.read()[-500:]}")
            time.sleep(0.3)
        yield f"{HOST}:{port}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()


def raw_http(address: str, head: bytes, parts: list[bytes], wait_s: float = 60) -> tuple[bytes, float]:
    """POST /translate by hand: the headers, then `parts` (and no more); the reply and its delay."""
    host, port = address.split(":")
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(
            b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n"
        )
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:
                break
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    return reply, time.perf_counter() - start


# -------------------------------------------------------------------------------------------- fixtures

SRC = [
    "casa",
    "perro",
    "gato",
    "agua",
    "sol",
    "luna",
    "mar",
    "rio",
    "monte",
    "flor",
    "arbol",
    "pan",
    "vino",
    "sal",
    "luz",
    "noche",
    "dia",
    "tierra",
    "cielo",
    "fuego",
]
TGT = [
    "house",
    "dog",
    "cat",
    "water",
    "sun",
    "moon",
    "sea",
    "river",
    "mount",
    "flower",
    "tree",
    "bread",
    "wine",
    "salt",
    "light",
    "night",
    "day",
    "earth",
    "sky",
    "fire",
]


@dataclass
class World:
    """What every case starts from: a prepared toy corpus and three tiny two-step runs."""

    root: Path
    data: Path = field(init=False)
    corpus: Path = field(init=False)
    runs: dict[str, Path] = field(default_factory=dict)

    def build(self) -> None:
        rng = random.Random(0)
        self.corpus = self.root / "corpus"
        self.corpus.mkdir(parents=True)
        for split, n in {"train": 600, "valid": 40, "test": 40}.items():
            ids = [[rng.randrange(len(SRC)) for _ in range(rng.randint(1, 8))] for _ in range(n)]
            (self.corpus / f"{split}.es").write_text("".join(" ".join(SRC[i] for i in s) + "\n" for s in ids))
            (self.corpus / f"{split}.en").write_text(
                "".join(" ".join(TGT[i] for i in s[::-1]) + "\n" for s in ids)
            )
        self.data = self.root / "data"
        p = janus(
            "data",
            "prepare",
            "--text",
            self.corpus,
            "--src",
            "es",
            "--tgt",
            "en",
            "--out",
            self.data,
            "--vocab-size",
            "64",
        )
        assert p.rc == 0, p.err
        for objective in ("ar", "janus", "cmlm"):
            run = self.root / "runs" / objective
            p = janus(
                "train",
                "--data",
                self.data,
                "--out",
                run,
                "--objective",
                objective,
                *TINY,
                "--max-updates",
                "2",
                "--validate-every",
                "1",
                "--keep-last",
                "3",
            )
            assert p.rc == 0, p.err
            self.runs[objective] = run

    def copy_run(self, objective: str, to: Path) -> Path:
        return Path(shutil.copytree(self.runs[objective], to, symlinks=True))

    def copy_data(self, to: Path) -> Path:
        return Path(shutil.copytree(self.data, to))


# ------------------------------------------------------------------------------------------------ cases

CASES: list[tuple[str, str, Callable[[World, Path], tuple[bool | None, str]]]] = []


def case(item: str, name: str):
    def register(fn):
        CASES.append((item, name, fn))
        return fn

    return register


def skipped(why: str) -> tuple[None, str]:
    return None, why


# ---- item 1: average never deletes or overwrites


@case("1", "average --out DIR holding the user's files")
def _(w: World, tmp: Path):
    out = tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    ok, why = clean_error(janus("average", w.runs["ar"] / "last", "--out", out), "did not write")
    return ok and tree(out) == {"notes.txt": hashlib.sha256(b"keep me\n").hexdigest()}, why


@case("1", "average --run R --last 2 --out R")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    before = tree(run)
    ok, why = clean_error(janus("average", "--run", run, "--last", "2", "--out", run), "is the run folder")
    return ok and tree(run) == before, why


@case("1", "average --out file.txt (twice)")
def _(w: World, tmp: Path):
    target = tmp / "file.txt"
    target.write_text("mine\n")
    results = [
        clean_error(janus("average", w.runs["ar"] / "last", "--out", target), "not a folder")
        for _ in range(2)
    ]
    kept = target.read_text() == "mine\n" and sorted(p.name for p in tmp.iterdir()) == ["file.txt"]
    return all(ok for ok, _ in results) and kept, results[-1][1]


@case("1", "average --out R/last and R/checkpoints/x")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    before = tree(run)
    checks = [
        clean_error(janus("average", "--run", run, "--last", "1", "--out", out), "--out")
        for out in (run / "last", run / "checkpoints" / "x")
    ]
    return all(ok for ok, _ in checks) and tree(run) == before, checks[0][1]


@case("1", "average again into its own earlier output (replaced), README's R/avg2")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    first = janus("average", "--run", run, "--last", "2", "--out", run / "avg2")
    second = janus("average", "--run", run, "--last", "1", "--out", run / "avg2")
    return first.rc == 0 and second.rc == 0, f"rc {first.rc}, {second.rc}"


# ---- item 2, 3: paths read from JSON stay inside their folder


@case("2", "distill with meta.json files naming ../payload.txt")
def _(w: World, tmp: Path):
    data = w.copy_data(tmp / "data")
    (tmp / "payload.txt").write_text("planted\n")
    out_parent = tmp / "out"
    out_parent.mkdir()
    (out_parent / "payload.txt").write_text("the user's own\n")
    edit_json(data / "meta.json", lambda m: {**m, "files": {**m["files"], "../payload.txt": "0" * 64}})
    before = tree(tmp)
    p = janus(
        "distill",
        "--checkpoint",
        w.runs["janus"] / "last",
        "--data",
        data,
        "--out",
        out_parent / "distilled",
        "--beam",
        "1",
        "--device",
        "cpu",
    )
    ok, why = clean_error(p, "is not a file inside")
    return ok and tree(tmp) == before, why


@case("2", "distill writes nothing outside --out (and its .partial)")
def _(w: World, tmp: Path):
    (tmp / "mine.txt").write_text("mine\n")
    before = tree(tmp)
    p = janus(
        "distill",
        "--checkpoint",
        w.runs["janus"] / "last",
        "--data",
        w.data,
        "--out",
        tmp / "kd",
        "--beam",
        "1",
        "--device",
        "cpu",
        timeout=1800,
    )
    after = {k: v for k, v in tree(tmp).items() if not k.startswith("kd/")}
    return p.rc == 0 and after == before and not (tmp / "kd.partial").exists(), f"rc {p.rc}"


@case("3", "meta.json distillation.references naming /any/path")
def _(w: World, tmp: Path):
    data = w.copy_data(tmp / "data")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    for suffix in (".bin", ".idx"):
        shutil.copy(data / f"train.tgt{suffix}", elsewhere / f"refs{suffix}")
    edit_json(data / "meta.json", lambda m: {**m, "distillation": {"references": str(elsewhere / "refs")}})
    p = janus("train", "--data", data, "--out", tmp / "run", *TINY, "--max-updates", "1")
    return clean_error(p, "distillation.references", "is not a file inside")


# ---- item 4: last and best consistent after a kill


def _strace_kill(w: World, run: Path, syscall: str, when: int, *train: object) -> Proc | None:
    if shutil.which("strace") is None:
        return None
    prefix = [
        "strace",
        "-f",
        "-qq",
        "-o",
        os.devnull,
        "-e",
        "trace=rename,renameat,renameat2",
        "-e",
        f"inject={syscall}:signal=SIGKILL:when={when}",
    ]
    return janus("train", "--data", w.data, "--out", run, *train, prefix=prefix)


@case("4", "SIGKILL at each swap of the second save (strace), then --resume: best = trainer state's best")
def _(w: World, tmp: Path):
    if shutil.which("strace") is None:
        return skipped("strace is not installed")
    details = []
    for when in (1, 2):
        run = tmp / f"run{when}"
        killed = _strace_kill(
            w,
            run,
            "renameat2",
            when,
            "--objective",
            "ar",
            *TINY,
            "--max-updates",
            "2",
            "--validate-every",
            "1",
        )
        if killed is None or "ptrace" in killed.err.lower():
            return skipped("strace cannot trace here")
        resumed = janus("train", "--data", w.data, "--out", run, "--resume", "--device", "cpu")
        state = json.loads((run / "last" / "trainer_state.json").read_text())
        consistent = (
            step_of(run / "best") == state["best_step"] and step_of(run / "last") == state["step"] == 2
        )
        details.append(
            f"kill at renameat2 #{when}: rc {killed.rc}, resume rc {resumed.rc}, best step "
            f"{step_of(run / 'best')}, trainer state best {state['best_step']}"
        )
        if resumed.rc != 0 or not consistent:
            return False, "; ".join(details)
    return True, "; ".join(details)


@case("4", "a best left behind (older janusgen) is repaired by --resume")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    shutil.rmtree(run / "best")
    shutil.copytree(run / "checkpoints" / "step_00000001", run / "best")
    p = janus("train", "--data", w.data, "--out", run, "--resume", "--device", "cpu")
    best = json.loads((run / "last" / "trainer_state.json").read_text())["best_step"]
    return p.rc == 0 and step_of(
        run / "best"
    ) == best, f"rc {p.rc}, best {step_of(run / 'best')} (want {best})"


# ---- item 5: a diverging run


@case("5", "train --lr 1e30: stops with a clear error, no NaN checkpoint")
def _(w: World, tmp: Path):
    run = tmp / "run"
    args = [a if a != "1e-3" else "1e30" for a in TINY]
    p = janus(
        "train",
        "--data",
        w.data,
        "--out",
        run,
        "--objective",
        "ar",
        *args,
        "--max-updates",
        "6",
        "--validate-every",
        "1",
    )
    ok, why = clean_error(p, "not finite", "--lr")
    from safetensors.torch import load_file

    finite = all(
        bool(t.isfinite().all())
        for folder in (run / "best", run / "last", *(run / "checkpoints").glob("step_*"))
        if (folder / "model.safetensors").is_file()
        for t in load_file(str(folder / "model.safetensors")).values()
    )
    return ok and finite, why


# ---- item 6, 13: convert


def _tiny_bart(folder: Path) -> bool:
    """A tiny random BART with a byte-level BPE tokenizer (needs transformers and tokenizers)."""
    try:
        import torch
        import transformers
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return False
    folder.mkdir(parents=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=120,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 5, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.save(str(folder / "tokenizer.json"))
    cfg = transformers.BartConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    transformers.logging.disable_progress_bar()
    transformers.BartForConditionalGeneration(cfg).save_pretrained(str(folder))
    return True


@case("6", "convert --hf DIR with a BART config and unrelated weights")
def _(w: World, tmp: Path):
    if not _tiny_bart(tmp / "bart"):
        return skipped("transformers / tokenizers not installed")
    import torch
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(3)}, str(tmp / "bart" / "model.safetensors"))
    ok, why = clean_error(
        janus("convert", "--hf", tmp / "bart", "--out", tmp / "out"), "missing", "foo.weight"
    )
    return ok and not (tmp / "out").exists(), why


class Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@case("13", "convert a folder whose weights are a pickle pytorch_model.bin (never unpickled)")
def _(w: World, tmp: Path):
    if not _tiny_bart(tmp / "bart"):
        return skipped("transformers / tokenizers not installed")
    (tmp / "bart" / "model.safetensors").unlink()
    marker = tmp / "ran"
    (tmp / "bart" / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(str(marker))))
    ok, why = clean_error(janus("convert", "--hf", tmp / "bart", "--out", tmp / "out"), "pytorch_model.bin")
    return ok and not marker.exists(), why


@case("13", "convert a folder with a corrupt model.safetensors")
def _(w: World, tmp: Path):
    if not _tiny_bart(tmp / "bart"):
        return skipped("transformers / tokenizers not installed")
    (tmp / "bart" / "model.safetensors").write_bytes(b"\xff" * 64)
    return clean_error(
        janus("convert", "--hf", tmp / "bart", "--out", tmp / "out"), "not a readable safetensors"
    )


# ---- item 7: a full disk (a small tmpfs)


def _full_disk_case(
    size: str, run_it: Callable[[Path], Proc], check_left: Callable[[Path], bool] | None = None
):
    def probe(w: World, tmp: Path):
        with tmpfs(tmp / "small", size) as disk:
            if disk is None:
                return skipped("needs root and mount for a tmpfs")
            p = run_it(disk)
            ok, why = clean_error(p, "no space left on tmpfs", "while writing")
            leftovers = hidden_temporaries(disk)
            intact = check_left(disk) if check_left else True
            return ok and not leftovers and intact, why + (f"; left {leftovers}" if leftovers else "")

    return probe


def _fill(disk: Path, leave: int = 4096) -> None:
    """Fill `disk` but `leave` bytes."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def _train_full(w: World):
    return lambda disk: janus(
        "train",
        "--data",
        w.data,
        "--out",
        disk / "run",
        "--objective",
        "ar",
        *TINY,
        "--max-updates",
        "20",
        "--validate-every",
        "1",
    )


@case("7", "train into a 1 MB tmpfs")
def _(w: World, tmp: Path):
    return _full_disk_case("1m", _train_full(w))(w, tmp)


@case("7", "train --resume on a full tmpfs (last stays complete)")
def _(w: World, tmp: Path):
    def run_it(disk: Path) -> Proc:
        run = w.copy_run("ar", disk / "run")
        _fill(disk)
        return janus(
            "train", "--data", w.data, "--out", run, "--resume", "--max-updates", "4", "--device", "cpu"
        )

    def intact(disk: Path) -> bool:
        (disk / "filler").unlink()
        return (
            step_of(disk / "run" / "last") == 2
            and janus(
                "generate",
                "--checkpoint",
                disk / "run" / "last",
                "--input",
                w.corpus / "test.es",
                "--beam",
                "1",
                "--output",
                os.devnull,
            ).rc
            == 0
        )

    return _full_disk_case("8m", run_it, intact)(w, tmp)


@case("7", "data prepare into a 64 kB tmpfs")
def _(w: World, tmp: Path):
    def run_it(disk: Path) -> Proc:
        return janus(
            "data",
            "prepare",
            "--text",
            w.corpus,
            "--src",
            "es",
            "--tgt",
            "en",
            "--out",
            disk / "data",
            "--vocab-size",
            "64",
        )

    return _full_disk_case("64k", run_it, lambda disk: not (disk / "data").exists())(w, tmp)


@case("7", "average into a full tmpfs")
def _(w: World, tmp: Path):
    def run_it(disk: Path) -> Proc:
        _fill(disk)
        return janus("average", "--run", w.runs["ar"], "--last", "2", "--out", disk / "avg")

    return _full_disk_case("2m", run_it, lambda disk: not (disk / "avg").exists())(w, tmp)


@case("7", "evaluate --hypotheses into a full tmpfs")
def _(w: World, tmp: Path):
    def run_it(disk: Path) -> Proc:
        _fill(disk, leave=0)
        return janus(
            "evaluate",
            "--checkpoint",
            w.runs["janus"] / "last",
            "--data",
            w.data,
            "--beam",
            "1",
            "--dtype",
            "float32",
            "--hypotheses",
            disk / "hyps.txt",
            "--json",
            disk / "r.json",
        )

    return _full_disk_case("1m", run_it, lambda disk: not (disk / "hyps.txt").exists())(w, tmp)


@case("7", "distill into a full tmpfs")
def _(w: World, tmp: Path):
    def run_it(disk: Path) -> Proc:
        _fill(disk, leave=20_000)
        return janus(
            "distill",
            "--checkpoint",
            w.runs["janus"] / "last",
            "--data",
            w.data,
            "--out",
            disk / "kd",
            "--beam",
            "1",
            "--device",
            "cpu",
            "--shard-pairs",
            "64",
            timeout=1800,
        )

    def nothing_half_written(disk: Path) -> bool:
        partial = disk / "kd.partial"
        return (
            not (disk / "kd").exists()
            and not list(partial.glob("*.tmp.*"))
            and not list(partial.glob("targets*"))
        )

    return _full_disk_case("1m", run_it, nothing_half_written)(w, tmp)


# ---- item 8, 9: JSON read back


def _ckpt_json_case(
    name: str, change: Callable[[Path], None], needles: tuple[str, ...], resume: bool = False
):
    def probe(w: World, tmp: Path):
        run = w.copy_run("ar", tmp / "run")
        change(run / "last")
        if resume:
            p = janus(
                "train", "--data", w.data, "--out", run, "--resume", "--max-updates", "3", "--device", "cpu"
            )
            # a damaged `last` is passed over for the newest good step: the error or the fallback names it
            if p.rc == 0:
                said = [line for line in p.err.splitlines() if "resuming from" in line]
                return (
                    bool(said) and name in said[0] and needles[-1] in said[0],
                    "passed over, " + (said[0][:300] if said else p.tail()),
                )
        else:
            p = janus(
                "generate",
                "--checkpoint",
                run / "last",
                "--input",
                w.corpus / "test.es",
                "--beam",
                "1",
                "--output",
                tmp / "out.txt",
            )
        return clean_error(p, name, *needles)

    return probe


def _non_utf8(name: str):
    def change(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes().replace(b"{", b'{"x": "\xff\xfe",', 1))
        if name != "checksums.json":
            resign(folder)

    return change


def _json_change(name: str, fn: Callable[[dict], object]):
    def change(folder: Path) -> None:
        edit_json(folder / name, fn)
        resign(folder)

    return change


for _name in ("config.json", "checksums.json"):
    case("8", f"non-UTF-8 bytes in a checkpoint's {_name}")(
        _ckpt_json_case(_name, _non_utf8(_name), ("not UTF-8",))
    )
case("8", "non-UTF-8 bytes in trainer_state.json (resume)")(
    _ckpt_json_case("trainer_state.json", _non_utf8("trainer_state.json"), ("not UTF-8",), resume=True)
)


@case("8", "non-UTF-8 bytes in a data folder's meta.json")
def _(w: World, tmp: Path):
    data = w.copy_data(tmp / "data")
    (data / "meta.json").write_bytes((data / "meta.json").read_bytes().replace(b"{", b'{"x": "\xff",', 1))
    return clean_error(janus("train", "--data", data, "--out", tmp / "run", *TINY), "meta.json", "not UTF-8")


for _label, _fn, _needle in (
    ("config without model", lambda c: {k: v for k, v in c.items() if k != "model"}, "missing key(s): model"),
    ("config as a list", lambda c: [c], "must be a JSON object"),
):
    case("9", _label)(_ckpt_json_case("config.json", _json_change("config.json", _fn), (_needle,)))

for _label, _fn, _needle in (
    (
        "trainer state without optimizer",
        lambda s: {k: v for k, v in s.items() if k != "optimizer"},
        "optimizer",
    ),
    ("trainer state step as a string", lambda s: {**s, "step": "2"}, "step must be an integer"),
    ("trainer state step -5", lambda s: {**s, "step": -5}, "step must be an integer >= 0"),
    (
        "trainer state consumed 1e12",
        lambda s: {**s, "sampler": {**s["sampler"], "consumed": 10**12}},
        "sampler.consumed",
    ),
):
    case("9", _label)(
        _ckpt_json_case(
            "trainer_state.json", _json_change("trainer_state.json", _fn), (_needle,), resume=True
        )
    )


def _tensors_change(fn: Callable[[dict], dict]):
    def change(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = folder / "trainer_state.safetensors"
        save_file(fn(load_file(str(path))), str(path))
        resign(folder)

    return change


def _shift(tensors: dict) -> dict:
    out = {}
    for name, value in tensors.items():
        prefix, index, key = name.split(".", 2)
        out[f"{prefix}.{int(index) + 1}.{key}"] = value
    return out


case("9", "optimizer tensors shifted by one parameter")(
    _ckpt_json_case("trainer_state.safetensors", _tensors_change(_shift), ("tensor optimizer.",), resume=True)
)
case("9", "optimizer tensors reshaped")(
    _ckpt_json_case(
        "trainer_state.safetensors",
        _tensors_change(lambda t: {k: v.reshape(-1) if v.dim() == 2 else v for k, v in t.items()}),
        ("has shape",),
        resume=True,
    )
)

for _label, _fn, _needle in (
    ('meta dtype "float64"', lambda m: {**m, "dtype": "float64"}, "dtype must be one of"),
    ("meta splits as a string", lambda m: {**m, "splits": "train"}, "splits must be an object"),
    (
        "meta distillation as a string",
        lambda m: {**m, "distillation": "yes"},
        "distillation must be an object",
    ),
):

    def _meta_case(w: World, tmp: Path, fn=_fn, needle=_needle):
        data = w.copy_data(tmp / "data")
        edit_json(data / "meta.json", fn)
        return clean_error(janus("train", "--data", data, "--out", tmp / "run", *TINY), "meta.json", needle)

    case("9", _label)(_meta_case)


# ---- item 10: shapes before allocating


@case("10", "config d_model 16384 over small weights: refused before allocating (peak RSS of the command)")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    edit_json(run / "last" / "config.json", lambda c: {**c, "model": {**c["model"], "d_model": 16384}})
    resign(run / "last")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = janus(
        "generate", "--checkpoint", run / "last", "--input", w.corpus / "test.es", "--output", tmp / "o"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ok, why = clean_error(p, "do not fit", "of another shape")
    small = peak_mb < 2048 or peak_mb <= before / 1024
    return ok and small, f"{why[:160]} (peak RSS of the children so far {peak_mb:.0f} MB, {p.seconds:.1f} s)"


# ---- item 11: train --out that cannot be written


@case("11", "train --out an existing file")
def _(w: World, tmp: Path):
    target = tmp / "file.txt"
    target.write_text("mine\n")
    ok, why = clean_error(
        janus("train", "--data", w.data, "--out", target, *TINY), "exists and is not a folder"
    )
    return ok and target.read_text() == "mine\n", why


@case("11", "train --out on a read-only mount")
def _(w: World, tmp: Path):
    with tmpfs(tmp / "ro", "64k", read_only=True) as ro:
        if ro is None:
            return skipped("needs root and mount for a read-only tmpfs")
        return clean_error(
            janus("train", "--data", w.data, "--out", ro / "run", *TINY), "Read-only file system"
        )


# ---- item 12: deeply nested JSON


@case("12", "data prepare --jsonl with a line of 100,000 nested brackets")
def _(w: World, tmp: Path):
    folder = tmp / "jsonl"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        rows = [json.dumps({"es": "casa", "en": "house"})] * 5
        if split == "train":
            rows.insert(2, "[" * 100_000 + "]" * 100_000)
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    p = janus("data", "prepare", "--jsonl", folder, "--src", "es", "--tgt", "en", "--out", tmp / "data")
    return clean_error(p, "train.jsonl:3", "nested too deeply")


@case("12", "serve: a body of 100,000 nested brackets is 400, not 500")
def _(w: World, tmp: Path):
    import httpx

    with server(w.runs["janus"] / "last") as address:
        reply = httpx.post(f"http://{address}/translate", content=b"[" * 100_000 + b"]" * 100_000, timeout=60)
    return reply.status_code == 400, f"HTTP {reply.status_code}: {reply.text[:120]}"


# ---- item 14: serving bodies


@case("14", "serve: a 50 MB chunked body is cut at --max-body-bytes while it is read")
def _(w: World, tmp: Path):
    chunk = b"x" * 100_000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 500  # 50 MB, never terminated
    with server(w.runs["janus"] / "last") as address:
        reply, seconds = raw_http(address, b"Transfer-Encoding: chunked\r\n", parts)
    return reply.startswith(b"HTTP/1.1 400"), f"{reply[:12].decode(errors='replace')} after {seconds:.1f} s"


@case("14", "serve: a client that stops mid-body is answered 408 and let go (--body-timeout-s 2)")
def _(w: World, tmp: Path):
    with server(w.runs["janus"] / "last", "--body-timeout-s", "2") as address:
        reply, seconds = raw_http(address, b"Content-Length: 100\r\n", [b'{"texts": ['])
    closed = b"connection: close" in reply.lower()
    return reply.startswith(
        b"HTTP/1.1 408"
    ) and closed, f"{reply[:12].decode(errors='replace')} after {seconds:.1f} s"


# ---- item 15: the smaller ones


@case("15", "the truncation warning names the input line (line 600)")
def _(w: World, tmp: Path):
    lines = ["casa perro"] * 599 + [" ".join(["perro"] * 300)] + ["sol"] * 5
    (tmp / "in.txt").write_text("\n".join(lines) + "\n")
    p = janus(
        "generate",
        "--checkpoint",
        w.runs["janus"] / "last",
        "--input",
        tmp / "in.txt",
        "--beam",
        "1",
        "--output",
        tmp / "out.txt",
        "--buffer-lines",
        "512",
    )
    return p.rc == 0 and "(first: line 600)" in p.err, p.tail()


@case("15", "--device cuda:7 names cuda:7")
def _(w: World, tmp: Path):
    (tmp / "in.txt").write_text("casa\n")
    p = janus(
        "generate", "--checkpoint", w.runs["janus"] / "last", "--input", tmp / "in.txt", "--device", "cuda:7"
    )
    return clean_error(p, "--device cuda:7:")


@case("15", "--model-option vocab_size=5 is refused")
def _(w: World, tmp: Path):
    p = janus("train", "--data", w.data, "--out", tmp / "run", *TINY, "--model-option", "vocab_size=5")
    return clean_error(p, "vocab_size=5", "set from the data")


@case("15", "average --last 0 and --last -1 are refused")
def _(w: World, tmp: Path):
    checks = [
        clean_error(janus("average", "--run", w.runs["ar"], "--last", n, "--out", tmp / "avg"), f"--last {n}")
        for n in ("0", "-1")
    ]
    return all(ok for ok, _ in checks) and not (tmp / "avg").exists(), checks[0][1]


@case("15", "average refuses an ar and a janus checkpoint together")
def _(w: World, tmp: Path):
    p = janus("average", w.runs["ar"] / "last", w.runs["janus"] / "last", "--out", tmp / "avg")
    return clean_error(p, "objective")


@case("15", "NAR decoding of an ar checkpoint, AR of a cmlm one")
def _(w: World, tmp: Path):
    (tmp / "in.txt").write_text("casa\n")
    checks = [
        clean_error(
            janus(
                "generate", "--checkpoint", w.runs[obj] / "last", "--input", tmp / "in.txt", "--mode", mode
            ),
            f"--mode {mode}",
            "never trains",
        )
        for obj, mode in (("ar", "nar"), ("cmlm", "ar"))
    ]
    return all(ok for ok, _ in checks), checks[0][1]


@case("15", "a resume after a kill logs each update once (strace kill at the step-4 folder)")
def _(w: World, tmp: Path):
    if shutil.which("strace") is None:
        return skipped("strace is not installed")
    run = tmp / "run"
    # renames: 3 JSON files + the folder per step save, then best and last (renameat2 from the 2nd save on)
    killed = _strace_kill(
        w,
        run,
        "rename",
        8,
        "--objective",
        "ar",
        *TINY,
        "--max-updates",
        "4",
        "--validate-every",
        "2",
        "--log-every",
        "1",
    )
    if killed is None or "ptrace" in killed.err.lower():
        return skipped("strace cannot trace here")
    rows_before = len((run / "log.jsonl").read_text().splitlines()) if (run / "log.jsonl").exists() else 0
    p = janus("train", "--data", w.data, "--out", run, "--resume", "--device", "cpu")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in rows]
    return p.rc == 0 and len(keys) == len(set(keys)), (
        f"killed rc {killed.rc} with {rows_before} rows; resumed rc {p.rc}, {len(keys)} rows, "
        f"{len(keys) - len(set(keys))} duplicate(s)"
    )


@case("15", "a run killed before its first checkpoint: --resume says to use --overwrite")
def _(w: World, tmp: Path):
    run = tmp / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"split": "train", "step": 1, "loss": 5.0}\n')
    checks = [
        clean_error(
            janus("train", "--data", w.data, "--out", run, *extra),
            "before its first checkpoint",
            "--overwrite",
        )
        for extra in (["--resume", "--device", "cpu"], TINY)
    ]
    again = janus("train", "--data", w.data, "--out", run, *TINY, "--max-updates", "1", "--overwrite")
    return all(ok for ok, _ in checks) and again.rc == 0, checks[0][1]


@case("15", "evaluate --json into a read-only folder fails before the model is read")
def _(w: World, tmp: Path):
    with tmpfs(tmp / "ro", "64k", read_only=True) as ro:
        if ro is None:
            return skipped("needs root and mount for a read-only tmpfs")
        broken = w.copy_run("janus", tmp / "run") / "last"
        (broken / "model.safetensors").write_bytes(b"\xff" * 64)  # read only if the check came late
        p = janus("evaluate", "--checkpoint", broken, "--data", w.data, "--json", ro / "r.json")
        return clean_error(p, "--json", "Read-only file system")


@case("15", "last fails its checksum: --resume goes on from the newest good step")
def _(w: World, tmp: Path):
    run = w.copy_run("ar", tmp / "run")
    data = bytearray((run / "last" / "model.safetensors").read_bytes())
    data[-5] ^= 1
    (run / "last" / "model.safetensors").write_bytes(bytes(data))
    p = janus("train", "--data", w.data, "--out", run, "--resume", "--max-updates", "3", "--device", "cpu")
    return p.rc == 0 and "resuming from" in p.err and step_of(run / "last") == 3, p.tail()


@case("15", "last, best and the newest step share no file (inode)")
def _(w: World, tmp: Path):
    run = w.runs["ar"]
    folders = [run / "last", run / "best", run / "checkpoints" / "step_00000002"]
    shared = [
        name
        for name in ("model.safetensors", "trainer_state.safetensors", "config.json")
        if len({(f / name).stat().st_ino for f in folders}) != 3
    ]
    return not shared, f"shared: {shared}" if shared else "3 separate files each"


# ---- item 16: the machine measurement


@case("16", "--precision auto chooses the same in 5 fresh processes while 2 CPU hogs run")
def _(w: World, tmp: Path):
    hog = "import time\nt = time.time()\nwhile time.time() - t < 120: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
    try:
        code = (
            "from janusgen.hardware import resolve_precision as r; c = r('auto', 'cpu', 256, 1024); "
            "print(c.precision, c.bf16_speedup)"
        )
        results = [
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
            ).stdout.strip()
            for _ in range(5)
        ]
    finally:
        for h in hogs:
            h.kill()
    choices = {r.split()[0] for r in results if r}
    return len(choices) == 1 and len(results) == 5, "; ".join(results)


# --------------------------------------------------------------------------------------------------- main


def machine() -> dict[str, object]:
    import torch

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = found.group(1) if found else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "root": is_root(),
        "strace": shutil.which("strace") is not None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--only", default=None, help="run only the cases whose item or name contains this")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="janus-probe-"))
    started = time.perf_counter()
    results = []
    try:
        print(f"setting up in {root} ...", file=sys.stderr, flush=True)
        world = World(root / "world")
        world.build()
        for number, (item, name, fn) in enumerate(CASES, start=1):
            if args.only and args.only not in item and args.only not in name:
                continue
            tmp = root / f"case{number:02d}"
            tmp.mkdir()
            start = time.perf_counter()
            try:
                held, detail = fn(world, tmp)
            except Exception as e:  # a probe that fails is reported, never stops the others
                held, detail = False, f"probe failed: {type(e).__name__}: {e} {traceback.format_exc()[-300:]}"
            status = {True: "held", False: "broken", None: "skipped"}[held]
            seconds = round(time.perf_counter() - start, 1)
            results.append(
                {"item": item, "case": name, "status": status, "detail": detail, "seconds": seconds}
            )
            print(f"{status:>8}  item {item:>2}  {name}  ({seconds} s)\n          {detail[:300]}", flush=True)
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", *[str(p) for p in root.glob("case*/small")]], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    counts = {s: sum(r["status"] == s for r in results) for s in ("held", "broken", "skipped")}
    print(
        f"\n{counts['held']} held, {counts['broken']} broken, {counts['skipped']} skipped "
        f"({len(results)} cases, {time.perf_counter() - started:.0f} s)"
    )
    if args.json is not None:
        record = {
            "checklist": "RELIABILITY.md, round 3",
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python benchmarks/reliability_probe.py"
            + (f" --json {args.json}" if args.json else ""),
            "machine": machine(),
            "counts": counts,
            "cases": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 1 if counts["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
