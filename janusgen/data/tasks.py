"""The GLGE-style generation tasks `janus data prepare --task` reads from Hugging Face datasets: which
columns a row needs and how they become one (source, target) pair (janusgen.data.sources reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from janusgen.errors import JanusError


@dataclass(frozen=True)
class Task:
    """A GLGE-style generation task read from a Hugging Face dataset: which columns a row needs and how
    they become one (source, target) pair. `src` / `tgt` name the two sides in meta.json."""

    name: str
    hub: str  # the dataset on the hub, for `--hf-dataset` (a local save_to_disk copy has the same columns)
    hub_config: str | None
    columns: tuple[str, ...]
    src: str
    tgt: str
    pair: Callable[[dict[str, Any]], tuple[Any, Any]]
    metric: str  # what `janus evaluate --metric auto` scores it with


SEP = " [SEP] "  # between the parts of a composed source (answer / passage, persona / dialogue turns)


def _squad_qg(row: dict[str, Any]) -> tuple[Any, Any]:
    """SQuAD 1.1 question generation (GLGE): answer [SEP] passage -> question."""
    answers = row["answers"]
    texts = answers.get("text") if isinstance(answers, dict) else None
    answer = texts[0] if texts else ""
    return f"{answer}{SEP}{row['context']}", row["question"]


def _personachat(row: dict[str, Any]) -> tuple[Any, Any]:
    """PersonaChat (GLGE): persona sentences [SEP] dialogue history -> the gold response, which is the
    last of `candidates`."""
    persona = " ".join(row["personality"] or [])
    return persona + SEP + SEP.join(row["history"] or []), (row["candidates"] or [""])[-1]


TASKS = {
    t.name: t
    for t in (
        Task(
            "xsum",
            "EdinburghNLP/xsum",
            None,
            ("document", "summary"),
            "document",
            "summary",
            lambda r: (r["document"], r["summary"]),
            "rouge",
        ),
        Task(
            "cnn_dailymail",
            "abisee/cnn_dailymail",
            "3.0.0",
            ("article", "highlights"),
            "article",
            "highlights",
            lambda r: (r["article"], r["highlights"]),
            "rouge",
        ),
        Task(
            "squad_qg",
            "rajpurkar/squad",
            None,
            ("context", "question", "answers"),
            "passage",
            "question",
            _squad_qg,
            "rouge",
        ),
        Task(
            "personachat",
            "bavard/personachat_truecased",
            None,
            ("personality", "history", "candidates"),
            "dialogue",
            "response",
            _personachat,
            "rouge",
        ),
    )
}


def task(name: str) -> Task:
    if name not in TASKS:
        raise JanusError(f"--task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]
