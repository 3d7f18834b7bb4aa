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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from nlu.numbers import (
    HOMOPHONES,
    TEENS,
    TENS,
    UNITS,
    spoken_digits_to_text,
    spoken_ordinals_to_text,
    spoken_prices_to_text,
)

_Said = TypeVar("_Said")  # a value found in the text: a date, a plan name
MONTHS = {m.lower(): i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"], 1)}
MONTHS.update({name[:3]: num for name, num in list(MONTHS.items())})
MONTH_WORDS = "|".join(sorted(MONTHS, key=len, reverse=True))
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
    _mentioned: tuple[str | None, list[tuple[int, int, str]]] = field(
        default=(None, []), init=False, repr=False, compare=False)

    def extract(self, text: str, expected: str | None = None) -> dict[str, str]:
        """Every slot value found in ``text``; ``expected`` is the slot the assistant asked for."""
        awaited = self.specs.get(expected or "")
        norm = self._normalised(text, awaited)
        found: dict[str, str] = {}
        digit_slots = [s for s in self.specs.values() if s.type == "digits"]
        digits_text = self._mask_explained(norm, awaited)  # "born 9 March 1984" holds no PIN
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
            take(spec.name, lambda v, s=spec: s.min_digits <= len(v) <= s.max_digits,
                 lambda pos, s=spec: _after_keyword(norm, pos, s.keywords))
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
            if len(fits) == 1:
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
            value = self._typed(spec, rest if spec.type in _FROM_UNCLAIMED else norm, wanted,
                                awaited=expected == spec.name)
            if value:
                found[spec.name] = value
        return found

    def from_dtmf(self, digits: str, expected: str | None = None) -> dict[str, str]:
        """Keypad input: '#' ends an entry, '*' is ignored; the expected slot takes it."""
        value = re.sub(r"[^0-9]", "", digits.split("#")[0])
        if not value:
            return {}
        spec = self.specs.get(expected or "")
        if spec is not None and spec.dtmf and (
                spec.type != "digits" or spec.min_digits <= len(value) <= spec.max_digits):
            return {spec.name: value}
        # keyed for another slot than the one asked for (the account number when the PIN
        # was asked): the one slot its length fits
        fits = [s for s in self.specs.values() if s.dtmf and s.type == "digits"
                and s.min_digits <= len(value) <= s.max_digits]
        if len(fits) == 1:
            return {fits[0].name: value}
        return {spec.name: value} if spec is not None and spec.dtmf else {}  # checked, refused

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

    def _normalised(self, text: str, awaited: SlotSpec | None) -> str:
        """The text with numbers as digits, and the caller's own corrections applied.

        Ordinals are read only beside a month ("the twenty third of September") and two
        numbers as a price only when a price was asked for ("twelve ninety nine"); the same
        words elsewhere are a PIN read in pairs."""
        text = spoken_ordinals_to_text(text, MONTH_WORDS, "|".join(WEEKDAYS))
        if awaited is not None and awaited.type == "amount":
            text = spoken_prices_to_text(text)
        return self._corrected(spoken_digits_to_text(text))

    def _corrected(self, text: str) -> str:
        """A number the caller takes back in the same breath is dropped: "pin 7351, no
        sorry, 7315" is pin 7315. Only a number of the same length replaces it, so
        "40031122, sorry, 7315" stays an account number and a PIN."""
        text = _YEAR_RESTATED.sub(lambda m: m.group(2) if m.group(1) == m.group(3)
                                  else m.group(0), text)  # "84, sorry, 1984" is 1984
        keywords = sorted({k for s in self.specs.values() if s.type == "digits"
                           for k in s.keywords}, key=len, reverse=True)
        filler = "|".join([*_CORRECTION_FILLER, *map(re.escape, keywords)])
        marker = re.compile(rf"(?<=\d)[\s,.;:!-]*((?:(?:{_CORRECTION_MARKER})\b[\s,.;:!-]*)+)"
                            rf"(?:(?:{filler})\b[\s,.;:!-]*)*(?=\d)", re.I)
        for m in reversed(list(marker.finditer(text))):
            if set(re.findall(r"[a-z']+", m.group(1).lower())) <= {"oh"}:
                continue  # "oh" alone is a zero or a sigh, not a correction
            taken_back = _last_number(text[:m.start()], _number_at(text, m.end()))
            if taken_back is not None:
                text = text[:taken_back] + text[m.end():]
        return text

    def _mask_explained(self, text: str, awaited: SlotSpec | None) -> str:
        """``text`` with every number another kind of value explains blanked out: dates,
        times, amounts, quantities, phone numbers and plan names ("Fibre 1000") hold no
        account number or PIN, however many digits they have; nor does the bare number
        that answers "how much?" ("It's 1250")."""
        lengths = self._digit_lengths()
        spans = [m.span() for pattern in _EXPLAINED for m in re.finditer(pattern, text, re.I)]
        spans += [(start, end) for start, end, _ in _phone_numbers(text, lengths)
                  if not text[start:end].isdigit()]  # one long run may be an account and a PIN
        spans += [(start, end) for start, end, _ in self._plan_mentions(text)]
        if awaited is not None and awaited.type == "amount":
            keywords = [k for s in self.specs.values() if s.type == "digits" for k in s.keywords]
            spans += [m.span() for m in re.finditer(_BARE_AMOUNT, text)
                      if not _after_keyword(text, m.start(), keywords)]  # "pin 4821" stays
        for start, end in spans:
            text = text[:start] + " " * (end - start) + text[end:]
        return text

    def _digit_lengths(self) -> set[int]:
        """Every length an account number or PIN may have: groups that join into these are
        identity numbers, not a phone number."""
        return {n for s in self.specs.values() if s.type == "digits"
                for n in range(s.min_digits, s.max_digits + 1)}

    def _typed(self, spec: SlotSpec, text: str, expected: bool, awaited: bool = False
               ) -> str | None:
        """The value of a non-digit slot. ``expected``: it was asked for and nothing else
        was answered; ``awaited``: it was asked for."""
        kind = spec.type
        if kind == "date":
            return self._date(text, spec)
        if kind == "time":
            return _time(text)
        if kind == "amount":
            return _amount(text, awaited)
        if kind == "phone":
            phones = _phone_numbers(text, self._digit_lengths())
            return phones[0][2] if phones else None
        if kind == "ticket_id":
            # "DKD1": speech recognition hears the T's voiced
            # read in groups ("T K T, zero zero zero, zero five five"): one number
            m = re.search(r"\b[td]\W*k\W*[td]\W*-?\s*(\d(?:[\s,.-]{0,2}\d){0,5})\b", text, re.I)
            if m is None:  # "ticket one", "my reference is 1", "case number 12"
                m = re.search(r"\b(?:ticket|reference|case)(?: number| no\.?)?(?: is)?\s+"
                              r"(\d{1,6})\b(?![.,]\d)", text, re.I)
            if m is None and expected:
                m = re.search(r"\b(\d{3,6})\b", text)
            return f"TKT-{int(_DIGITS_ONLY.sub('', m.group(1))):06d}" if m else None
        if kind == "plan":
            return self._plan(text)
        if kind == "address":
            return _address(text, spec.keywords, expected)
        return None

    def _plan_mentions(self, text: str) -> list[tuple[int, int, str]]:
        """Every plan named in ``text``: (start, end, plan), in the order said.

        Names are matched word for word first, then loosely ("fiber 500", "unlimited 5 g");
        the numbers in a name must match exactly, so "fibre 1" names no plan and "fibre
        1000" is never "Fibre 100". The last text's answer is kept: masking the numbers
        plan names explain and reading the plan slot ask about the same turn."""
        cached = self._mentioned  # one read: calls share an extractor across threads
        if cached[0] != text:
            cached = self._mentioned = (text, self._find_plans(text))
        return cached[1]

    def _find_plans(self, text: str) -> list[tuple[int, int, str]]:
        lowered = text.lower()
        mentions: list[tuple[int, int, str]] = []

        def free(start: int, end: int) -> bool:
            return all(end <= s or start >= e for s, e, _ in mentions)

        for plan in sorted(self.plans, key=len, reverse=True):
            for m in re.finditer(rf"(?<![\w.]){re.escape(plan.lower())}(?![\w.]?\w)", lowered):
                if free(*m.span()):
                    mentions.append((m.start(), m.end(), plan))
        words = list(re.finditer(r"[a-z0-9]+", lowered))
        for plan in self.plans:
            name = " ".join(re.findall(r"[a-z0-9]+", plan.lower()))
            n = len(name.split())
            # A number misheard ("Unlimited 51" for 5G) is forgiven only where the name's
            # words alone say which plan it is; "fibre 1" could be any of three.
            exact_numbers = self._words_shared(plan)
            for i in range(len(words) - n + 1):
                start, end = words[i].start(), words[i + n - 1].end()
                chunk = " ".join(w.group() for w in words[i:i + n])
                numbers_fit = (re.findall(r"\d+", chunk) == re.findall(r"\d+", name)
                               or not exact_numbers)
                close = difflib.SequenceMatcher(None, chunk, name)
                if (free(start, end) and numbers_fit and close.real_quick_ratio() > 0.85
                        and close.quick_ratio() > 0.85 and close.ratio() > 0.85):
                    mentions.append((start, end, plan))
        # broadband named by its speed: "the 500 meg fibre", "1 gig broadband"
        for m in _SPEED.finditer(lowered):
            megabits = int(m.group(1)) * (1000 if m.group(2).startswith("g") else 1)
            plan = next((p for p in self.plans if re.fullmatch(rf"(?:fibre|fiber)\s*{megabits}",
                                                                p.lower())), None)
            if plan is not None and free(*m.span()):
                mentions.append((m.start(), m.end(), plan))
        return sorted(mentions)

    def _words_shared(self, plan: str) -> bool:
        """Whether another plan's name has the same words besides its numbers (Fibre 100,
        500 and 1000), or the name has no words but numbers."""
        def words(name: str) -> tuple[str, ...]:
            return tuple(w for w in re.findall(r"[a-z0-9]+", name.lower())
                         if not any(c.isdigit() for c in w))

        own = words(plan)
        return not own or any(words(other) == own for other in self.plans if other != plan)

    def _plan(self, text: str) -> str | None:
        """The plan the caller wants. Naming two ("from Unlimited 5G to Basic Talk"), the
        one after "to" or "onto" is the target and the one after "from" or "on" is the
        plan they have now."""
        mentions = self._plan_mentions(text)
        if not mentions:
            return None
        lowered = text.lower()
        kept = _kept(lowered, mentions)  # "Family Share, sorry no, I meant Unlimited 5G"
        if len(kept) < len(mentions):
            return kept[-1][2]

        def cue(pattern: re.Pattern[str]) -> list[str]:
            return [plan for start, _, plan in mentions
                    if pattern.search(lowered[max(0, start - 30):start])]

        targets = cue(_PLAN_TARGET)
        sources = set(cue(_PLAN_SOURCE))
        others = [plan for _, _, plan in mentions if plan not in sources]
        return (targets or others or [mentions[0][2]])[0]

    def _date(self, text: str, spec: SlotSpec) -> str | None:
        """A date of birth is a past date; a visit is today or later and never a date the
        caller gave as their birth date ("date of birth 18th of April 1979"). A date the
        caller takes back ("the 2nd of June, no sorry, the 2nd of July") does not count."""
        today = self.today or dt.date.today()
        lowered = text.lower()
        birth = _is_birth_date(spec)
        dates = _explicit_dates(lowered, today, short_years=birth)
        birth_words = [k for s in self.specs.values() if _is_birth_date(s) for k in s.keywords]

        def said_as_birth(pos: int) -> bool:
            return _after_keyword(lowered, pos, birth_words)

        if birth:
            born_by = today - dt.timedelta(days=round(365.25 * HOLDER_AGE_YEARS))
            past = _kept(lowered, [(pos, end, day) for pos, end, day in dates if day <= born_by])
            ranked = sorted((not said_as_birth(pos), pos, day) for pos, _, day in past)
            return ranked[0][2].isoformat() if ranked else None
        said = [(pos, end, day) for pos, end, day in dates if not said_as_birth(pos)]
        said = _kept(lowered, sorted(said + _days_named(lowered, today, dates)))
        # a day gone by this past year is reported too (the flow tells the caller it has
        # passed); an older one is no visit ("the 31st of December 1965")
        said = [d for d in said if d[2] >= today - dt.timedelta(days=366)]
        return said[0][2].isoformat() if said else None


# Slot types read from the digits no account number or PIN took.
_FROM_UNCLAIMED = {"phone", "ticket_id", "amount"}
_CORRECTION_MARKER = (r"oh|no|sorry|wait|hang on|hold on|i mean|i meant|actually|correction|"
                      r"or rather|rather|scratch that|my mistake|my bad")
_CORRECTION_FILLER = ["it'?s", "it is", "that'?s", "that is", "make (?:that|it)", "it should be",
                      "should be", "the", "my", "is", "was"]
# A broadband speed: "500 meg", "100 mbps", "1 gig fibre" (gigabytes alone are data).
_SPEED = re.compile(r"\b(\d{1,4})\s*(meg(?:s|abits?)?|mbps|mb/s|mbit|"
                    r"gig(?:s|abit)?(?=\s+(?:fibre|fiber|broadband|internet)))\b")
_YEAR_RESTATED = re.compile(
    rf"\b(\d{{2}})[\s,.;:!-]*(?:(?:{_CORRECTION_MARKER})\b[\s,.;:!-]*)+"
    rf"(?:(?:i mean|it'?s|that'?s)\b[\s,.;:!-]*)*((?:19|20)(\d{{2}}))\b", re.I)
_PLAN_TARGET = re.compile(r"\b(?:to|onto|into|for|with)\s+(?:the\s+|a\s+|an\s+|my\s+)?$")
_PLAN_SOURCE = re.compile(r"\b(?:from|off|leave|leaving|instead of|than|on|cancel)\s+"
                          r"(?:the\s+|my\s+)?$")


def _after_keyword(text: str, pos: int, keywords: Iterable[str]) -> bool:
    """Whether the number at ``pos`` follows one of ``keywords`` with no number between."""
    window = text[max(0, pos - 30):pos].lower()
    return any(re.search(rf"\b{re.escape(k)}\b[^\d]*$", window) for k in keywords)


def _is_birth_date(spec: SlotSpec) -> bool:
    """A date slot that identifies the caller: it holds a past date, never a visit."""
    return spec.type == "date" and (spec.sensitive or spec.name == "date_of_birth")


_NUMBER_CHAIN = r"\d+(?:[.,]\d+)?(?:[ -]\d+)*"


def _number_at(text: str, pos: int) -> str:
    """The number said at ``pos``, groups read apart included ("4003 1122")."""
    m = re.compile(_NUMBER_CHAIN).match(text, pos)
    return m.group() if m else ""


def _last_number(text: str, replacement: str) -> int | None:
    """Where the number at the end of ``text`` that ``replacement`` corrects starts: its
    last groups with as many digits as the replacement; None if none has."""
    m = re.search(rf"{_NUMBER_CHAIN}$", text)
    if m is None:
        return None
    wanted = len(re.sub(r"\D", "", replacement.split()[0] if replacement else ""))
    whole = len(re.sub(r"\D", "", replacement))
    groups = list(re.finditer(r"\d+(?:[.,]\d+)?", m.group()))
    for count in (whole, wanted):
        for first in groups:
            if len(re.sub(r"\D", "", m.group()[first.start():])) == count:
                return m.start() + first.start()
    return None


def _phone_numbers(text: str, slot_lengths: set[int]) -> list[tuple[int, int, str]]:
    """Phone numbers in ``text``: (start, end, number). One with a "+", one written in a
    single run of 10 to 13 digits, or groups that make 10 to 13 digits and cannot be read
    as account numbers and PINs ("07700 900111", "555-234-0011"; not "40019012 2468")."""
    found = []
    for m in re.finditer(r"(?<![\d.,])(\+\s?)?\d+(?:[ -]\d+)*(?![\d.,]?\d)", text):
        groups = re.findall(r"\d+", m.group())
        digits = "".join(groups)
        if not 10 <= len(digits) <= 13:
            continue
        if m.group(1) or len(groups) == 1 or not _read_as_slots(groups, slot_lengths):
            found.append((m.start(), m.end(), ("+" if m.group(1) else "") + digits))
    return found


def _read_as_slots(groups: list[str], lengths: set[int]) -> bool:
    """Whether consecutive digit groups join into numbers each of a length in ``lengths``."""
    if not groups:
        return True
    return any(len("".join(groups[:k])) in lengths and _read_as_slots(groups[k:], lengths)
               for k in range(1, len(groups) + 1))


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


def _date_patterns(short_years: bool = False) -> list[str]:
    """Dates as Whisper writes them: ISO, "9th of March 1984", "December the 1st, 1995",
    "12/01/1995" (US order; day first where the first number cannot be a month). A year
    is 19xx or 20xx, so an account number after a date stays whole; ``short_years``: or
    two digits ("9th March 84", a date of birth)."""
    day = r"(\d{1,2})(?:st|nd|rd|th)?(?!\d)"
    year = (r"(?:,?\s*((?:19|20)\d{2}|'?\d{2})\b)?" if short_years
            else r"(?:,?\s*((?:19|20)\d{2})\b)?")
    return [
        r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b",
        rf"\b{day}\s+(?:of\s+|on\s+)?({MONTH_WORDS})\b\.?{year}",  # "on": "of" misheard
        rf"\b({MONTH_WORDS})\.?\s+(?:the\s+)?{day}{year}",
        r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b",
    ]


def _explicit_dates(text: str, today: dt.date, short_years: bool = False
                    ) -> list[tuple[int, int, dt.date]]:
    """Every calendar date in ``text`` with where it starts and ends, in the order said;
    a date without a year is the next one to come; a two-digit year (``short_years``)
    the latest one not after this year."""
    iso, day_month, month_day, us = _date_patterns(short_years)
    found: dict[int, tuple[int, dt.date | None]] = {}
    for m in re.finditer(iso, text):
        found[m.start()] = (m.end(), _safe_date(int(m.group(1)), int(m.group(2)),
                                                int(m.group(3))))
    for pattern, order in ((day_month, (1, 2, 3)), (month_day, (2, 1, 3))):
        for m in re.finditer(pattern, text, re.I):
            day, month, year = (m.group(i) for i in order)
            month_number = MONTHS[month.lower()]
            found.setdefault(m.start(), (m.end(), _safe_date(
                _full_year(year, today) if year else _next_year(today, month_number, int(day)),
                month_number, int(day))))
    for m in re.finditer(us, text):  # US order: month/day/year; 23/11/1979 is day first
        first, second, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        found.setdefault(m.start(), (m.end(), _safe_date(year, first, second)
                                     or _safe_date(year, second, first)))
    return sorted((pos, end, day) for pos, (end, day) in found.items() if day is not None)


def _full_year(year: str, today: dt.date) -> int:
    """A year as said: "1984", or "84" for the latest year ending so, not after this one."""
    digits = year.lstrip("'")
    if len(digits) != 2:
        return int(digits)
    century = today.year - today.year % 100
    return century + int(digits) if century + int(digits) <= today.year \
        else century - 100 + int(digits)


def _days_named(text: str, today: dt.date, dates: list[tuple[int, int, dt.date]]
                ) -> list[tuple[int, int, dt.date]]:
    """Days said without a month: "today", "tomorrow", "the day after tomorrow", a weekday
    (the next one; "Saturday the 12th": the next Saturday that is a 12th), "the 14th"
    (the next 14th). Words inside a calendar date ("Saturday the 12th of December")
    are that date's."""
    inside = [(start, end) for start, end, _ in dates]

    def free(start: int, end: int) -> bool:
        return not any(a <= end and start <= b + 1 for a, b in inside)

    found = []
    for m in re.finditer(r"\b(?:the\s+)?day after tomorrow\b|\btoday\b|\btomorrow\b", text):
        ahead = 2 if "after" in m.group() else 0 if m.group() == "today" else 1
        found.append((m.start(), m.end(), today + dt.timedelta(days=ahead)))
    taken = [(a, b) for a, b, _ in found]
    for m in re.finditer(rf"\b({'|'.join(WEEKDAYS)})\b(?:,?\s+(?:the\s+)?(\d{{1,2}})"
                         rf"(?:st|nd|rd|th)?\b(?![:.]\d|\s*(?:a\.?m|p\.?m|o'?clock)))?", text):
        if not free(m.start(), m.end()) or any(a <= m.start() < b for a, b in taken):
            continue
        weekday = WEEKDAYS.index(m.group(1))
        day = (_weekday_on(today, weekday, int(m.group(2))) if m.group(2)
               else today + dt.timedelta(days=(weekday - today.weekday()) % 7 or 7))
        found.append((m.start(), m.end(), day))
        taken.append(m.span())
    for m in re.finditer(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b", text):
        if free(m.start(), m.end()) and not any(a <= m.start() < b for a, b in taken):
            coming = _coming_days(today, int(m.group(1)))
            if coming:
                found.append((m.start(), m.end(), coming[0]))
    return found


def _coming_days(today: dt.date, day: int, months: int = 3) -> list[dt.date]:
    """The next dates that fall on this day of the month, today included."""
    out = []
    for k in range(months + 1):
        year, month = today.year + (today.month - 1 + k) // 12, (today.month - 1 + k) % 12 + 1
        date = _safe_date(year, month, day)
        if date is not None and date >= today:
            out.append(date)
    return out[:months]


def _weekday_on(today: dt.date, weekday: int, day: int) -> dt.date:
    """"Saturday the 12th": the next 12th that is a Saturday, looking a few months ahead;
    the next 12th when none is (the date is the more precise of the two)."""
    coming = _coming_days(today, day)
    matching = [d for d in coming if d.weekday() == weekday]
    if matching:
        return matching[0]
    return coming[0] if coming else today + dt.timedelta(days=(weekday - today.weekday()) % 7
                                                          or 7)


def _kept(text: str, dates: list[tuple[int, int, _Said]]) -> list[tuple[int, int, _Said]]:
    """What the caller did not take back, of values said at (start, end) in ``text``
    (dates, plans): one followed by a correction ("no, sorry, I mean") and another value
    is dropped."""
    kept = []
    for k, (start, end, day) in enumerate(dates):
        following = dates[k + 1][0] if k + 1 < len(dates) else None
        if following is not None and re.search(rf"\b(?:{_CORRECTION_MARKER})\b",
                                                text[end:following]) and \
                not re.fullmatch(r"[\s,.;:!-]*(?:oh)?[\s,.;:!-]*", text[end:following]):
            continue
        kept.append((start, end, day))
    return kept


def _next_year(today: dt.date, month: int, day: int) -> int:
    """The year of a date said without one: the next time it comes, unless it went by in
    the last ``RECENT_DAYS`` ("the 28th of November" on 1 December is the day just gone,
    not next year's, so the caller hears it has passed)."""
    for year in (today.year - 1, today.year, today.year + 1):
        date = _safe_date(year, month, day)
        if date is not None and today - dt.timedelta(days=RECENT_DAYS) <= date:
            return year
    return today.year


RECENT_DAYS = 31
# A date of birth is at least this many years ago: an account holder is no child, and a
# date just gone ("the 30th of November 2026", for a visit) is no birthday.
HOLDER_AGE_YEARS = 16


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


_DIGITS_ONLY = re.compile(r"\D")  # what a number read in groups leaves out

# A clock time said in words, in a day of working hours: "half two", "half past 2",
# "quarter to 3", "4 o'clock", "around 10" (not "around 10 dollars", nor "at 9 Abbey Road").
_CLOCK_WORDS = re.compile(
    r"\b(half past|half|quarter past|quarter to)\s+(\d{1,2})\b(?![:.]?\d)"
    r"|\b(\d{1,2})\s*o'?\s?clock\b"
    r"|\b(?:around|about)\s+(\d{1,2})(?:ish)?\b(?![:.,]?\d|\s*(?:%|dollars?|pounds?|"
    r"bucks|gb|gigs?|days?|weeks?|months?|years?|minutes?|hours?|mbps|percent))", re.I)


def _time(text: str) -> str | None:
    lowered = text.lower()
    m = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)", lowered)
    if m:
        hour = int(m.group(1)) % 12 + (12 if m.group(3).startswith("p") else 0)
        return f"{hour:02d}:{int(m.group(2) or 0):02d}"
    m = re.search(r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lowered)
    if m:
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    m = _CLOCK_WORDS.search(lowered)
    if m:  # "half two", "quarter to 3", "4 o'clock": working hours, so 2 is 14:00
        hour = int(next(g for g in m.groups()[1:] if g))
        minutes = {"half": 30, "half past": 30, "quarter past": 15,
                   "quarter to": -15}.get(m.group(1) or "", 0)
        if 1 <= hour <= 12:
            hour = hour + 12 if hour < 8 else hour
            total = hour * 60 + minutes
            return f"{total // 60:02d}:{total % 60:02d}"
    said = [(m.start(), m.end(), m.group()) for m in _DAY_PART.finditer(lowered)
            if not _NOT_THIS.search(lowered[:m.start()])]
    kept = _kept(lowered, said)  # "morning, no sorry, afternoon" is the afternoon
    return kept[-1][2] if kept else None


_DAY_PART = re.compile(r"\b(?:morning|afternoon|evening)\b")
# A value said only to be ruled out: "the afternoon, not the morning".
_NOT_THIS = re.compile(r"\b(?:not|instead of|rather than|but not)\s+(?:the\s+|in the\s+)?$")


_CURRENCY = r"(?:dollars?|bucks|pounds?|quid|euros?)"
_CENTS = r"(?:cents?|pence|p)\b"
# The cents after the units: two digits, or any with "cents" ("22 pounds 50", "12 dollars and
# 5 cents"), not a count of something else ("20 dollars, 2 days ago").
_AND_CENTS = rf"(?:,?\s+(?:and\s+)?(\d{{2}}(?!\d)(?:\s*{_CENTS})?|\d{{1,2}}\s*{_CENTS}))?"
_AMOUNTS = [
    rf"\$\s?(\d+)(?:[.,](\d{{1,2}}))?(?!\d){_AND_CENTS}",
    rf"(?<![\d.,])(\d+)(?:[.,](\d{{1,2}}))?\s*{_CURRENCY}\b{_AND_CENTS}",
]
# A number alone, as the answer to "how much?": not as long as an account number.
_BARE_AMOUNT = r"(?<![\d.,])(\d{1,6})(?:[.,](\d{2}))?(?![\d.,]?\d)"
_ONLY_CENTS = rf"(?<![\d.,])(\d{{1,2}})\s*{_CENTS}"
# Numbers that are no account number nor PIN: amounts, times, data and speeds.
_EXPLAINED = [
    *_date_patterns(),
    rf"\b({MONTH_WORDS})\.?,?\s+(?:of\s+)?(?:19|20)\d{{2}}\b",  # "December 1995"
    *_AMOUNTS,
    _ONLY_CENTS,
    r"\b\d{1,2}(?::\d{2})?\s*(?:a\.?m\b\.?|p\.?m\b\.?|o'?clock)",
    r"\b\d{1,2}:\d{2}\b",
    r"(?<![\d.,])\d+(?:[.,]\d+)?\s*(?:gb|gigs?|gigabytes?|mb|megabytes?|mbps|percent|%)",
]


def _amount(text: str, awaited: bool = False) -> str | None:
    """Money: "$22.50", "22 pounds 50", "twelve dollars ninety nine" (12.99), "99 cents";
    a bare number ("It's 22.50") only as the answer to "how much?". An amount taken back
    ("30 dollars, oh no sorry, 13 dollars") gives way to the next."""
    said = sorted(((m.start(), m.end(), m) for pattern in _AMOUNTS
                   for m in re.finditer(pattern, text, re.I)), key=lambda s: s[:2])
    said = [s for k, s in enumerate(said) if k == 0 or s[0] >= said[k - 1][1]]
    kept = _kept(text.lower(), said)
    if len(kept) < len(said):
        return _money(kept[-1][2])
    for pattern in _AMOUNTS:
        m = re.search(pattern, text, re.I)
        if m:
            return _money(m)
    m = re.search(_ONLY_CENTS, text, re.I)
    if m:
        return f"{int(m.group(1)) / 100:.2f}"
    if awaited:
        m = re.search(_BARE_AMOUNT, text)
        if m:
            return f"{int(m.group(1)) + int(m.group(2) or 0) / 100:.2f}"
    return None


def _money(m: re.Match[str]) -> str:
    units, decimals, cents = m.groups()  # "22.5" is 50 cents; "5 cents" is 5
    hundredths = int(decimals.ljust(2, "0")) if decimals else int(
        re.sub(r"\D", "", cents or "") or 0)
    return f"{int(units) + hundredths / 100:.2f}"


def _address(text: str, keywords: tuple[str, ...], expected: bool) -> str | None:
    """An address: the words after a keyword ("my new address is ..."), a house number
    and street said anywhere ("it's down at 19 Elm Road, Millbrook"), or, when the
    address was asked for, the answer itself. Whatever it is, it must look like a place:
    "I need to change my address with you" names none."""
    lowered = text.lower()
    for key in sorted(keywords, key=len, reverse=True):
        m = re.search(rf"\b{re.escape(key)}\b\s*(?:is\s+|to\s+|will be\s+|now\s+|:\s*)*(.+)",
                      lowered)
        if m:
            start = m.start(1)
            value = text[start:].strip(" .,!?")
            value = _address_kept(re.split(r"[.!?](?:\s|$)", value)[0], keywords)
            if len(value) >= 3 and _names_a_place(value, keywords):
                long = len(value.split()) > ADDRESS_WORDS
                found = _STREET_ADDRESS.search(value) if long else None
                return found.group().strip(" ,.") if found else _house_number(value)
    street = _STREET_ADDRESS.search(text)
    if street and not expected:
        return street.group().strip(" ,.")
    if expected:
        # one sentence, no more: the one with a house number or a street ("Ha, fair enough.
        # It's 9 Abbey Road, Oxford."), else the first
        sentences = [_ADDRESS_LEAD.sub("", part.strip(" ,")) for part in
                     re.split(r"[.!?](?:\s|$)", text.strip(" .,!?")) if part.strip(" ,")]
        value = next((part for part in sentences if re.search(r"\d", part) or _STREET.search(part)),
                     sentences[0] if sentences else "").strip(" ,")
        value = _address_kept(value, keywords)
        if not _names_a_place(value, keywords):
            return None  # "I want to speak to a person": another request, not an address
        if len(value.split()) > ADDRESS_WORDS and street:
            return street.group().strip(" ,.")  # "19 Canal Street, Kingsbridge, and also..."
        return _house_number(value) or None
    return None


# An answer longer than this is more than an address; its house number and street are kept.
ADDRESS_WORDS = 12
# Words before the address in an answer to "what is the address?": "it's", "I live at",
# "we're at", "we're staying at", "the cottage is at".
_ADDRESS_LEAD = re.compile(r"^(?:(?:it'?s|it is|that'?s|the address is|(?:i|we|they) (?:live|"
                           r"stay|am|are)|i'?m|we'?re|they'?re|(?:it|the \w+) is)"
                           r"(?:\s+(?:staying|living|based|located))?(?:\s+(?:at|on|in))?"
                           r"|(?:at|on))\s+", re.I)


def _address_kept(value: str, keywords: tuple[str, ...]) -> str:
    """The address the caller did not take back: "4 Castle Street, oh sorry no, 14 Castle
    Street" is 14 Castle Street (the last part after a correction that names a place)."""
    parts = re.split(rf"[\s,;:!-]+(?:(?:{_CORRECTION_MARKER})\b[\s,.;:!-]*)+(?:i mean|it'?s)?"
                     rf"[\s,]*", value, flags=re.I)
    named = [p.strip(" ,") for p in parts if p.strip(" ,") and _names_a_place(p, keywords)]
    return named[-1] if len(parts) > 1 and named else value


def _names_a_place(value: str, keywords: tuple[str, ...]) -> bool:
    """Words that can be an address: not only pleasantries ("please", "thank you"), no
    ticket reference, and a place by ``_looks_like_a_place``."""
    if not set(re.findall(r"[a-z0-9']+", value.lower())) - _NOT_AN_ADDRESS:
        return False
    if re.search(r"\b[td]\W*k\W*[td]\W*-?\s*\d", value, re.I):
        return False  # "the reference is T K T 000001" is a ticket
    if re.search(r"\b(?:account|pin|passcode|password|date of birth|born)\b", value, re.I):
        return False  # "address? Account 40027788 PIN 7302": identity, not a place
    return _looks_like_a_place(value, keywords)


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


def names_a_street(value: str) -> bool:
    """A street word ("road", "close", "flat", "cottage") among the words."""
    return _STREET.search(value) is not None


# A house number, up to three words and a street word, and a town after a comma or "in":
# an address however it comes up ("the line's dead at 19 Elm Road, Millbrook").
_STREET_ADDRESS = re.compile(
    r"\b\d+[a-z]?,?\s+(?:(?!(?:and|the|a|an|to|of|for|with|was|is|my|on|in|at|it|that|this|"
    r"dollars?|pounds?|gb|gigs?|minutes?|hours?|days?|weeks?|months?|years?)\b)[a-z][\w'-]*\s+)"
    r"{0,3}?(?:road|rd|street|st|lane|avenue|ave|drive|"
    r"way|close|court|place|crescent|terrace|square|grove|mews|boulevard|parade|gardens)\b"
    r"(?:(?:,\s*|\s+in\s+)(?!(?:and|but|so|it|its|it's|i|we|since|which|the)\b)"
    r"[a-z][\w'-]*(?:\s+(?-i:[A-Z][\w'-]*))?)?", re.I)


def _looks_like_a_place(value: str, keywords: tuple[str, ...]) -> bool:
    """A house number before a name, a street word, or a proper name (Whisper capitalises
    place names). A number alone names no place ("it was 35 dollars")."""
    if re.search(r"\b\d+[a-z]?\b[,.]?\s+[a-z]", value, re.I) or _STREET.search(value):
        return True
    if re.fullmatch(r"[\s\d,.-]*\d[\s\d,.-]*", value):
        return False
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
