"""Slot values from what the caller said or keyed in, typed by the domain pack's schema.

Typed values (digits, dates, times, amounts, phone numbers, ticket ids) are
found by deterministic extractors so a PIN is never "guessed" by a language
model; the slot the dialogue is waiting for (``expected``) wins ambiguous
digit runs, and keywords ("pin 4821") bind a value to its slot.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nlu.numbers import HOMOPHONES, TEENS, TENS, UNITS, spoken_digits_to_text

MONTHS = {m.lower(): i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"], 1)}
MONTHS.update({name[:3]: num for name, num in list(MONTHS.items())})
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: str
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    dtmf: bool = False
    sensitive: bool = False
    min_digits: int = 1
    max_digits: int = 20
    # An answer as speech recognition should write it ("My PIN is 5, 8, 6, 0."): Whisper's
    # prompt for a whole answer heard while the slot is awaited (scenario --audio mode).
    # Digits read one by one are its weak spot.
    hint: str = ""


@dataclass
class SlotExtractor:
    specs: dict[str, SlotSpec]
    plans: list[str] = field(default_factory=list)
    today: dt.date | None = None

    def extract(self, text: str, expected: str | None = None) -> dict[str, str]:
        """Every slot value found in ``text``; ``expected`` is the slot the assistant asked for."""
        norm = spoken_digits_to_text(text)
        found: dict[str, str] = {}
        digit_slots = [s for s in self.specs.values() if s.type == "digits"]
        digits_text = _mask_dates(norm)  # "born 9 March 1984" holds no PIN
        runs = [(m.start(), m.group())
                for m in re.finditer(r"(?<![\d.,])\d+(?![\d.,]?\d)", digits_text)]
        spans = _spans(digits_text, runs)
        used: set[int] = set()

        def take(slot: str, fits: Callable[[str], bool], anchored: Callable[[int], bool]) -> None:
            for start, value, members in spans:
                if used & set(members) or slot in found:
                    continue
                if fits(value) and anchored(start):
                    found[slot] = value
                    used.update(members)

        # 1. keyword-anchored digits: "pin 4821", "account number is 4001 1234"
        for spec in digit_slots:
            def near_keyword(pos: int, spec: SlotSpec = spec) -> bool:
                window = norm[max(0, pos - 30):pos].lower()
                return any(re.search(rf"\b{re.escape(k)}\b[^\d]*$", window)
                           for k in spec.keywords)

            take(spec.name, lambda v, s=spec: s.min_digits <= len(v) <= s.max_digits,
                 near_keyword)
        # 2. the expected slot takes digits of its length, groups read in chunks included
        if expected in self.specs and self.specs[expected].type == "digits":
            spec = self.specs[expected]
            take(expected, lambda v: spec.min_digits <= len(v) <= spec.max_digits,
                 lambda pos: True)
        # 3. two numbers run together ("400190122468": an account, then a PIN)
        for pos, run in runs:
            if pos in used:
                continue
            split = self._split(run, [s for s in digit_slots if s.name not in found], expected)
            if split:
                found.update(split)
                used.add(pos)
        # 4. unambiguous lengths: a run that fits exactly one digit slot
        for pos, run in runs:
            if pos in used:
                continue
            fits = [s for s in digit_slots if s.min_digits <= len(run) <= s.max_digits
                    and s.name not in found]
            if len(fits) == 1 and not self._is_other_number(norm, pos, run):
                found[fits[0].name] = run
                used.add(pos)
        # Digits that went to an account number or a PIN are not also a phone number.
        unclaimed = list(norm)
        for pos, run in runs:
            if pos in used:
                unclaimed[pos:pos + len(run)] = " " * len(run)
        rest = "".join(unclaimed)
        for spec in self.specs.values():
            if spec.type == "digits" or spec.name in found:
                continue
            # The whole answer is the expected free-text slot only if it carried no numbers
            # that went to other slots ("It's 40011234, pin 4821" is not an address).
            wanted = expected == spec.name and not (found.keys() - {spec.name})
            value = self._typed(spec, rest if spec.type in {"phone", "ticket_id"} else norm,
                                wanted)
            if value:
                found[spec.name] = value
        return found

    def from_dtmf(self, digits: str, expected: str | None = None) -> dict[str, str]:
        """Keypad input: '#' ends an entry, '*' is ignored; the expected slot takes it."""
        value = re.sub(r"[^0-9]", "", digits.split("#")[0])
        if not value:
            return {}
        if expected in self.specs and self.specs[expected].dtmf:
            return {expected: value}
        fits = [s for s in self.specs.values() if s.dtmf and s.type == "digits"
                and s.min_digits <= len(value) <= s.max_digits]
        return {fits[0].name: value} if len(fits) == 1 else {}

    @staticmethod
    def _split(run: str, open_slots: list[SlotSpec], expected: str | None) -> dict[str, str]:
        """A run too long for any slot, cut where both halves fit two open slots."""
        if any(s.min_digits <= len(run) <= s.max_digits for s in open_slots):
            return {}
        ordered = sorted(open_slots, key=lambda s: s.name != expected)
        for first in ordered:
            for second in open_slots:
                if first is second:
                    continue
                cut = len(run) - second.max_digits
                head, tail = run[:cut], run[cut:]
                if (first.min_digits <= len(head) <= first.max_digits
                        and second.min_digits <= len(tail) <= second.max_digits):
                    return {first.name: head, second.name: tail}
        return {}

    @staticmethod
    def _is_other_number(text: str, pos: int, run: str) -> bool:
        """Money, times and phone numbers are not account numbers or PINs."""
        before, after = text[max(0, pos - 2):pos], text[pos + len(run):pos + len(run) + 9].lower()
        return "$" in before or bool(re.match(r"\s*(dollars?|pounds?|gb|gigabytes?|am|pm|:)",
                                              after))

    def _typed(self, spec: SlotSpec, text: str, expected: bool) -> str | None:
        kind = spec.type
        if kind == "date":
            return self._date(text, spec)
        if kind == "time":
            return _time(text)
        if kind == "amount":
            return _amount(text)
        if kind == "phone":
            m = re.search(r"\+?\d{10,13}", text)
            return m.group() if m else None
        if kind == "ticket_id":
            # "DKD1": speech recognition hears the T's voiced
            m = re.search(r"\b[td]\W*k\W*[td]\W*-?\s*(\d{1,6})\b", text, re.I)
            if m is None and expected:
                m = re.search(r"\b(\d{3,6})\b", text)
            return f"TKT-{int(m.group(1)):06d}" if m else None
        if kind == "plan":
            return self._plan(text)
        if kind == "address":
            return _address(text, spec.keywords, expected)
        return None

    def _plan(self, text: str) -> str | None:
        lowered = text.lower()
        for plan in sorted(self.plans, key=len, reverse=True):
            if plan.lower() in lowered:
                return plan
        words = lowered.split()
        for plan in self.plans:
            n = len(plan.split())
            for i in range(len(words) - n + 1):
                chunk = " ".join(words[i:i + n])
                if difflib.SequenceMatcher(None, chunk, plan.lower()).ratio() > 0.85:
                    return plan
        return None

    def _date(self, text: str, spec: SlotSpec) -> str | None:
        today = self.today or dt.date.today()
        lowered = text.lower()
        if spec.sensitive or spec.name == "date_of_birth":
            parsed = _explicit_date(lowered, today)
            return parsed.isoformat() if parsed else None
        if "today" in lowered:
            return today.isoformat()
        if "tomorrow" in lowered:
            return (today + dt.timedelta(days=1)).isoformat()
        for i, day in enumerate(WEEKDAYS):
            if re.search(rf"\b{day}\b", lowered):
                ahead = (i - today.weekday()) % 7 or 7
                return (today + dt.timedelta(days=ahead)).isoformat()
        parsed = _explicit_date(lowered, today)
        return parsed.isoformat() if parsed else None


def _spans(text: str, runs: list[tuple[int, str]]) -> list[tuple[int, str, tuple[int, ...]]]:
    """Digit runs and their joins across single spaces, longest first at each start.

    "4001 1234" may be one account number read in two groups; "40019012 2468" is an
    account then a PIN: both readings are offered and the slot lengths decide.
    """
    spans = []
    for i, (start, _) in enumerate(runs):
        value, members = "", []
        for j in range(i, len(runs)):
            pos, run = runs[j]
            gap = text[runs[j - 1][0] + len(runs[j - 1][1]):pos]
            if members and gap not in {" ", ", ", "-"}:
                break
            value += run
            members.append(pos)
            spans.append((start, value, tuple(members)))
    spans.sort(key=lambda s: (s[0], -len(s[1])))
    return spans


def _date_patterns() -> list[str]:
    month_names = "|".join(sorted(MONTHS, key=len, reverse=True))
    return [
        r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b",
        rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({month_names})\b\.?,?\s*(\d{{4}})?",
        rf"\b({month_names})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s*(\d{{4}})?",
        r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b",
    ]


def _mask_dates(text: str) -> str:
    for pattern in _date_patterns():
        text = re.sub(pattern, lambda m: " " * len(m.group()), text, flags=re.I)
    return text


def _explicit_date(text: str, today: dt.date) -> dt.date | None:
    iso, day_month, month_day, us = _date_patterns()
    m = re.search(iso, text)
    if m:
        return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = re.search(day_month, text)
    if m:
        day, month, year = int(m.group(1)), MONTHS[m.group(2)], m.group(3)
        return _safe_date(int(year) if year else _next_year(today, month, day), month, day)
    m = re.search(month_day, text)
    if m:
        month, day, year = MONTHS[m.group(1)], int(m.group(2)), m.group(3)
        return _safe_date(int(year) if year else _next_year(today, month, day), month, day)
    m = re.search(us, text)  # US order: month/day/year
    if m:
        return _safe_date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    return None


def _next_year(today: dt.date, month: int, day: int) -> int:
    try:
        return today.year if dt.date(today.year, month, day) >= today else today.year + 1
    except ValueError:
        return today.year


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _time(text: str) -> str | None:
    lowered = text.lower()
    m = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)", lowered)
    if m:
        hour = int(m.group(1)) % 12 + (12 if m.group(3).startswith("p") else 0)
        return f"{hour:02d}:{int(m.group(2) or 0):02d}"
    m = re.search(r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lowered)
    if m:
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    for word in ("morning", "afternoon", "evening"):
        if word in lowered:
            return word
    return None


def _amount(text: str) -> str | None:
    m = re.search(r"\$\s?(\d+(?:[.,]\d{1,2})?)", text)
    if m is None:
        m = re.search(r"\b(\d+(?:[.,]\d{1,2})?)\s*(?:dollars?|bucks|pounds?|euros?)", text, re.I)
    if m is None:
        return None
    value = float(m.group(1).replace(",", "."))
    return f"{value:.2f}"


def _address(text: str, keywords: tuple[str, ...], expected: bool) -> str | None:
    lowered = text.lower()
    for key in sorted(keywords, key=len, reverse=True):
        m = re.search(rf"\b{re.escape(key)}\b\s*(?:is\s+)?(.+)", lowered)
        if m:
            start = m.start(1)
            value = text[start:].strip(" .,!?")
            value = re.split(r"[.!?](?:\s|$)", value)[0]
            if len(value) >= 3:
                return _house_number(value)
    if expected:
        value = re.sub(r"^(it'?s|it is|i live (at|on|in)|that'?s|the address is)\s+", "",
                       text.strip(" .,!?"), flags=re.I)
        if not set(re.findall(r"[a-z0-9']+", value.lower())) - _NOT_AN_ADDRESS:
            return None  # "thank you, goodbye" answers nothing
        if not _looks_like_a_place(value, keywords):
            return None  # "I want to speak to a person": another request, not an address
        return _house_number(value) or None
    return None


# Words ASR writes for a house number said before the street ("fine" is five); "oh"
# and "o" are not house numbers.
_HOUSE_WORDS = {word: number for word, number in
                {**UNITS, **TEENS, **TENS, **HOMOPHONES, "fine": 5, "free": 3}.items()
                if word not in ("o", "oh")}


def _house_number(value: str) -> str:
    """The house number as a caller meant it: ASR writes a pause after it as a comma
    ("5, Rose Court"), may tie it to the street with a hyphen ("94-Meadow Close") and may
    write it as a word or its homophone ("fine, Rose Court"); all are "5 Rose Court"
    when a street follows."""
    m = re.match(r"([A-Za-z]+|\d+)(?:[,.]?\s+|-)(?=([A-Za-z]+))", value)
    if m is None or not _STREET.search(value[m.end():]) or \
            (m.group(0).endswith("-") and m.group(2).lower() in _HOUSE_WORDS):
        return value  # no street after it, or "twenty-one": one number in two words
    word = m.group(1).lower()
    number = word if word.isdigit() else _HOUSE_WORDS.get(word)
    return value if number is None else f"{number} {value[m.end():]}"


_STREET = re.compile(r"\b(road|rd|street|st|lane|ln|avenue|ave|drive|dr|way|close|court|ct|"
                     r"place|pl|crescent|terrace|square|park|hill|row|gardens|grove|mews|"
                     r"boulevard|blvd|parade|walk|flat|apartment|apt|unit|house|cottage|"
                     r"farm|estate|village|town|city|postcode|zip)\b", re.I)


def _looks_like_a_place(value: str, keywords: tuple[str, ...]) -> bool:
    """A house number, a street word, or a proper name (Whisper capitalises place names)."""
    if re.search(r"\d", value) or _STREET.search(value):
        return True
    if any(re.search(rf"\b{re.escape(k)}\b", value, re.I) for k in keywords):
        return True
    names = [w for w in re.findall(r"[A-Za-z][\w'-]*", value)[1:] if w[0].isupper() and w != "I"]
    words = re.findall(r"[A-Za-z][\w'-]*", value)
    return bool(names) or (len(words) <= 3 and bool(words) and words[0][0].isupper()
                           and words[0].lower() not in _NOT_AN_ADDRESS)


# Words that can make up a whole reply without naming any place.
_PLEASANTRIES = (
    "thank thanks you goodbye bye yes yeah no nope ok okay sure please sorry hello hi hey "
    "that's it's all for now right fine great cheers never mind i don't know what pardon "
    "repeat again and so well oh um uh er the a that was")
_NOT_AN_ADDRESS = frozenset(_PLEASANTRIES.split())
