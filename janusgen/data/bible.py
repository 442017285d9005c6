"""A verse-aligned parallel Bible corpus built from Debian's SWORD packages, read with pysword.

Pipeline: locate (or fetch) the two SWORD modules -> read every verse by reference (each module in its
own versification) -> clean the OSIS markup -> align by reference -> assign a split by a hash of the
reference -> drop empty, over-long, badly proportioned and misnumbered pairs -> write text files and a
manifest.

Cleaning decisions (see `clean_osis`):
- footnotes and cross references (`<note>`), editorial headings (`<title>` without canonical="true")
  and speaker labels (`<speaker>`, Song of Songs in the WEB) are dropped: they are not in the other text;
- canonical titles (Psalm superscriptions) are kept: the Spanish RV1909 prints them as verse text of
  verse 1, so keeping them in the English texts keeps the pair parallel;
- anything after the end of a book in a verse (the WEB appends a glossary to Rev 22:21) is cut, and so
  are the subscriptions the RV1909 prints after the last "Amén" of the epistles.

The RV1909 module also keeps the Spanish verse numbers in a few places (Num 13, 1 Sam 24, Jonah 2, ...)
although it declares the KJV versification; such stretches are found from verse lengths and dropped
(see `misnumbered`).

The RV1909 sets the opening words of each chapter in capitals ("EN el principio", "Y ACONTECIÓ").
Those runs are re-cased (see `restore_opening_case`): a vocabulary of "En" and "EN" as two tokens helps
no one, and the English texts have no such convention.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from janusgen.config import BibleConfig, to_dict
from janusgen.errors import JanusError
from janusgen.fileio import atomic_directory, sha256_file, write_json

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SwordText:
    """One Bible text: the Debian package that ships it, its SWORD module name and its language."""

    key: str
    package: str
    module: str
    lang: str
    capital_openings: bool = False  # chapters open with words in capitals (see restore_opening_case)


MODULES: dict[str, SwordText] = {
    "sparv": SwordText("sparv", "sword-text-sparv", "spaRV1909eb", "es", capital_openings=True),
    "web": SwordText("web", "sword-text-web", "engWEB2015eb", "en"),
    "kjv": SwordText("kjv", "sword-text-kjv", "engKJV2006eb", "en"),
}

DEFAULT_CACHE = Path.home() / ".cache" / "janusgen" / "sword"


@dataclass(frozen=True)
class RawModule:
    """A module as read: OSIS reference ("Gen.1.1") -> raw OSIS markup, in the module's canonical order."""

    verses: dict[str, str]
    conf_version: str | None = None  # the .conf's Version= (the module's own release)
    package_version: str | None = None  # the Debian package's version, when known


# Reads the given texts (in order); tests pass a fake one, the default locates and reads SWORD modules.
ModuleReader = Callable[[Sequence[SwordText]], Sequence[RawModule]]


# ------------------------------------------------------------------------------------------- build


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


# ----------------------------------------------------------------------------------- align + split


