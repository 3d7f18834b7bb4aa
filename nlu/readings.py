"""Choosing among Whisper's readings of an answer by what the assistant asked for.

Greedy decoding gives one reading of an answer. When it cannot be what was
asked for (a PIN of five digits, an address in no town the operator serves),
an IVR grammar would reject it; here the likeliest of the next-best readings
that fits is taken instead (``AlternativesTranscriber``), and the first
reading stands when none fits. Nothing here imports an ASR engine: the
readings come from a callable, called only when the first reading does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

from nlu.numbers import fits_lengths

# A prompt lists at most this many place names: Whisper's prompt holds ~220 tokens.
MAX_PLACES = 24


def first_that(fits: Callable[[str], bool], heard: str,
               alternatives: Callable[[], list[str]]) -> str:
    """``heard`` if it fits, else the likeliest of ``alternatives()`` that does, else
    ``heard`` (a caller may well answer something else than what was asked)."""
    if fits(heard):
        return heard
    return next((text for text in alternatives() if fits(text)), heard)


def reading_that_fits(heard: str, alternatives: Callable[[], list[str]],
                      lengths: Collection[int]) -> str:
    """The first reading of an answer whose numbers have the lengths asked for.

    Whisper miscounts a digit said several times over ("1, 1, 1, 1, 1" for a PIN of
    four ones, "free, free, free, free" for 3333); an IVR's digit grammar would reject
    that reading, and so does this. Nothing asked for: ``heard`` stands.
    """
    if not lengths:
        return heard
    return first_that(lambda text: fits_lengths(text, lengths), heard, alternatives)


def names_a_place(text: str, places: Sequence[str]) -> bool:
    return any(re.search(rf"\b{re.escape(place)}\b", text, re.I) for place in places)


def places_prompt(hint: str, places: Sequence[str]) -> str:
    """Whisper's prompt that spells the places (contextual biasing: a town's name is
    written as the operator writes it, not as "killing switch" for Kingsbridge)."""
    listed = ", ".join(list(places)[:MAX_PLACES])
    return f"{hint} Our towns: {listed}.".strip()


def reading_that_names(heard: str, alternatives: Callable[[], list[str]],
                       places: Sequence[str]) -> str:
    """The first reading of an address that names one of ``places``; none: ``heard``."""
    if not places:
        return heard
    return first_that(lambda text: names_a_place(text, places), heard, alternatives)
