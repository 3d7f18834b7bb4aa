"""The zero-shot turn format a fine-tuned LLM is trained on and queried with.

The untuned model needs a long few-shot prompt to pick an intent; a model
fine-tuned on this format needs only the caller's words (and what the agent
had just said), which makes a turn several times cheaper. Trainer and
recogniser import the same functions, so the text the model learned is the
text it is asked. A model folder says it was trained on this format with a
marker file (``voicedesk_task.json``) that export writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "voicedesk-turn-v1"
MARKER = "voicedesk_task.json"


def prompt(text: str, context: str = "") -> str:
    """What the model sees; the intent name is the continuation after ``Intent:``."""
    lines = []
    if context.strip():
        lines.append(f"Agent: {' '.join(context.split())}")
    lines.append(f"Caller: {' '.join(text.split())}")
    return "\n".join(lines) + "\nIntent:"


def target(intent: str, slots: dict[str, str] | None = None, reply: str | None = None) -> str:
    """What the model learns to write after the prompt: the intent first (all that
    ``choose`` reads), then the slots and the reply when the data has them."""
    out = f" {intent}\n"
    if slots:
        out += "Slots: " + json.dumps(slots, sort_keys=True, ensure_ascii=False) + "\n"
    if reply:
        out += f"Reply: {' '.join(reply.split())}\n"
    return out


def write_marker(folder: Path, **info: Any) -> None:
    (folder / MARKER).write_text(json.dumps({"format": FORMAT, **info}, indent=2) + "\n")


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of a model folder trained on this format, or None (an untuned model,
    a hub id, a remote server)."""
    path = Path(folder) / MARKER
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None
    return info
