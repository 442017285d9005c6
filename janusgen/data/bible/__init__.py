"""A verse-aligned parallel Bible corpus built from Debian's SWORD packages, read with pysword.

Pipeline: locate (or fetch) the two SWORD modules -> read every verse by reference (each module in its
own versification) -> clean the OSIS markup -> align by reference -> assign a split by a hash of the
reference -> drop empty, over-long, badly proportioned and misnumbered pairs -> write text files and a
manifest.

One module per step, each importing only the ones before it:
- `texts`: the Bible texts we know (Debian package, SWORD module, language) and a module as read;
- `packages`: where a module is: a given folder, an installed package, or a .deb fetched with apt
  and unpacked into a cache;
- `sword`: reading a module verse by verse with pysword (and the patch that makes that fast);
- `osis`: OSIS markup to plain text, and the fixes specific to these editions;
- `alignment`: pairing verses by reference, the hash split and the filters;
- `build`: wires the steps together and writes the corpus, its manifest and its report.

The names below are the ones the rest of janusgen and the tests import from `janusgen.data.bible`. A
test that patches a helper patches it in the module that looks it up (for example
`janusgen.data.bible.packages._system_libraries`), not here.
"""

from janusgen.data.bible.alignment import SPLITS, align, misnumbered, split_of
from janusgen.data.bible.build import build_bible_corpus, format_bible_report
from janusgen.data.bible.osis import clean_module, clean_osis, drop_subscriptions, restore_opening_case
from janusgen.data.bible.packages import DEFAULT_CACHE, locate_modules
from janusgen.data.bible.sword import read_sword_modules
from janusgen.data.bible.texts import MODULES, ModuleReader, RawModule, SwordText

__all__ = [
    "DEFAULT_CACHE",
    "MODULES",
    "SPLITS",
    "ModuleReader",
    "RawModule",
    "SwordText",
    "align",
    "build_bible_corpus",
    "clean_module",
    "clean_osis",
    "drop_subscriptions",
    "format_bible_report",
    "locate_modules",
    "misnumbered",
    "read_sword_modules",
    "restore_opening_case",
    "split_of",
]
