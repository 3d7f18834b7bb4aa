"""Dates as people say them, and whether a day can be booked.

Slots keep dates as ISO text, which tickets and CRMs want; a caller hears
"Monday 7 December", never "2026-12-07". A booking asks for a day that has not
passed and that the operator works (engineers: Monday to Saturday, per the
knowledge base), and says why when it cannot book the day asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def spoken_date(day: dt.date, today: dt.date | None = None) -> str:
    """ "Monday 7 December": the weekday helps a caller check the day they agreed to; the
    year is said only when it is not this one ("Wednesday 3 November 2027")."""
    year = "" if today is None or day.year == today.year else f" {day.year}"
    return f"{day:%A} {day.day} {day:%B}{year}"


def spoken_days(days: Sequence[str]) -> str:
    """ "Monday to Saturday" for a run of days, "Monday, Wednesday and Friday" otherwise."""
    order = sorted({WEEKDAYS.index(d.lower()) for d in days})
    names = [WEEKDAYS[i].capitalize() for i in order]
    if len(order) >= 3 and order == list(range(order[0], order[-1] + 1)):
        return f"{names[0]} to {names[-1]}"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def unbookable(day: dt.date, today: dt.date, days: Sequence[str] = ()) -> str | None:
    """Why ``day`` cannot be booked: "passed", "closed" (not one of ``days``; empty: every
    day), or None when it can."""
    if day < today:
        return "passed"
    if days and WEEKDAYS[day.weekday()] not in {d.lower() for d in days}:
        return "closed"
    return None


def parse_iso(value: str) -> dt.date | None:
    """A slot's ISO date, or None for anything else (a slot may hold a word such as
    "morning" if an operator gives it another type)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