def split_of(ref: str, valid_fraction: float, test_fraction: float) -> str:
    """The split of a verse, from a hash of its reference alone: the same for every pair and direction."""
    u = int.from_bytes(hashlib.sha256(ref.encode("utf-8")).digest()[:8], "big") / 2**64  # uniform [0, 1)
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def align(
    src: dict[str, str], tgt: dict[str, str], cfg: BibleConfig
) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, int]]:
    """Pair cleaned verses by reference, in the source's order; return (split -> [(ref, src, tgt)], drops).

    Each dropped reference is counted once, under the first reason that applies, in the order of the
    returned dict.
    """
    common = [ref for ref in src if ref in tgt]
    src_words = np.array([len(src[ref].split()) for ref in common], dtype=np.int64)
    tgt_words = np.array([len(tgt[ref].split()) for ref in common], dtype=np.int64)
    both = (src_words > 0) & (tgt_words > 0)
    shifted = np.zeros(len(common), dtype=bool)
    # Checked both ways round, so that both directions of a pair (es->en, en->es) keep the same verses.
    shift_args = (cfg.shift_window, cfg.max_shift, cfg.shift_margin)
    shifted[both] = misnumbered(src_words[both], tgt_words[both], *shift_args) | misnumbered(
        tgt_words[both], src_words[both], *shift_args
    )

    dropped = {
        "only_in_source": len(src) - len(common),
        "only_in_target": len(tgt) - len(common),
        "empty_source": 0,
        "empty_target": 0,
        "too_long": 0,
        "bad_ratio": 0,
        "misnumbered": 0,
    }
    splits: dict[str, list[tuple[str, str, str]]] = {name: [] for name in SPLITS}
    for i, ref in enumerate(common):
        # The split is fixed before filtering, so a filter setting never moves a verse between splits.
        split = split_of(ref, cfg.valid_fraction, cfg.test_fraction)
        ns, nt = int(src_words[i]), int(tgt_words[i])
        if ns == 0:
            dropped["empty_source"] += 1
        elif nt == 0:
            dropped["empty_target"] += 1
        elif max(ns, nt) > cfg.max_words:
            dropped["too_long"] += 1
        elif max(ns, nt) / min(ns, nt) > cfg.max_ratio:
            dropped["bad_ratio"] += 1
        elif shifted[i]:
            dropped["misnumbered"] += 1
        else:
            splits[split].append((ref, src[ref], tgt[ref]))
    return splits, dropped


def misnumbered(
    src_words: np.ndarray, tgt_words: np.ndarray, window: int, max_shift: int, margin: float
) -> np.ndarray:
    """Which pairs lie in a stretch where one text numbers its verses differently from the other.

    A translation's length ratio is steady. For each run of 2 * window + 1 consecutive pairs, compare
    the mean |log length ratio| (less its median) when verses are paired by number with the same when one
    side is shifted by 1..max_shift verses; if a shift fits better by `margin`, every pair of the run is
    flagged. Word counts are > 0; returns a boolean mask.
    """
    n, width = len(src_words), 2 * window + 1
    flagged = np.zeros(n, dtype=bool)
    if max_shift == 0 or n < width:
        return flagged
    # + 2 words steadies the ratio of very short verses ("Jesus wept.").
    log_src, log_tgt = np.log(src_words + 2.0), np.log(tgt_words + 2.0)
    median = np.median(log_src - log_tgt)

    def window_cost(shift: int) -> np.ndarray:
        cost = np.full(n, np.inf)  # pairing past either end never fits
        lo, hi = max(0, -shift), min(n, n - shift)
        cost[lo:hi] = np.abs(log_src[lo:hi] - log_tgt[lo + shift : hi + shift] - median)
        return sliding_window_view(cost, width).mean(axis=1)  # (n - width + 1,)

    in_place = window_cost(0)
    best_shifted = np.min([window_cost(s) for s in range(-max_shift, max_shift + 1) if s != 0], axis=0)
    bad = best_shifted < in_place - margin
    for offset in range(width):  # flag every pair of each bad window
        flagged[offset : offset + len(bad)] |= bad
    return flagged


# ---------------------------------------------------------------------------------------- cleaning

_SOFT = "\x00"  # where markup separated two things: a space if a word follows it (see clean_osis)
_DIV = re.compile(r"<div\b[^>]*>")
_ATTR = re.compile(r"""([\w:]+)\s*=\s*["']([^"']*)["']""")
_BACK_MATTER = {"glossary", "index", "appendix", "backMatter"}
_EDITORIAL = re.compile(
    r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>"
    r"|<title\b(?![^>]*\bcanonical=[\"']true)[^>]*>.*?</title>"
    r"|<speaker\b[^>]*>.*?</speaker>",
    re.DOTALL,
)
_END_THEN_START = re.compile(r"(</[^>]*>)(?=<[^/])")
_TAG = re.compile(r"<[^>]*>")
_SOFT_BEFORE_WORD = re.compile(rf"(?<=[^\s“‘(\[¿¡{_SOFT}]){_SOFT}+(?=\w)")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+(?=[,.;:?!])")
_USFM_MARKER = re.compile(r"\\[a-z]+\d*\*?")  # e.g. "\nd" left over from USFM in the KJV module


