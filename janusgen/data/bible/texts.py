"""The Bible texts the corpus can pair, and a SWORD module as read.

Kept apart from the steps that use them: locating (`packages`), reading (`sword`) and building
(`build`) all need `SwordText`, and a test's fake reader returns `RawModule`s without touching pysword.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


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


@dataclass(frozen=True)
class RawModule:
    """A module as read: OSIS reference ("Gen.1.1") -> raw OSIS markup, in the module's canonical order."""

    verses: dict[str, str]
    conf_version: str | None = None  # the .conf's Version= (the module's own release)
    package_version: str | None = None  # the Debian package's version, when known


# Reads the given texts (in order); tests pass a fake one, the default locates and reads SWORD modules.
ModuleReader = Callable[[Sequence[SwordText]], Sequence[RawModule]]
