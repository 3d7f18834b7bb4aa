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
SCALES = {"thousand": 1000, "hundred": 100}  # biggest first: "two thousand five hundred"
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
            "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
            "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
            "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
            "thirtieth": 30}
# ASR writes a digit read alone as its homophone ("account for zero zero one"); such a
# word counts as a digit only inside a run of digits, like "oh".
HOMOPHONES = {"for": 4, "to": 2, "too": 2, "won": 1, "ate": 8}
_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]+|\s+")
# Numerals that read an identifier digit by digit, as Whisper writes them: "0, 0, 1",
# "0019", "7 3". A homophone just before them is a digit too ("account for 0, 0, 1"), but
# not before an ordinary number ("for 2 months", "for 100 dollars").
_DIGIT_BY_DIGIT = re.compile(r"[\s,]*(?:0\d*\b|\d(?:(?:,?\s+|-)\d\b)+)")
# "sixty-five" is one number: the hyphen must not split it ("nineteen sixty-five" is 1965).
_HYPHENATED = re.compile(rf"\b({'|'.join(TENS)})-({'|'.join(k for k, v in UNITS.items() if v)})\b",
                         re.IGNORECASE)


def _value(words: list[str]) -> tuple[str, int] | None:
    """The digits spoken by the number words at the start of ``words``, and how many it used."""
    w = [x.lower() for x in words]
    if not w:
        return None
    if w[0] in REPEAT and len(w) > 1 and w[1] in UNITS and w[1] != "o":
        return str(UNITS[w[1]]) * REPEAT[w[0]], 2
    scaled = _scaled(w)
    if scaled is not None:
        return str(scaled[0]), scaled[1]
    if w[0] in UNITS and not (w[0] == "o" and len(w) == 1):
        return str(UNITS[w[0]]), 1
    small = _below_hundred(w)
    return (str(small[0]), small[1]) if small else None


def _below_hundred(w: list[str]) -> tuple[int, int] | None:
    """1 to 99 said as one or two words ("seven", "twelve", "fifty eight"), and the words used.
    Zero words are left out: "oh" reads a digit, never a quantity."""
    if not w:
        return None
    if w[0] in TENS:
        if len(w) > 1 and w[1] in UNITS and UNITS[w[1]] > 0 and w[1] not in {"o", "oh"}:
            return TENS[w[0]] + UNITS[w[1]], 2
        return TENS[w[0]], 1
    if w[0] in TEENS:
        return TEENS[w[0]], 1
    if w[0] in UNITS and UNITS[w[0]] > 0 and w[0] not in {"o", "oh"}:
        return UNITS[w[0]], 1
    return None


def _scaled(w: list[str]) -> tuple[int, int] | None:
    """A number said with "thousand" or "hundred" ("two thousand and one", "fibre one
    thousand", "five hundred and fifty"), and the words used; None without a scale word.
    Years and plan names are said this way, not digit by digit, so the parts add up."""
    total, used = 0, 0
    for word, scale in SCALES.items():
        head = _below_hundred(w[used:])
        if head and w[used + head[1]:used + head[1] + 1] == [word]:
            total += head[0] * scale
            used += head[1] + 1
            if w[used:used + 1] == ["and"] and _below_hundred(w[used + 1:]):
                used += 1  # "two thousand and one": the "and" joins the parts
    if not total:
        return None
    tail = _below_hundred(w[used:])
    if tail:
        total, used = total + tail[0], used + tail[1]
    return total, used


def _read_digit_by_digit(words: list[str]) -> bool:
    """Whether ``words`` start with digits read one word each ("zero zero one", "double
    five"), as after a homophone that is a digit: "account for zero zero one" but not
    "waiting for two weeks" nor "for twenty one days"."""
    if words[:1] and words[0] in REPEAT:
        return True
    return len(words) >= 2 and words[0] in UNITS and (words[1] in UNITS or words[1] in REPEAT)


def _number_goes_on(ahead: list[str]) -> bool:
    """Whether the words after a homophone keep it inside a number: more digits or number
    words, a pause, or the end of what was said."""
    if not ahead:
        return True
    word = ahead[0]
    return (word.isdigit() or not word[0].isalnum()
            or any(word in table for table in (UNITS, TEENS, TENS, REPEAT, HOMOPHONES)))


