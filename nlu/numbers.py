"""Spoken numbers to digits: callers say "four eight two one" or "forty two fifty".

Whisper usually writes digits, but not always, and DTMF-free callers read
account numbers digit by digit ("oh" for zero, "double five" for 55). Slot
extraction runs on the text after this normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Collection

UNITS = {"zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4,
         "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
REPEAT = {"double": 2, "triple": 3}
# ASR writes a digit read alone as its homophone ("account for zero zero one"); such a
# word counts as a digit only inside a run of digits, like "oh".
HOMOPHONES = {"for": 4, "to": 2, "too": 2, "won": 1, "ate": 8}
_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]+|\s+")
# Numerals that read an identifier digit by digit, as Whisper writes them: "0, 0, 1",
# "0019", "7 3". A homophone just before them is a digit too ("account for 0, 0, 1"), but
# not before an ordinary number ("for 2 months", "for 100 dollars").
_DIGIT_BY_DIGIT = re.compile(r"[\s,]*(?:0\d*\b|\d(?:(?:,?\s+|-)\d\b)+)")


def _value(words: list[str]) -> tuple[str, int] | None:
    """The digits spoken by the number words at the start of ``words``, and how many it used."""
    w = [x.lower() for x in words]
    if not w:
        return None
    if w[0] in REPEAT and len(w) > 1 and w[1] in UNITS and w[1] != "o":
        return str(UNITS[w[1]]) * REPEAT[w[0]], 2
    if w[0] in TENS:
        if len(w) > 1 and w[1] in UNITS and UNITS[w[1]] > 0 and w[1] not in {"o", "oh"}:
            return str(TENS[w[0]] + UNITS[w[1]]), 2
        return str(TENS[w[0]]), 1
    if w[0] in TEENS:
        return str(TEENS[w[0]]), 1
    if w[0] in UNITS and not (w[0] == "o" and len(w) == 1):
        if len(w) > 1 and w[1] == "hundred":
            return str(UNITS[w[0]] * 100), 2
        return str(UNITS[w[0]]), 1
    return None


def _read_digit_by_digit(words: list[str]) -> bool:
    """Whether ``words`` start with digits read one word each ("zero zero one", "double
    five"), as after a homophone that is a digit: "account for zero zero one" but not
    "waiting for two weeks" nor "for twenty one days"."""
    if words[:1] and words[0] in REPEAT:
        return True
    return len(words) >= 2 and words[0] in UNITS and (words[1] in UNITS or words[1] in REPEAT)


def spoken_digits_to_text(text: str) -> str:
    """Replace runs of number words with digits; digit runs separated by spaces are joined.

    "my pin is four eight two one" -> "my pin is 4821";
    "account 4001 1234" -> "account 40011234".
    """
    tokens = _WORD.findall(text)
    out: list[str] = []
    spoken_before = -1  # index in `out` of the last digits that came from number words
    homophone = -1  # index in `out` of the last digit that came from a homophone
    i = 0
    while i < len(tokens):
        words = [t for t in tokens[i:i + 3] if not t.isspace()]
        hit = _value(words) if tokens[i].isalpha() else None
        if hit is None and tokens[i].isalpha() and words[0].lower() in HOMOPHONES:
            hit = (str(HOMOPHONES[words[0].lower()]), 1)
        if hit is not None and words[0].lower() in {"oh", "o", *HOMOPHONES}:
            # "oh" is zero only inside a run of digits: "four oh one", not "oh, hello";
            # "for" is four only there too: "account for zero zero", not "pay for it".
            before = "".join(out).rstrip()
            ahead = [t.lower() for t in tokens[i + 1:i + 8] if not t.isspace()]
            if not (before[-1:].isdigit() or _read_digit_by_digit(ahead)
                    or _DIGIT_BY_DIGIT.match("".join(tokens[i + 1:i + 8]))):
                hit = None
        if hit is None:
            if (len(tokens[i]) > 1 and tokens[i].isdigit() and len(out) >= 2
                    and out[-1].isspace() and homophone == len(out) - 2):
                out[-2:] = [out[-2] + tokens[i]]  # "for 001": the homophone starts the number
            else:
                out.append(tokens[i])
            i += 1
            continue
        digits, used = hit
        # advance past `used` word tokens and the spaces between them
        consumed = 0
        while consumed < used:
            if not tokens[i].isspace():
                consumed += 1
            i += 1
        # Digits spoken one word at a time ("double five two") form one number.
        if len(out) >= 2 and out[-1].isspace() and spoken_before == len(out) - 2:
            out[-2:] = [out[-2] + digits]
        else:
            out.append(digits)
        spoken_before = len(out) - 1
        if words[0].lower() in HOMOPHONES:
            homophone = spoken_before
    joined = "".join(out)
    # Thousands separators are formatting: "4,001" is 4001.
    joined = re.sub(r"(?<=\d),(?=\d{3}\b)", "", joined)
    # "4 8 2 1", "4-8-2-1" or "4, 8, 2, 1" (how ASR writes digits read one by one) is one
    # number. Longer groups ("4001 1234", or "40019012 2468": an account then a PIN)
    # stay apart; slot extraction decides.
    return re.sub(r"(?<=\b\d)(?:,? |-)(?=\d\b)", "", joined)


def fits_lengths(text: str, lengths: Collection[int]) -> bool:
    """Whether ``text`` holds numbers of about the lengths asked for, each of exactly one
    of ``lengths`` digits. Numbers two or more digits shorter than the shortest are
    something else ("the 9th of November", "2 days") and are not judged."""
    shortest = min(lengths) - 1
    runs = [run for run in re.findall(r"\d+", spoken_digits_to_text(text)) if len(run) >= shortest]
    return bool(runs) and all(len(run) in lengths for run in runs)
