"""Task data for training and verification: a dataset folder, or the domain pack's examples.

A dataset folder (built by training/data/) holds ``manifest.json``,
``{train,validation,test}.jsonl`` of turns, ``corpus.jsonl`` of domain text
and ``asr/{train,validation,test}.jsonl`` of audio clips. The domain pack's
own intent examples are task data too, so a model can be fine-tuned before
any call has been reviewed; they are split by a fixed rule so the examples a
model is tested on are never the ones it (or the retrieval index) learned from.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nlu.domain import DomainPack
from voicedesk.errors import VoicedeskError

SPLITS = ("train", "validation", "test")


class DataError(VoicedeskError):
    pass


@dataclass(frozen=True)
class TurnExample:
    text: str
    intent: str
    slots: dict[str, str] = field(default_factory=dict)
    reply: str | None = None
    context: str = ""  # what the agent had just said, when known
    id: str = ""
    source: str = ""


@dataclass(frozen=True)
class AudioExample:
    audio: Path
    text: str
    id: str = ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path} does not exist; a dataset folder needs manifest.json and "
                        f"train/validation/test .jsonl files (training/data/ builds them)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{number} is not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number} must be a JSON object")
        rows.append(row)
    return rows


def _check_dataset(folder: Path) -> None:
    if not (folder / "manifest.json").is_file():
        raise DataError(f"dataset folder {folder} has no manifest.json; pass a folder written "
                        f"by the dataset builder, or --domain to train on the domain pack")


def turn_examples(folder: Path, split: str) -> list[TurnExample]:
    """The turns of one split; rows without text or intent are a data error, not skipped."""
    _check_dataset(folder)
    path = folder / f"{split}.jsonl"
    out = []
    for number, row in enumerate(read_jsonl(path), 1):
        text, intent = str(row.get("text") or "").strip(), str(row.get("intent") or "").strip()
        if not text or not intent:
            raise DataError(f"{path}:{number}: every turn needs non-empty 'text' and 'intent'")
        slots = row.get("slots") or {}
        out.append(TurnExample(text, intent, {str(k): str(v) for k, v in slots.items()},
                               row.get("reply") or None, str(row.get("context") or ""),
                               str(row.get("id") or number), str(row.get("source") or "")))
    return out


OUT_OF_SCOPE_LABELS = {"oos", "out_of_scope"}  # CLINC150's out-of-scope rows are ours too


def catalogue_only(examples: list[TurnExample], domain: DomainPack,
                   say: Callable[[str], None] = lambda _: None) -> list[TurnExample]:
    """The turns labelled with a catalogue intent (CLINC150's ``oos`` as out_of_scope).

    A dataset may mix in public corpora with their own label spaces; the
    recogniser chooses among catalogue intents only, so other labels would
    teach names it never asks for. A corpus the pack's ``general_labels.yaml``
    names is read through that mapping only (CLINC150's ``pay_bill`` is a
    utility bill, not ours, however alike the names). What is left out is
    said, not hidden.
    """
    kept, dropped = [], 0
    for example in examples:
        mapping = domain.general_labels.get(example.source)
        if mapping is not None:
            intent = mapping.get(example.intent)
        elif example.intent in OUT_OF_SCOPE_LABELS:
            intent = "out_of_scope"
        else:
            intent = example.intent if example.intent in domain.intents else None
        if intent is None:
            dropped += 1
        else:
            kept.append(example if intent == example.intent else replace(example, intent=intent))
    if dropped:
        say(f"left out {dropped} of {len(examples)} turns whose intent is not in the "
            f"{domain.name} catalogue (a public corpus's own labels)")
    return kept


def general_turns(data_dir: Path, names: tuple[str, ...], domain: DomainPack, split: str,
                  say: Callable[[str], None] = lambda _: None) -> list[TurnExample]:
    """The rows of public corpora (under ``data_dir``) whose labels the pack maps onto
    its catalogue, all of one split: general data for the turn task."""
    from training.data.corpora import general_examples

    rows, _ = general_examples(data_dir, names, seed=0, limit=10**9)
    turns = [TurnExample(r.text, r.intent, id=f"{r.source}:{i}", source=r.source)
             for i, r in enumerate(rows) if r.split == split]
    kept = catalogue_only(turns, domain)
    counts: dict[str, int] = {}
    for example in kept:
        counts[example.intent] = counts.get(example.intent, 0) + 1
    say(f"general data ({', '.join(names)}, {split}): {len(kept)} of {len(turns)} rows map "
        f"onto the {domain.name} catalogue: " +
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    return kept


def corpus_texts(folder: Path) -> list[str]:
    _check_dataset(folder)
    path = folder / "corpus.jsonl"
    texts = [str(r.get("text") or "").strip() for r in read_jsonl(path)]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"{path} has no text; continued pre-training needs a corpus")
    return texts


def audio_examples(folder: Path, split: str) -> list[AudioExample]:
    _check_dataset(folder)
    path = folder / "asr" / f"{split}.jsonl"
    out = []
    for number, row in enumerate(read_jsonl(path), 1):
        audio = folder / str(row.get("audio") or "")
        if not row.get("audio") or not audio.is_file():
            raise DataError(f"{path}:{number}: audio {row.get('audio')!r} is not a file inside "
                            f"{folder}")
        out.append(AudioExample(audio, str(row.get("text") or ""), str(row.get("id") or number)))
    return out


def _bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def domain_split(domain: DomainPack, split: str, test_fraction: float = 0.25
                 ) -> list[TurnExample]:
    """The pack's examples of one split: "test" takes about ``test_fraction`` of each
    intent (at least one, chosen by a hash of the text, so the split is stable when
    examples are added), "train" the rest; "validation" is the test part too."""
    out = []
    for intent in domain.intents.values():
        ranked = sorted(intent.examples, key=_bucket)
        n_test = max(1, round(len(ranked) * test_fraction))
        test = set(ranked[:n_test])
        for example in intent.examples:
            if (example in test) == (split != "train"):
                out.append(TurnExample(example, intent.name, reply=intent.reply or None,
                                       id=f"{intent.name}:{_bucket(example):.6f}",
                                       source=f"domain:{domain.name}"))
    return out


def validation_split(examples: list[TurnExample], fraction: float = 0.2
                     ) -> tuple[list[TurnExample], list[TurnExample]]:
    """(fit, validation): about ``fraction`` of each intent's examples, chosen by a hash of
    the text, held out to measure a choice on; an intent with fewer than three examples
    keeps them all for fitting."""
    by_intent: dict[str, list[TurnExample]] = {}
    for example in examples:
        by_intent.setdefault(example.intent, []).append(example)
    held: set[int] = set()
    for group in by_intent.values():
        if len(group) >= 3:
            ranked = sorted(group, key=lambda e: _bucket("validation:" + e.text))
            held.update(id(e) for e in ranked[:max(1, round(len(group) * fraction))])
    return ([e for e in examples if id(e) not in held], [e for e in examples if id(e) in held])


def turns_file(path: Path, domain: DomainPack) -> list[TurnExample]:
    """Labelled turns from a YAML file (``turns: [{text, intent, context?}]``): a test set
    written apart from the pack, so nothing a model learns from was chosen by reading it."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the turns file: {exc}") from exc
    rows = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty list under 'turns:'")
    out = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not str(row.get("text", "")).strip():
            raise DataError(f"{path}: turn {number} needs a text and an intent")
        intent = str(row.get("intent", ""))
        if intent not in domain.intents:
            raise DataError(f"{path}: turn {number} has intent {intent!r}, which is not in "
                            f"the {domain.name} catalogue")
        out.append(TurnExample(str(row["text"]).strip(), intent,
                               context=str(row.get("context", "")),
                               id=f"{Path(path).stem}:{number}", source=str(path)))
    return out