def spoken_digits_to_text(text: str) -> str:
    """Replace runs of number words with digits; digit runs separated by spaces are joined.

    "my pin is four eight two one" -> "my pin is 4821";
    "account 4001 1234" -> "account 40011234".
    """
    tokens = _WORD.findall(_HYPHENATED.sub(r"\1 \2", text))
    out: list[str] = []
    spoken_before = -1  # index in `out` of the last digits that came from number words
    homophone = -1  # index in `out` of the last digit that came from a homophone
    i = 0
    while i < len(tokens):
        words = [t for t in tokens[i:i + 16] if not t.isspace()]
        hit = _value(words) if tokens[i].isalpha() else None
        if hit is None and tokens[i].isalpha() and words[0].lower() in HOMOPHONES:
            hit = (str(HOMOPHONES[words[0].lower()]), 1)
        if hit is not None and words[0].lower() in {"oh", "o", *HOMOPHONES}:
            # "oh" is zero only inside a run of digits: "four oh one", not "oh, hello";
            # "for" is four only there too: "account for zero zero", not "pay for it".
            # "to" after digits is a digit only if the number goes on or ends there:
            # "one one to, pin" but not "from Fibre 100 to Fibre 500".
            before = "".join(out).rstrip()
            ahead = [t.lower() for t in tokens[i + 1:i + 8] if not t.isspace()]
            after_digits = before[-1:].isdigit() and (
                words[0].lower() in {"oh", "o"} or _number_goes_on(ahead))
            if not (after_digits or _read_digit_by_digit(ahead)
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


def _words_for(values: dict[str, int]) -> str:
    """A regex alternative of the words for 1 and up, longest first so none cuts another."""
    return "|".join(sorted((w for w, v in values.items() if v > 0), key=len, reverse=True))


_TENS_WORDS, _TEENS_WORDS, _UNIT_WORDS = _words_for(TENS), _words_for(TEENS), _words_for(UNITS)
_TEN_TO_99 = rf"(?:(?:{_TENS_WORDS})(?:[\s-](?:{_UNIT_WORDS}))?|{_TEENS_WORDS})"
# Whole units, then the cents as a number of 10 to 99 or "oh five": "twelve ninety nine",
# "forty two fifty", "nine oh five"; not inside a bigger number ("one hundred and twenty").
_PRICE = re.compile(
    rf"(?<![\w-])(?<!hundred )(?<!thousand )(?<!and )({_TEN_TO_99}|{_UNIT_WORDS})"
    rf"\s+(?:and\s+)?({_TEN_TO_99}|(?:oh|o)\s+(?:{_UNIT_WORDS}))\b(?![\s-]*(?:hundred|thousand))",
    re.IGNORECASE)


def spoken_prices_to_text(text: str) -> str:
    """Prices said as two numbers, units then cents, written as a decimal: "twelve ninety
    nine" -> "12.99". Only for an answer to "how much?": elsewhere the same words are a
    PIN read in pairs ("forty two fifty" is 4250), which ``spoken_digits_to_text`` keeps."""
    def price(m: re.Match[str]) -> str:
        # "oh five" on its own is not a number to spoken_digits_to_text: drop the "oh"
        units, cents = (int(spoken_digits_to_text(re.sub(r"^oh?\s+", "", g, flags=re.I)))
                        for g in m.groups())
        return f"{units}.{cents:02d}"

    return _PRICE.sub(price, text)


_ORDINAL = re.compile(rf"\b(?:({_TENS_WORDS})[\s-]+)?({'|'.join(ORDINALS)})\b", re.IGNORECASE)


def _ordinal_text(phrase: str) -> str:
    """ "twenty third" -> "23rd"; a compound that names no day ("twenty twelfth") is kept."""
    m = _ORDINAL.fullmatch(phrase)
    if m is None:
        return phrase
    tens, unit = TENS.get((m.group(1) or "").lower(), 0), ORDINALS[m.group(2).lower()]
    if tens and unit >= 10:
        return phrase
    n = tens + unit
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def spoken_ordinals_to_text(text: str, beside: str, after_only: str = "") -> str:
    """Ordinal words next to a word matching ``beside`` (month names) written as numbers:
    "the twenty third of September", "December the first" -> "23rd", "1st"; and after
    a word matching ``after_only`` (weekdays: "Saturday the twelfth", not "the first
    Monday"). Elsewhere "first" and "second" are ordinary words ("wait a second") and
    stay as they are."""
    ordinal = rf"(?:(?:{_TENS_WORDS})[\s-]+)?(?:{'|'.join(ORDINALS)})\b"
    before = re.compile(rf"\b({ordinal})(?=,?\s+(?:of\s+)?(?:the\s+)?(?:{beside})\b)", re.I)
    text = before.sub(lambda m: _ordinal_text(m.group(1)), text)
    for words in (beside, after_only):
        if words:
            after = re.compile(rf"(\b(?:{words})\.?,?\s+(?:the\s+)?)({ordinal})", re.I)
            text = after.sub(lambda m: m.group(1) + _ordinal_text(m.group(2)), text)
    return text
