"""Real recorded speech with a known text for the text-path tests: `two_cities.wav` from the moonshine-voice wheel.

The recording reads the opening of Dickens' "A Tale of Two Cities" (public domain); the wheel (MIT) is a dev extra.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TWO_CITIES_TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was "
    "the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before "
    "us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way - "
    "in short, the period was so far like the present period, that some of its noisiest authorities insisted on "
    "its being received, for good or for evil, in the superlative degree of comparison only.")
# the first 36 words end with "incredulity," at about 12.9 s, followed by a pause
FIRST_WORDS = 36


def two_cities_wav() -> Path:
    """Path of two_cities.wav (skips the test when moonshine-voice is not installed)."""
    try:
        import moonshine_voice
    except ImportError:
        pytest.skip("needs the moonshine-voice wheel (pip install -e .[dev]) for real speech with known text")
    p = Path(moonshine_voice.__file__).parent / "assets" / "two_cities.wav"
    if not p.is_file():
        pytest.skip(f"{p} is missing from the installed moonshine-voice")
    return p
