"""Transcript words: splitting text into display words and spelling each as dictionary words (numbers, symbols)."""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"%": "percent", "&": "and", "+": "plus", "@": "at", "=": "equals", "$": "dollars"}
_WORD_RE = re.compile(r"[^\s]+")
_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:'[a-z]+)*|[%&+@=$]")


def split_words(text: str) -> list[str]:
    """Display words of a transcript: whitespace-separated tokens that contain a letter, digit or symbol."""
    out = []
    for tok in _WORD_RE.findall(text):
        if _TOKEN_RE.search(tok.lower()):
            out.append(tok)
    return out


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_words(n: int) -> list[str]:
    """Cardinal number as words: 2011 -> two thousand eleven."""
    if n < 0:
        return ["minus"] + number_words(-n)
    if n < 1000:
        return _below_thousand(n)
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += number_words(n // value) + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return words


def year_words(n: int) -> list[str]:
    """A four-digit year as spoken: 1981 -> nineteen eighty one, 2011 -> twenty eleven, 2005 -> two thousand five."""
    hi, lo = divmod(n, 100)
    if 2000 <= n <= 2009:
        return number_words(n)
    if lo == 0:
        return _below_thousand(hi) + ["hundred"]
    return _below_thousand(hi) + (["oh"] if lo < 10 else []) + _below_thousand(lo)


def _plural_number(words: list[str]) -> list[str]:
    last = words[-1]
    if last.endswith("y"):
        return words[:-1] + [last[:-1] + "ies"]
    return words[:-1] + [last + "s"]


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL_WORDS:
        return words[:-1] + [_ORDINAL_WORDS[last]]
    if last.endswith("y"):
        return words[:-1] + [last[:-1] + "ieth"]
    return words[:-1] + [last + "th"]


def spell_number(token: str, suffix: str = "") -> list[str]:
    """Digits (with an optional suffix: s, st/nd/rd/th, d for '3d') as dictionary words."""
    token = token.replace(",", "")
    if "." in token:
        whole, frac = token.split(".", 1)
        return number_words(int(whole or "0")) + ["point"] + [_ONES[int(c)] for c in frac if c.isdigit()]
    n = int(token)
    is_year = len(token) == 4 and 1100 <= n <= 2099
    words = year_words(n) if is_year else number_words(n)
    if suffix == "s":
        return _plural_number(words)
    if suffix in ("st", "nd", "rd", "th"):
        return _ordinal(words)
    if suffix:
        return words + list(suffix)
    return words


def spoken_forms(word: str) -> list[str]:
    """Lower-case dictionary words a display word is spoken as ('80s' -> eighties, "3d" -> three d, '&' -> and)."""
    out: list[str] = []
    for tok in re.findall(r"\d+(?:[.,]\d+)*[a-z]*|[a-z]+(?:'[a-z]+)*|[%&+@=$]", word.lower()):
        m = re.fullmatch(r"(\d+(?:[.,]\d+)*)([a-z]*)", tok)
        if m:
            out += spell_number(m.group(1), m.group(2))
        elif tok in _SYMBOLS:
            out.append(_SYMBOLS[tok])
        else:
            out.append(tok)
    return out
