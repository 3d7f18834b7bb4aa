"""What is left of a call for the person who takes it over and for analysts: who called,
what they asked for, what was done, and how the call ended. No secrets: sensitive slots are
left out by the caller of ``call_summary``, and long numbers in the caller's words masked."""

from __future__ import annotations

import re
from typing import Any

from nlu.dialogue.state import DialogueState


def call_summary(state: DialogueState, slots: dict[str, str]) -> dict[str, Any]:
    """The summary of ``state``'s call, with ``slots`` the values it may show."""
    requests = [i for i in dict.fromkeys(state.intents) if i and i != "out_of_scope"]
    last_caller = next((t for s, t in reversed(state.transcript) if s == "caller"), "")
    customer = state.customer if state.verified else None
    return {
        "disposition": disposition(state),
        "customer": customer.name if customer else None,
        "account_number": customer.account_number if customer else None,
        "verified": state.verified,
        "requests": requests,
        "completed": state.completed_flows,
        "tickets": [{"id": t.id, "type": t.type, "priority": t.priority}
                    for t in state.tickets],
        "slots": slots,
        "handoff_reason": state.handoff_reason or None,
        "last_caller_words": mask_digits(last_caller),
        "knowledge_sources": state.knowledge_sources,
        "text": _summary_text(state, requests),
    }


def disposition(state: DialogueState) -> str:
    """handed_off, abandoned (hung up in the middle of a flow), resolved or unresolved."""
    if state.handoff:
        return "handed_off"
    if state.flow is not None:
        return "abandoned"
    if state.completed_flows and state.completed_flows != ["goodbye"]:
        return "resolved"
    return "unresolved"


def mask_digits(text: str) -> str:
    """Numbers that may be secret (four digits or more, read together or apart: a PIN, an
    account, a card) masked; a plan's or a house's number and a ticket id kept."""
    def mask(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group())
        return re.sub(r"\d", "#", m.group()) if len(digits) >= 4 else m.group()
    return re.sub(r"(?<![\w-])\d(?:[\d ,.-]*\d)?(?![\w])", mask, text)


def _summary_text(state: DialogueState, requests: list[str]) -> str:
    who = (f"{state.customer.name} (verified)" if state.customer and state.verified
           else "an unverified caller")
    parts = [f"Call from {who} about {', '.join(requests) or 'an unclear request'}."]
    if state.tickets:
        parts.append("Tickets: " + ", ".join(f"{t.id} ({t.type})" for t in state.tickets) + ".")
    if state.handoff:
        parts.append(f"Handed off: {state.handoff_reason}.")
    return " ".join(parts)
