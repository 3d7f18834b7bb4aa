"""Label Studio tasks: the review queue out with model predictions, annotations back in.

The labelling interface is a ``Choices`` control named ``intent`` (one
intent of the catalogue) and a ``TextArea`` named ``transcript`` for fixing
what was heard, both on a ``Text`` object named ``text`` (plus an ``Audio``
player when audio is exported). ``label_config`` writes that interface;
``task`` and ``read_tasks`` speak Label Studio's JSON task format
(https://labelstud.io/guide/task_format): ``data``, ``predictions`` (the
model's label, with its score) and, in an export from Label Studio,
``annotations`` with the reviewer in ``completed_by``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from training.data.labels import TurnView
from training.data.pii import RedactionPolicy
from training.data.redact import redact_view
from training.data.review_files import ReviewRow
from voicedesk.errors import VoicedeskError

INTENT = "intent"
TRANSCRIPT = "transcript"
TEXT = "text"


def label_config(intents: list[str], audio: bool = False) -> str:
    """The labelling interface XML to paste into the Label Studio project settings."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in sorted(intents))
    player = '  <Audio name="audio" value="$audio"/>\n' if audio else ""
    return (f"<View>\n{player}  <Text name=\"{TEXT}\" value=\"$text\"/>\n"
            f"  <Choices name=\"{INTENT}\" toName=\"{TEXT}\" choice=\"single\" "
            f"showInline=\"false\">\n{choices}\n  </Choices>\n"
            f"  <TextArea name=\"{TRANSCRIPT}\" toName=\"{TEXT}\" editable=\"true\" "
            f"maxSubmissions=\"1\" placeholder=\"Correct transcript (leave empty if right)\"/>\n"
            f"</View>\n")


def task(view: TurnView, policy: RedactionPolicy, audio: str | None = None) -> dict[str, Any]:
    clean = redact_view(view, policy)
    data: dict[str, Any] = {"text": clean.transcript, "turn_id": view.turn_id,
                            "call_id": view.call_id, "index": view.index}
    if audio is not None:
        data["audio"] = audio
    result: list[dict[str, Any]] = []
    if view.intent:
        result.append({"id": f"{view.turn_id}-intent", "from_name": INTENT, "to_name": TEXT,
                       "type": "choices", "value": {"choices": [view.intent]}})
    return {"data": data, "predictions": [{
        "model_version": view.label_author or view.label_source,
        "score": round(view.confidence, 4), "result": result}]}


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> None:
    """A JSON array with one task a line, so import errors can name a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(f"[\n{body}\n]\n" if tasks else "[]\n", encoding="utf-8")
    tmp.replace(path)


def read_tasks(path: Path) -> tuple[list[ReviewRow], list[tuple[int, str]]]:
    """Reviewer decisions from a Label Studio JSON export, with each task's line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VoicedeskError(f"cannot read Label Studio export {path}: {exc}") from None
    items, errors = _array_items(text, path)
    rows: list[ReviewRow] = []
    for line, item in items:
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            errors.append((line, "a task must be an object with a \"data\" object"))
            continue
        try:
            values, reviewer = _latest_annotation(item)
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        rows.append(ReviewRow(line, item["data"].get("turn_id"), reviewer, values))
    return rows, errors


def _array_items(text: str, path: Path) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """The elements of a top-level JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "[":
        raise VoicedeskError(f"{path} is not a Label Studio JSON export: expected a list of "
                             f"tasks ('[' ...), got {text[i:i + 20]!r}")
    items: list[tuple[int, Any]] = []
    errors: list[tuple[int, str]] = []
    i = _skip(text, i + 1)
    while i < len(text) and text[i] != "]":
        line = text.count("\n", 0, i) + 1
        try:
            item, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            errors.append((exc.lineno, f"not valid JSON ({exc.msg}); tasks after this line "
                                       f"were not read"))
            return items, errors
        items.append((line, item))
        i = _skip(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
    return items, errors


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _latest_annotation(item: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    annotations = [a for a in item.get("annotations") or []
                   if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return {}, None
    latest = max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at")
                                                 or ""), a.get("id") or 0))
    values: dict[str, Any] = {}
    for result in latest.get("result") or []:
        if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
            raise ValueError("an annotation result must be an object with a \"value\" object")
        name, value = result.get("from_name"), result["value"]
        if name == INTENT:
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1:
                raise ValueError(f"intent needs exactly one choice, got {choices!r}")
            values["intent"] = choices[0]
        elif name == TRANSCRIPT:
            texts = value.get("text")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"transcript text must be a list of strings, got {texts!r}")
            if " ".join(texts).strip():
                values["transcript"] = " ".join(t.strip() for t in texts)
    who = latest.get("completed_by")
    if isinstance(who, dict):
        reviewer = who.get("email") or who.get("username") or (
            f"labelstudio:{who['id']}" if "id" in who else None)
    elif isinstance(who, (int, str)) and who != "":
        reviewer = f"labelstudio:{who}"
    else:
        reviewer = None
    return values, reviewer
