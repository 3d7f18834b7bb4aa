"""How much the nearest examples' vote counts beside a fine-tuned LLM, measured.

The recogniser multiplies the LLM's choice by the retrieval vote raised to a
weight (``nlu.understanding.combine``). The untuned model leans on the vote
(weight 1). A fine-tuned model knows the catalogue itself, and then a full
vote overrides it where the nearest examples mislead: "Book me a taxi to the
airport" lies nearest a lost-phone example, and out of scope, which the
pack's handful of examples cannot cover, is outvoted. Which weight suits a
model is measured, not assumed: on turns the model was not trained on (and the
retrieval index does not hold), each weight of a small grid is scored from one
LLM pass per turn, and the most accurate kept; ties go to the larger weight,
the untuned default's side. The weight is written into the model's marker,
where the recogniser reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlu import turn_format
from nlu.domain import DomainPack
from training.task_examples import TurnExample, without_examples

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def score_weights(engine: Any, embedder: Any, domain: DomainPack, turns: list[TurnExample],
                  examples_per_turn: int, weights: tuple[float, ...] = WEIGHTS,
                  say: Callable[[str], None] = lambda _: None) -> dict[float, float]:
    """Intent accuracy on ``turns`` at each weight, the turns left out of retrieval."""
    from nlu.understanding import IntentRecognizer, Understanding, combine

    if not turns:
        raise ValueError("choosing a retrieval weight needs validation turns")
    recognizer = IntentRecognizer(engine, embedder, without_examples(domain, turns),
                                  examples_per_turn)
    right = dict.fromkeys(weights, 0)
    for n, turn in enumerate(turns, 1):
        evidence = recognizer.evidence(turn.text, turn.context)
        for weight in weights:
            heard = evidence if isinstance(evidence, Understanding) else combine(evidence,
                                                                                 weight)
            right[weight] += heard.intent == turn.intent
        if n % 25 == 0 or n == len(turns):
            say(f"retrieval weight: {n}/{len(turns)} validation turns scored")
    return {w: right[w] / len(turns) for w in weights}


def best_weight(accuracy: dict[float, float]) -> float:
    """The most accurate weight; of equals, the largest."""
    return max(accuracy, key=lambda w: (accuracy[w], w))


def write_weight(model_root: Path, weight: float, accuracy: dict[float, float],
                 turns: int) -> None:
    """Record the weight in the marker of every served form of an exported model."""
    for folder in (model_root / "hf", model_root / "ct2-int8"):
        info = turn_format.read_marker(folder)
        if info is None:
            raise ValueError(f"{folder} has no {turn_format.MARKER}: only a model fine-tuned "
                             f"on the turn format takes a retrieval weight")
        info.pop("format", None)
        turn_format.write_marker(folder, **{**info, "retrieval_weight": weight,
                                            "retrieval_weight_accuracy": {
                                                str(w): round(a, 4)
                                                for w, a in accuracy.items()},
                                            "retrieval_weight_turns": turns})
    from training.export import MANIFEST

    manifest = model_root / MANIFEST
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data["retrieval_weight"] = weight
        manifest.write_text(json.dumps(data, indent=2, default=str) + "\n")
