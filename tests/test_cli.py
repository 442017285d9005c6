"""The `janus` command line itself: every command's --help, and bad arguments refused with exit status 2
and a message that names the option, before any data is read or any model is built.

The commands' work is tested with the modules that do it (tests/data, tests/training, tests/decoding,
test_bench.py, ...); these cases cost no training and need no data: the paths they pass do not exist.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from janusgen.cli import build_parser, main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `janus ARGV`; argparse's --help and usage errors exit through
    SystemExit, the commands' own errors return 2."""
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "110")  # argparse wraps --help to the terminal's width


# ---------------------------------------------------------------------------------------------- help

COMMANDS = [
    "demo",
    "data",
    "train",
    "distill",
    "generate",
    "evaluate",
    "serve",
    "average",
    "convert",
    "push",
    "export",
    "bench",
]

HELP = {  # command -> options (or subcommands) its --help must list
    "": [*COMMANDS, "--quiet", "--verbose"],
    "demo": ["--work", "--time-budget", "--seed", "--limit"],
    "data": ["bible", "prepare"],
    "data bible": [
        "--out",
        "--source",
        "--target",
        "--max-words",
        "--max-ratio",
        "--sword-path",
        "--cache",
        "--prepare",
        "--vocab-size",
        "--overwrite",
    ],
    "data prepare": [
        "--text",
        "--tsv",
        "--jsonl",
        "--hf-dataset",
        "--hf-config",
        "--task",
        "--src",
        "--tgt",
        "--out",
        "--splits",
        "--vocab-size",
        "--model-type",
        "--tokenizer",
        "--threads",
        "--overwrite",
    ],
    "train": [
        "--data",
        "--out",
        "--objective",
        "--preset",
        "--recipe",
        "--resume",
        "--init-from",
        "--config",
        "--overwrite",
        "--device",
        "--model-option",
        "--objective-option",
        "--max-updates",
        "--time-budget",
        "--max-tokens",
        "--lr",
        "--warmup",
        "--precision",
        "--seed",
        "--validate-every",
        "--best-metric",
    ],
    "distill": ["--checkpoint", "--data", "--out", "--beam", "--max-tokens", "--shard-pairs", "--overwrite"],
    "generate": [
        "--checkpoint",
        "--mode",
        "--beam",
        "--iterations",
        "--length-beam",
        "--length-offsets",
        "--rerank",
        "--collapse-repeats",
        "--max-len-a",
        "--max-len-b",
        "--input",
        "--output",
        "--scores",
        "--buffer-lines",
    ],
    "evaluate": ["--checkpoint", "--mode", "--beam", "--data", "--split", "--limit", "--json", "--metric"],
    "serve": ["--checkpoint", "--host", "--port", "--device", "--dtype"],
    "average": ["checkpoints", "--last", "--run", "--out"],
    "convert": ["--hf", "--out", "--max-target-length"],
    "push": ["--checkpoint", "--repo-id", "--private"],
    "export": ["--checkpoint", "--format", "--out"],
    "bench": ["quality", "speed", "compare"],
    "bench quality": [
        "--data",
        "--out",
        "--budget",
        "--updates",
        "--time-budget",
        "--distilled",
        "--systems",
        "--janus-option",
        "--model-option",
        "--keep-last",
        "--limit",
        "--bootstrap-samples",
    ],
    "bench speed": ["--out", "--sentences", "--batch-size", "--device"],
    "bench compare": ["out", "baseline", "--system", "--bootstrap-samples"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: c or "janus")
def test_help_exits_0_and_lists_the_options(command, capsys):
    status, out, err = run([*command.split(), "--help"], capsys)
    assert status == 0 and err == ""
    assert out.startswith(f"usage: janus {command}".rstrip())
    missing = [name for name in HELP[command] if name not in out]
    assert not missing, f"`janus {command} --help` does not list {missing}"


def test_every_command_has_a_help_case():
    """A command added to the parser needs a case in HELP."""

    def commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield prefix + name
                    yield from commands(sub, f"{prefix}{name} ")

    assert set(commands(build_parser())) == set(HELP) - {""}


# ------------------------------------------------------------------------------------- bad arguments

TRAIN = ["train", "--data", "no-such-data", "--out", "no-such-run", "--device", "cpu"]
DECODE = ["--checkpoint", "no-such-checkpoint", "--device", "cpu"]
QUALITY = ["bench", "quality", "--data", "no-such-data", "--out", "no-such-bench"]


def case_id(argv: list[str]) -> str:
    """The case's arguments without the placeholder paths and device that every case of a command shares."""
    for command, shared in ((TRAIN[:1], TRAIN[1:]), (QUALITY[:2], QUALITY[2:]), (argv[:1], DECODE)):
        if argv[len(command) : len(command) + len(shared)] == shared:
            argv = command + argv[len(command) + len(shared) :]
    return " ".join(argv)


# argparse refuses these while parsing: exit 2 with the usage line and "argument OPTION: ..."
USAGE_ERRORS = [
    (["train", "--data", "no-such-data"], "the following arguments are required: --out"),
    ([*TRAIN, "--max-updates", "many"], "argument --max-updates: invalid int value: 'many'"),
    ([*TRAIN, "--time-budget", "soon"], "argument --time-budget: 'soon' is not a duration such as 90s"),
    ([*TRAIN, "--objective", "gpt"], "argument --objective: invalid choice: 'gpt'"),
    ([*TRAIN, "--recipe", "tpu"], "argument --recipe: invalid choice: 'tpu'"),
    (["demo", "--time-budget", "1x"], "argument --time-budget: '1x' is not a duration"),
    (["generate", *DECODE, "--beam", "wide"], "argument --beam: invalid int value: 'wide'"),
    (["generate", *DECODE, "--length-offsets", "a,b"], "argument --length-offsets: 'a,b': expected integers"),
    (["generate", *DECODE, "--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
    (["--quiet", "--verbose", "demo"], "argument -v/--verbose: not allowed with argument -q/--quiet"),
    ([*QUALITY, "--budget", "tpu"], "argument --budget: invalid choice: 'tpu'"),
    ([*QUALITY, "--systems", "gpt"], "argument --systems: invalid choice: 'gpt'"),
    (["data", "prepare", "--out", "x"], "one of the arguments --text --tsv --jsonl --hf-dataset is required"),
    (["data", "prepare", "--out", "x", "--text", "a", "--tsv", "b"], "argument --tsv: not allowed with"),
    (["bench"], "the following arguments are required: {quality,speed,compare}"),
    (["translate"], "invalid choice: 'translate'"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS, ids=[case_id(argv) for argv, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_and_name_the_argument(argv, message, capsys):
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    assert err.startswith("usage: janus") and message in err


# the commands refuse these before reading --data or --checkpoint: exit 2 with "janus: error: ..."
COMMAND_ERRORS = [
    (["train", "--out", "no-such-run"], "--data: give the prepared data folder (or a --config with"),
    ([*TRAIN, "--resume", "--config", "run.yaml"], "--config run.yaml: --resume takes the setup from"),
    ([*TRAIN, "--config", "run.yaml"], "--config run.yaml: cannot read it"),
    ([*TRAIN, "--resume", "--overwrite"], "--resume continues the run in --out and --overwrite deletes it"),
    ([*TRAIN, "--resume", "--recipe", "cpu"], "--recipe cpu: --resume takes the training setup from"),
    ([*TRAIN, "--resume", "--init-from", "ckpt"], "--resume continues the run in --out; --init-from starts"),
    ([*TRAIN, "--resume", "--lr", "1e-3"], "only max_updates, time_budget_s, stop_at, log_every"),
    ([*TRAIN, "--resume", "--model-option", "dropout=0"], "(got --model-option)"),
    ([*TRAIN, "--init-from", "ckpt", "--preset", "tiny"], "--init-from takes the model from the checkpoint"),
    ([*TRAIN, "--objective-option", "nosuchkey=1"], "--objective-option 'nosuchkey=1': expected KEY=VALUE"),
    ([*TRAIN, "--model-option", "dropout"], "--model-option 'dropout': expected KEY=VALUE"),
    ([*TRAIN, "--model-option", "dropout=2"], "--model-option dropout=2"),
    ([*TRAIN, "--model-option", "activation=tanh"], "--model-option activation='tanh'"),
    ([*TRAIN, "--model-option", "vocab_size=5"], "--model-option vocab_size=5: set from the data"),
    ([*TRAIN, "--model-option", "pad_id=2"], "--model-option pad_id=2: set from the data"),
    ([*QUALITY, "--model-option", "vocab_size=5"], "--model-option vocab_size=5: set from the data"),
    ([*TRAIN, "--preset", "huge"], "unknown preset 'huge'"),
    ([*TRAIN, "--lr", "-1"], "--lr -1.0: must be > 0"),
    (["generate", *DECODE, "--beam", "0"], "--beam 0: must be an integer"),
    (["generate", *DECODE, "--buffer-lines", "0"], "--buffer-lines 0: must be at least 1"),
    (["evaluate", *DECODE, "--data", "no-such-data", "--iterations", "0"], "--iterations 0: must be"),
    (["distill", *DECODE, "--data", "d", "--out", "o", "--shard-pairs", "0"], "--shard-pairs 0: must be"),
    (["serve", *DECODE, "--port", "70000"], "--port 70000: must be between 0 and 65535"),
    ([*QUALITY, "--time-budget", "10m", "--updates", "5"], "--time-budget (equal time) and --updates"),
    ([*QUALITY, "--janus-option", "nosuchkey=1"], "--janus-option 'nosuchkey=1': expected KEY=VALUE"),
    (["average", "--out", "avg"], "give checkpoint folders, or --run DIR --last N"),
    (["average", "--run", "run", "--last", "2", "--out", "avg"], "--run run: no step checkpoints in"),
    (["average", "--last", "2", "--out", "avg"], "--last 2: give the run folder with --run"),
    (["data", "bible", "--out", "corpus", "--source", "latin"], "--source: unknown Bible text 'latin'"),
    (["data", "bible", "--out", "corpus", "--source", "web"], "--source and --target are both 'web'"),
    (["data", "bible", "--out", "corpus", "--max-words", "0"], "--max-words must be at least 1"),
]


@pytest.mark.parametrize(
    ("argv", "message"), COMMAND_ERRORS, ids=[case_id(argv) for argv, _ in COMMAND_ERRORS]
)
def test_bad_values_exit_2_and_name_the_option(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative paths above: nothing may appear here
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    assert err.startswith("janus: error: ") and message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


# ---------------------------------------------------------------------------------------------- logging


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        ([], {"progress", "careful"}),
        (["--quiet"], {"careful"}),
        (["--verbose"], {"detail", "progress", "careful"}),
    ],
)
def test_quiet_and_verbose_choose_what_reaches_stderr(flags, shown, capsys, monkeypatch):
    import logging

    import janusgen.cli.demo
    from janusgen.progress import quiet

    def messages(args: argparse.Namespace) -> int:
        log = logging.getLogger("janusgen.demo")
        log.debug("detail")
        log.info("progress")
        log.warning("careful")
        print("result")
        bars.append(not quiet())  # progress bars go with the progress messages
        return 0

    bars: list[bool] = []
    monkeypatch.setattr(janusgen.cli.demo, "_run_demo", messages)
    status, out, err = run([*flags, "demo"], capsys)
    assert status == 0 and out == "result\n"  # results on stdout whatever the level
    lines = {"detail": "detail", "progress": "progress", "careful": "janus: warning: careful"}
    assert err.splitlines() == [lines[name] for name in ("detail", "progress", "careful") if name in shown]
    assert bars == ["progress" in shown]
