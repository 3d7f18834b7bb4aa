"""Numbers as transcripts hold them, located by character so they can be cut out.

``nlu.numbers`` rewrites spoken numbers into digits for slot filling, which
loses where each digit came from. Redaction needs the opposite: for every
word of the original text, the digits it stands for and its exact span, so
"four five three nine", "4539-1488" and Whisper's "4,539,148" all map back to
the characters (and, through word times, the audio) that must go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlu.numbers import HOMOPHONES, REPEAT, TEENS, TENS, UNITS

_EDGE = "\"'()[]{}<>,.;:!?"
# "4539", "+44", "0770-0900123", Whisper's thousands groups "4,111" and ",111"; not "42.50"
# (an amount) nor "09/03/1984" (a date).
_WRITTEN = re.compile(r"\+?[-,]?\d[\d\-,]*")
_DOTTED = re.compile(r"\d(?:\.\d){2,}")  # "4.1.1.1": digits read one by one, not "4.1" or "42.50"


@dataclass(frozen=True)
class Token:
    start: int  # character offsets in the text, end exclusive
    end: int
    text: str
    digits: str  # the digits this word stands for; "" if it is not a number word
    number: bool  # a digit or number word (possibly standing for "" as in "double")

    @property
    def core(self) -> str:
        """The word itself: lower case, without the punctuation around it."""
        return self.text.strip(_EDGE).lower()


def tokenize(text: str) -> list[Token]:
    """Whitespace-separated words with the digits each one says."""
    raw = list(_words(text))
    kinds: list[str] = []
    for _, _, word in raw:
        core = word.strip(_EDGE).lower()
        if _WRITTEN.fullmatch(word.strip("\"'()[]{}<>;:!?").rstrip(".,")):
            kinds.append("digits")
        elif core in UNITS and core not in {"o", "oh"} or core in TEENS or core in TENS:
            kinds.append("word")
        elif core in REPEAT:
            kinds.append("repeat")
        elif core in {"o", "oh"} or core in HOMOPHONES:
            kinds.append("maybe")  # a digit only next to other digits: "four oh one"
        else:
            kinds.append("other")
    numeric = {"digits", "word", "repeat"}
    for i, kind in enumerate(kinds):
        if kind == "maybe":
            near = {kinds[j] for j in (i - 1, i + 1) if 0 <= j < len(kinds)}
            kinds[i] = "word" if near & numeric or "maybe" in near and _run_nearby(kinds, i) \
                else "other"
    tokens: list[Token] = []
    i = 0
    while i < len(raw):
        start, end, word = raw[i]
        core = word.strip(_EDGE).lower()
        kind = kinds[i]
        if kind == "digits":
            tokens.append(Token(start, end, word, re.sub(r"\D", "", word), True))
        elif kind == "repeat" and i + 1 < len(raw) and kinds[i + 1] == "word" \
                and raw[i + 1][2].strip(_EDGE).lower() in UNITS:
            tokens.append(Token(start, end, word, "", True))
            nxt = raw[i + 1]
            unit = str(_unit(nxt[2].strip(_EDGE).lower()))
            tokens.append(Token(nxt[0], nxt[1], nxt[2], unit * REPEAT[core], True))
            i += 2
            continue
        elif kind == "word" and core in TENS and i + 1 < len(raw) and kinds[i + 1] == "word" \
                and raw[i + 1][2].strip(_EDGE).lower() in UNITS \
                and _unit(raw[i + 1][2].strip(_EDGE).lower()) > 0:
            nxt = raw[i + 1]
            value = TENS[core] + _unit(nxt[2].strip(_EDGE).lower())
            tokens.append(Token(start, end, word, str(value)[0], True))
            tokens.append(Token(nxt[0], nxt[1], nxt[2], str(value)[1], True))
            i += 2
            continue
        elif kind == "word":
            value = TENS.get(core, TEENS.get(core))
            tokens.append(Token(start, end, word, str(value if value is not None
                                                       else _unit(core)), True))
        else:
            tokens.append(Token(start, end, word, "", False))
        i += 1
    return tokens


def _words(text: str) -> list[tuple[int, int, str]]:
    """Whitespace-separated words; a dotted chain of single digits is one word per digit.

    Whisper writes a number read digit by digit as "4.1.1.1", most of all when it
    loops ("4.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.I."): each digit must count, and be
    cut out, on its own. An amount ("42.50") or a version ("4.1") is not a chain.
    """
    words = []
    for match in re.finditer(r"\S+", text):
        word, start = match.group(), match.start()
        chain = _DOTTED.match(word, len(word) - len(word.lstrip(_EDGE)))
        if chain is None:
            words += _hyphen_parts(word, start)
            continue
        words += [(start + k, start + k + 1, word[k]) for k in range(chain.start(), chain.end(), 2)]
        rest = word[chain.end():].lstrip(".")
        if rest:
            words.append((match.end() - len(rest), match.end(), rest))
    return words


def _hyphen_parts(word: str, start: int) -> list[tuple[int, int, str]]:
    """A hyphenated chain of numbers with number words in it ("41-101-One-one-one",
    "twenty-one") as one word per part; anything else (and "0770-0900123") whole."""
    parts = [(m.start(), m.group()) for m in re.finditer(r"[^-]+", word)]
    cores = [p.strip(_EDGE).lower() for _, p in parts]
    if len(parts) < 2 or not all(c.isdigit() or c in UNITS or c in TEENS or c in TENS
                                 for c in cores) or all(c.isdigit() for c in cores):
        return [(start, start + len(word), word)]
    return [(start + k, start + k + len(part), part) for k, part in parts]


def _unit(word: str) -> int:
    return UNITS.get(word, HOMOPHONES.get(word, 0))


def _run_nearby(kinds: list[str], i: int) -> bool:
    """"oh oh one": a chain of maybe-digits counts if it touches a real number word."""
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(kinds) and kinds[j] == "maybe":
            j += step
        if 0 <= j < len(kinds) and kinds[j] in {"digits", "word", "repeat"}:
            return True
    return False


# A single word ASR puts inside a number read aloud ("zero seven seven zero zero I zero zero
# one": "I" was "nine"; "uh", a dash) does not end the number.
BRIDGES = {"i", "a", "uh", "um", "er", "erm", "ah", "-", "dash", "hyphen"}


def number_runs(tokens: list[Token]) -> list[list[int]]:
    """Indices of maximal runs of number words, bridged over one stray word (``BRIDGES``)."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, token in enumerate(tokens):
        if token.number:
            current.append(i)
        elif (current and i + 1 < len(tokens) and tokens[i + 1].number
              and token.core in BRIDGES | {""}):
            current.append(i)  # the stray word is redacted with the number around it
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def luhn_valid(digits: str) -> bool:
    """The payment-card check digit (ISO/IEC 7812): catches any one wrong digit."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