def written_apart(path: Path, domain: DomainPack,
                  say: Callable[[str], None] = lambda _: None) -> list[TurnExample]:
    """A test set from ``turns_file``, less the turns the pack already has word for word:
    those are not held out from a model trained on the pack."""
    turns = turns_file(path, domain)
    known = {e.lower() for intent in domain.intents.values() for e in intent.examples}
    kept = [t for t in turns if t.text.lower() not in known]
    say(f"{path}: {len(turns) - len(kept)} of {len(turns)} turns are also pack examples "
        f"and are left out")
    return kept


def without_examples(domain: DomainPack, held_out: list[TurnExample]) -> DomainPack:
    """The pack minus held-out texts, so retrieval cannot look the answer up."""
    drop = {e.text for e in held_out}
    intents = {}
    for name, intent in domain.intents.items():
        kept = tuple(e for e in intent.examples if e not in drop) or intent.examples[:1]
        intents[name] = replace(intent, examples=kept)
    return replace(domain, intents=intents)


_OPENERS = {"wants": "I want", "asks": "I'm asking", "thinks": "I think", "needs": "I need",
            "reports": "I'm reporting", "lost": "I lost", "is": "I am", "says": ""}
_PRONOUNS = {"their": "my", "they": "I", "them": "me", "theirs": "mine"}
_VERBS = {"wants": "want", "says": "say"}


