"""Text a file format can hold: titles and names of any script, for formats that hold few.

Guitar Pro 5 stores its strings in Windows-1252: a Cyrillic, CJK, emoji or right-to-left
title would not fit. `for_codepage` keeps every character the code page has, spells the
others in Latin letters (anyascii: "Песня" -> "Pesnya", "曲" -> "Qu"), and puts "?" for
what has no spelling, so the file is written whatever the title. The original title stays
in result.json and MusicXML, which hold any text.
"""

from __future__ import annotations

import unicodedata


def _spell(ch: str) -> str:
    try:
        from anyascii import anyascii
    except ImportError:  # the gateway extra brings it; without it, accents are dropped at most
        decomposed = unicodedata.normalize("NFKD", ch)
        return "".join(c for c in decomposed if c.isascii() and not unicodedata.combining(c))
    return anyascii(ch)


def for_codepage(text: str, codepage: str = "cp1252") -> str:
    """`text` in characters `codepage` can encode: kept, transliterated or replaced by "?".

    Args:
        text: any Unicode text (combining marks are composed first: "e\u0301" is "é").
        codepage: the target encoding.

    Returns:
        Text that `text.encode(codepage)` accepts; control characters become spaces.
    """
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t":
            out.append(" " if unicodedata.category(ch) == "Cc" else "")
            continue
        try:
            ch.encode(codepage)
            out.append(ch)
            continue
        except UnicodeEncodeError:
            pass
        spelled = _spell(ch)
        try:
            spelled.encode(codepage)
        except UnicodeEncodeError:
            spelled = ""
        if not spelled and (unicodedata.category(ch) == "Lm" or unicodedata.combining(ch)):
            continue  # a length mark or an accent with no spelling of its own ("ー")
        out.append(spelled if spelled else "?")
    # Transliterations of adjacent characters run together ("曲名" -> "QuMing"): fine for a title.
    return "".join(out).strip()
