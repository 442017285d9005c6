"""OSIS markup to plain text, with the fixes these editions need to stay parallel.

Cleaning decisions (see `clean_osis`):
- footnotes and cross references (`<note>`), editorial headings (`<title>` without canonical="true")
  and speaker labels (`<speaker>`, Song of Songs in the WEB) are dropped: they are not in the other text;
- canonical titles (Psalm superscriptions) are kept: the Spanish RV1909 prints them as verse text of
  verse 1, so keeping them in the English texts keeps the pair parallel;
- anything after the end of a book in a verse (the WEB appends a glossary to Rev 22:21) is cut, and so
  are the subscriptions the RV1909 prints after the last "Amén" of the epistles.

The RV1909 sets the opening words of each chapter in capitals ("EN el principio", "Y ACONTECIÓ").
Those runs are re-cased (see `restore_opening_case`): a vocabulary of "En" and "EN" as two tokens helps
no one, and the English texts have no such convention.
"""

from __future__ import annotations

import html
import re
from collections import Counter

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
