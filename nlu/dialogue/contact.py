"""Which contact detail a caller is changing: the one they name, else the kind of value.

"Please change the phone number on my account" changes the phone number even
though the answer ("It's 07700 900111") names nothing; "I've moved" changes
the address. A phone number is never written into the address.
"""

from __future__ import annotations

import re
from collections.abc import Collection

DETAILS = ("email", "phone_number", "address")  # checked in this order: "e-mail address"
WORDS = {"email": "e-mail address", "phone_number": "phone number", "address": "address"}
_NAMED = {
    "email": re.compile(r"\be-?\s?mail\b"),
    "phone_number": re.compile(r"\b(phone|mobile|landline|telephone|cell)\b|"
                               r"\b(my|new|the|contact|old)\s+number\b"),
    "address": re.compile(r"\b(address|moved|moving|move\s+house|postcode|post\s+code|zip|"
                          r"new\s+(house|home|flat|place))\b"),
}


def named_detail(text: str, options: Collection[str] = DETAILS) -> str | None:
    """The detail the words name, among ``options``; None when they name none."""
    lowered = text.lower()
    return next((d for d in DETAILS if d in options and _NAMED[d].search(lowered)), None)


def detail_changing(text: str, found: Collection[str], before: str | None,
                    options: Collection[str] = DETAILS) -> str | None:
    """A named detail wins (callers correct themselves); then the one already chosen; then
    the kind of value the turn held (a phone number, an address)."""
    named = named_detail(text, options)
    if named or before:
        return named or before
    return next((d for d in ("phone_number", "address") if d in found and d in options), None)


def looks_like_phone_number(value: str) -> bool:
    """Ten or more digits and no words: "07700 900111", not "Flat 4, 19 Canal Street"."""
    return len(re.sub(r"\D", "", value)) >= 10 and not re.search(r"[A-Za-z]{2,}", value)