def clean_osis(raw: str) -> str:
    """Plain text of one verse's OSIS markup (pysword's clean=False text).

    pysword's own cleaner glues words where a note or an element boundary separated them ("God<note>
    ..</note>created" -> "Godcreated"); here such markup becomes a space when a word follows it (and no
    space or opening bracket or quote precedes it), and nothing otherwise: "Christ,<note>..</note>the"
    -> "Christ, the" but "earth<note>..</note>." -> "earth.". Whitespace is collapsed, and dropped
    before , . ; : ? ! (the WEB has a few "coins ?").
    """
    text = raw[: _end_of_verse(raw)]
    text = _EDITORIAL.sub(_SOFT, text)
    # Sibling elements written back to back ("allí</w><transChange>también") are separate words;
    # text running into or out of a tag ("give</w>n") is one word.
    text = _END_THEN_START.sub(r"\1" + _SOFT, text)
    text = _TAG.sub("", text)
    text = _SOFT_BEFORE_WORD.sub(" ", text).replace(_SOFT, "")
    text = _USFM_MARKER.sub("", text.replace("¶", ""))
    text = html.unescape(text)
    return _SPACE_BEFORE_PUNCTUATION.sub("", " ".join(text.split()))


def _end_of_verse(raw: str) -> int:
    """Where the verse proper ends: at the end-of-book marker or the start of back matter, if any."""
    for m in _DIV.finditer(raw):
        attrs = dict(_ATTR.findall(m.group(0)))
        kind = attrs.get("type")
        if (kind == "book" and "eID" in attrs) or kind in _BACK_MATTER:
            return m.start()
    return len(raw)


def clean_module(verses: dict[str, str], capital_openings: bool = False) -> dict[str, str]:
    """Clean every verse, drop the epistles' subscriptions, re-case capitalised chapter openings."""
    clean = drop_subscriptions({ref: clean_osis(raw) for ref, raw in verses.items()})
    return restore_opening_case(clean) if capital_openings else clean


_AMEN = re.compile(r"\bAm[eé]n\b[.!]?")


def drop_subscriptions(verses: dict[str, str]) -> dict[str, str]:
    """Cut the last verse of each book after its last "Amen".

    The RV1909 prints the epistles' subscriptions as text of their last verse ("... Amén. Fué escrita
    de Corinto á los Romanos, ..."); the KJV marks them as non-canonical titles (dropped by clean_osis)
    and the WEB has none, so they would be untranslated text in a pair.
    """
    out = dict(verses)
    refs = list(verses)
    for ref, following in zip(refs, [*refs[1:], None], strict=True):
        if following is not None and following.split(".")[0] == ref.split(".")[0]:
            continue  # not the last verse of its book
        amens = list(_AMEN.finditer(verses[ref]))
        if amens:
            out[ref] = verses[ref][: amens[-1].end()]
    return out


_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_LETTER = re.compile(r"[^\W\d_]")


def _letters(word: str) -> str:
    return "".join(c for c in word if c.isalpha())


def _is_capitals(word: str) -> bool:
    letters = _letters(word)
    return bool(letters) and letters.isupper()


def restore_opening_case(verses: dict[str, str]) -> dict[str, str]:
    """Re-case the words a printed Bible sets in capitals at the start of a chapter.

    In verse 1 of each chapter, the first run of all-capital words that opens a sentence ("EN el
    principio", or "¡OH Jehová" after a psalm's superscription) is re-cased: each word takes the form,
    lower case or capitalised, that is more frequent in the rest of the text ("Y JEHOVÁ habló" -> "Y
    Jehová habló"), and the run's first letter is capitalised. Capitals elsewhere ("MENE, MENE, TEKEL")
    are the text's own and stay.
    """
    # Word forms outside capitalised runs: how the text spells each word when it is not shouting.
    counts = Counter(
        w for text in verses.values() for w in _WORD.findall(text) if not w.isupper() or len(w) == 1
    )

    def recase(match: re.Match[str]) -> str:
        word = match.group(0)
        lower, title = word.lower(), word.capitalize()
        return lower if counts[lower] >= counts[title] else title

    out = dict(verses)
    for ref, text in verses.items():
        if not ref.endswith(".1"):
            continue
        words = text.split(" ")
        for start in range(len(words)):
            if start > 0 and words[start - 1][-1] not in ".:;!?":
                continue  # not the start of a sentence
            end = start
            while end < len(words) and _is_capitals(words[end]):
                end += 1
            # A lone one-letter capital ("Y dijo") is ordinary; "Y FUERON" is a capitalised opening.
            if any(len(_letters(w)) > 1 for w in words[start:end]):
                run = [_WORD.sub(recase, w) for w in words[start:end]]
                run[0] = _LETTER.sub(lambda m: m.group(0).upper(), run[0], count=1)
                out[ref] = " ".join(words[:start] + run + words[end:])
                break
    return out