def description_examples(domain: DomainPack) -> list[TurnExample]:
    """Each intent's description said by the caller: "the caller wants to cancel their
    contract" becomes "I want to cancel my contract".

    Descriptions name what examples only imply (an *order*'s progress is a
    ticket status, *opening hours* a knowledge question), and the operator
    already wrote them; descriptions not about the caller are left out.
    """
    out = []
    for intent in domain.intents.values():
        words = intent.description.split()
        if words[:2] != ["the", "caller"] or len(words) < 4 or words[2] not in _OPENERS:
            continue
        rest = [_PRONOUNS.get(w, _VERBS.get(w, w)) for w in words[3:]]
        text = " ".join(([_OPENERS[words[2]]] if _OPENERS[words[2]] else []) + rest)
        out.append(TurnExample(text[0].upper() + text[1:], intent.name,
                               id=f"{intent.name}:description",
                               source=f"domain:{domain.name}:description"))
    return out


LARGE_GROUP = 2.0  # an intent with more than this times the median count is sampled down


def balanced(examples: list[TurnExample]) -> list[TurnExample]:
    """Every intent repeated up to the commonest one's count, so no intent is the
    model's default merely for having more examples.

    An intent with more than ``LARGE_GROUP`` times the median count (out of
    scope, once a public corpus's thousand unrelated requests are mapped onto
    it) is sampled down to that (the operator's own examples first, then
    public corpora's rows by a hash of the text) and does not set the count
    the others are repeated to.
    """
    from training.data.corpora import READERS

    by_intent: dict[str, list[TurnExample]] = {}
    for example in examples:
        by_intent.setdefault(example.intent, []).append(example)
    if not by_intent:
        return []
    sizes = sorted(len(v) for v in by_intent.values())
    cap = max(1, math.ceil(LARGE_GROUP * sizes[len(sizes) // 2]))
    most = max(n for n in sizes if n <= cap)
    out = []
    for group in by_intent.values():
        if len(group) > cap:
            out += sorted(group, key=lambda e: (e.source in READERS, _bucket(e.text)))[:cap]
        else:
            out += [group[i % len(group)] for i in range(most)]
    return out


_FILLERS = ("hi, ", "hello, ", "yeah ", "um ", "okay so ")


def spoken_variants(example: TurnExample) -> list[TurnExample]:
    """The example as ASR may deliver it: lower case, no punctuation, with a filler.

    The catalogue's examples are written text; callers' turns arrive as
    transcripts. Two cheap variants per example teach the model both.
    """
    plain = re.sub(r"[^\w' ]+", " ", example.text.lower())
    plain = " ".join(plain.split())
    filler = _FILLERS[int(_bucket(example.text) * len(_FILLERS)) % len(_FILLERS)]
    variants = [example, replace(example, text=plain)]
    if example.intent != "goodbye":
        variants.append(replace(example, text=filler + plain))
    return variants
