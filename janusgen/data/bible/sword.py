"""Reading SWORD modules with pysword: every verse of a module's versification, by reference.

pysword is used through a private attribute: its zText driver decompresses a whole book for each verse,
and `_open_bible` wraps that method in a small cache (see there). Verses are read one reference at a
time so that a verse without text keeps its slot (see `_read_verses`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from janusgen.data.bible.packages import locate_modules
from janusgen.data.bible.texts import RawModule, SwordText
from janusgen.errors import JanusError
from janusgen.progress import quiet


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
    progress = tqdm(total=total, desc=desc, unit=" verses", file=sys.stderr, disable=quiet())
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