# ----------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Location:
    library: Path  # a SWORD library folder (with mods.d/)
    package_version: str | None


def read_sword_modules(
    texts: Sequence[SwordText], sword_path: str | None = None, cache_dir: Path | None = None
) -> list[RawModule]:
    """Locate (fetching if needed) and read the given texts, verse by verse, with a progress bar."""
    locations = locate_modules(texts, sword_path, cache_dir)
    out = []
    for text in texts:
        where = locations[text.key]
        bible, conf = _open_bible(where.library, text.module)
        verses = _read_verses(bible, desc=f"reading {text.module}")
        out.append(RawModule(verses, conf_version=conf.get("version"), package_version=where.package_version))
    return out


def _open_bible(library: Path, module: str) -> tuple[Any, dict[str, str]]:
    from pysword.modules import SwordModules

    modules = SwordModules(str(library))
    confs = modules.parse_modules()
    try:
        bible = modules.get_bible_from_module(module)
    except (OSError, ValueError, KeyError) as e:  # missing data files, unknown driver or versification
        raise JanusError(f"{library}: cannot read SWORD module {module}: {e}") from e
    # pysword decompresses a whole book to return one verse of a zText module; remembering the last
    # block makes reading a module ~100x faster (0.4 s instead of about a minute). Other drivers read
    # as they are.
    if hasattr(bible, "_decompressed_text"):
        bible._decompressed_text = functools.lru_cache(maxsize=2)(bible._decompressed_text)
    return bible, confs[module]


def _read_verses(bible: Any, desc: str) -> dict[str, str]:
    """Every verse of the module's versification, by reference; a verse with no text reads as ''.

    One reference at a time: `get_iter` skips verses without text, so its output cannot be zipped
    with the references.
    """
    from tqdm import tqdm

    books = bible.get_structure().get_books()
    total = sum(sum(b.chapter_lengths) for t in books.values() for b in t)
    progress = tqdm(total=total, desc=desc, unit=" verses", file=sys.stderr)
    verses = {}
    for testament in ("ot", "nt"):
        for book in books.get(testament, []):
            for chapter, length in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, length + 1):
                    verses[f"{book.osis_name}.{chapter}.{verse}"] = bible.get(
                        books=[book.osis_name], chapters=[chapter], verses=[verse], clean=False
                    )
                progress.update(length)
    progress.close()
    return verses


def _library_modules(library: Path) -> set[str]:
    """Module names a SWORD library folder holds (empty when it has no mods.d/)."""
    from pysword.modules import SwordModules

    if not (library / "mods.d").is_dir():
        return set()
    return set(SwordModules(str(library)).parse_modules())


def _system_libraries() -> list[tuple[Path, bool]]:
    """(SWORD library, managed by dpkg?) in search order."""
    found = [(Path("/usr/share/sword"), True), (Path.home() / ".sword", False)]
    if os.environ.get("SWORD_PATH"):
        found.append((Path(os.environ["SWORD_PATH"]), False))
    return found


