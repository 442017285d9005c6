"""Builds the corpus: reads the two texts, cleans and aligns them, and writes the files and manifest.

This is the one place the steps meet; the output folder is replaced atomically, so a failed build leaves
the previous one (or nothing) in place, and two builds from the same modules are byte-identical.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from janusgen.config import BibleConfig, to_dict
from janusgen.data.bible.alignment import SPLITS, align
from janusgen.data.bible.osis import clean_module
from janusgen.data.bible.sword import read_sword_modules
from janusgen.data.bible.texts import MODULES, ModuleReader, RawModule, SwordText
from janusgen.errors import JanusError
from janusgen.fileio import atomic_directory, sha256_file, write_json


def build_bible_corpus(
    out: Path,
    cfg: BibleConfig,
    cache_dir: Path | None = None,
    *,
    reader: ModuleReader | None = None,
) -> dict[str, Any]:
    """Build the corpus into `out` (replaced atomically) and return its manifest.

    Writes {split}.{source}, {split}.{target} and {split}.ref (one verse per line, canonical order) for
    train/valid/test, and manifest.json. Two builds from the same modules are byte-identical.
    """
    source, target = _check_config(cfg)
    if reader is None:
        reader = functools.partial(read_sword_modules, sword_path=cfg.sword_path, cache_dir=cache_dir)
    raw_source, raw_target = reader([source, target])
    src = clean_module(raw_source.verses, source.capital_openings)
    tgt = clean_module(raw_target.verses, target.capital_openings)
    splits, dropped = align(src, tgt, cfg)

    out = Path(out)
    with atomic_directory(out) as tmp:
        files: dict[str, str] = {}
        stats: dict[str, dict[str, Any]] = {}
        for name in SPLITS:
            rows = splits[name]
            for column, suffix in enumerate(("ref", source.key, target.key)):
                path = tmp / f"{name}.{suffix}"
                with open(path, "w", encoding="utf-8", newline="\n") as f:
                    f.writelines(row[column] + "\n" for row in rows)
                files[path.name] = sha256_file(path)
            stats[name] = {
                "pairs": len(rows),
                "mean_words": {
                    source.key: _mean_words(row[1] for row in rows),
                    target.key: _mean_words(row[2] for row in rows),
                },
            }
        manifest = {
            "source": _describe(source, raw_source),
            "target": _describe(target, raw_target),
            "config": to_dict(cfg),
            "references": {"source": len(src), "target": len(tgt)},
            "splits": stats,
            "dropped": dropped,
            "files": files,
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _check_config(cfg: BibleConfig) -> tuple[SwordText, SwordText]:
    """The two texts `cfg` names (its other values are checked by BibleConfig itself)."""
    choices = ", ".join(sorted(MODULES))
    for option, key in (("--source", cfg.source), ("--target", cfg.target)):
        if key not in MODULES:
            raise JanusError(f"{option}: unknown Bible text {key!r} (choose from {choices})")
    return MODULES[cfg.source], MODULES[cfg.target]


def _describe(text: SwordText, raw: RawModule) -> dict[str, Any]:
    return {
        "key": text.key,
        "lang": text.lang,
        "module": text.module,
        "conf_version": raw.conf_version,
        "package": text.package,
        "package_version": raw.package_version,
    }


def _mean_words(lines: Iterable[str]) -> float:
    counts = [len(line.split()) for line in lines]
    return round(sum(counts) / len(counts), 2) if counts else 0.0


def format_bible_report(manifest: dict[str, Any]) -> str:
    """A short table: pairs per split, mean words per side, and what was dropped and why."""
    src, tgt = manifest["source"], manifest["target"]
    lines = [
        f"Bible corpus {src['key']} ({src['lang']}, {src['module']}) -> "
        f"{tgt['key']} ({tgt['lang']}, {tgt['module']})",
        f"{'split':<8}{'pairs':>9}{'words ' + src['key']:>14}{'words ' + tgt['key']:>14}",
    ]
    for name in SPLITS:
        s = manifest["splits"][name]
        words = s["mean_words"]
        lines.append(f"{name:<8}{s['pairs']:>9,}{words[src['key']]:>14.1f}{words[tgt['key']]:>14.1f}")
    total = sum(manifest["splits"][name]["pairs"] for name in SPLITS)
    lines.append(f"{'total':<8}{total:>9,}")
    dropped = manifest["dropped"]
    lines.append(
        f"dropped {sum(dropped.values()):,}: " + ", ".join(f"{reason} {n:,}" for reason, n in dropped.items())
    )
    return "\n".join(lines)