def locate_modules(
    texts: Sequence[SwordText], sword_path: str | None = None, cache_dir: Path | None = None
) -> dict[str, _Location]:
    """Find each text's SWORD module: in `sword_path` if given; else installed; else fetched into a cache.

    Fetching runs `apt-get download` and `dpkg -x` into `cache_dir` (default ~/.cache/janusgen/sword),
    needs no root, and is reused by later runs.
    """
    if sword_path is not None:
        library = Path(sword_path).expanduser()
        held = _library_modules(library)
        missing = [t for t in texts if t.module not in held]
        if missing:
            names = ", ".join(f"{t.module} ({t.package})" for t in missing)
            has = ", ".join(sorted(held)) or "nothing (no mods.d/)"
            raise JanusError(f"--sword-path {library}: no SWORD module {names}; it holds {has}")
        return {t.key: _Location(library, None) for t in texts}

    found: dict[str, _Location] = {}
    for text in texts:
        for library, by_dpkg in _system_libraries():
            if text.module in _library_modules(library):
                found[text.key] = _Location(library, _installed_version(text.package) if by_dpkg else None)
                break
    missing = [t for t in texts if t.key not in found]
    if missing:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE
        found.update(_from_cache(missing, cache))
    return found


def _installed_version(package: str) -> str | None:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _from_cache(texts: Sequence[SwordText], cache: Path) -> dict[str, _Location]:
    """Locations of unpacked packages under `cache`, fetching the ones not there yet."""
    to_fetch = [t for t in texts if not (cache / t.package / "package.json").is_file()]
    if to_fetch:
        _fetch_packages(to_fetch, cache)
    found = {}
    for text in texts:
        root = cache / text.package
        info = json.loads((root / "package.json").read_text(encoding="utf-8"))
        library = root / "usr" / "share" / "sword"
        if text.module not in _library_modules(library):
            raise JanusError(
                f"{root}: package {text.package} has no SWORD module {text.module}; delete that folder "
                "to fetch it again"
            )
        found[text.key] = _Location(library, info["version"])
    return found


def _fetch_packages(texts: Sequence[SwordText], cache: Path) -> None:
    """`apt-get download` the packages and unpack each, atomically, into cache/<package>/."""
    packages = [t.package for t in texts]
    with tempfile.TemporaryDirectory(prefix="janusgen-sword-") as tmp:
        try:
            _run(["apt-get", "download", *packages], cwd=Path(tmp), texts=texts)
        except JanusError:
            # a fresh machine often has no package lists yet; as root, refresh them once and retry
            if not (hasattr(os, "geteuid") and os.geteuid() == 0):
                raise
            print(
                "janus: apt-get download failed; running `apt-get update` and trying again", file=sys.stderr
            )
            _run(["apt-get", "update", "-qq"], cwd=Path(tmp), texts=texts)
            _run(["apt-get", "download", *packages], cwd=Path(tmp), texts=texts)
        for package in packages:
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if len(debs) != 1:
                raise JanusError(f"apt-get download {package} left {len(debs)} .deb files in {tmp}")
            deb = debs[0]
            version = _run(["dpkg-deb", "-f", str(deb), "Version"], cwd=Path(tmp), texts=texts).strip()
            with atomic_directory(cache / package) as unpacked:
                _run(["dpkg", "-x", str(deb), str(unpacked)], cwd=Path(tmp), texts=texts)
                write_json(
                    unpacked / "package.json",
                    {"package": package, "version": version, "deb": deb.name, "sha256": sha256_file(deb)},
                )


def _run(cmd: list[str], cwd: Path, texts: Sequence[SwordText]) -> str:
    """Run a packaging command; on failure, say what to install instead."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        reason = f"{cmd[0]} is not available"
    else:
        if done.returncode == 0:
            return done.stdout
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = f"`{' '.join(cmd)}` failed: {lines[-1] if lines else f'exit status {done.returncode}'}"
    modules = ", ".join(t.module for t in texts)
    packages = " ".join(t.package for t in texts)
    raise JanusError(
        f"SWORD module(s) {modules} not found in /usr/share/sword, ~/.sword or $SWORD_PATH, and fetching "
        f"them failed ({reason}). Install them with `apt-get update && apt-get install {packages}`, or pass "
        "--sword-path "
        "DIR (a SWORD library folder with mods.d/)"
    )
