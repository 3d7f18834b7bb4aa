"""Fine-tuning the sentence encoder into an intent classifier (``nlu.intent_classifier``).

The whole encoder is trained, with a cosine head whose rows start at the
mean embedding of each intent's examples, so the first step already ranks
intents as the frozen encoder would and training only has to sharpen them.
The head learns faster than the encoder (``head_lr``). Batches hold turns of
similar length (little padding), and the run is the resumable loop of
``training.loop``: interrupted, it resumes at the same step.

Out of scope: a label set may include a trained out-of-scope label, and
``calibrate`` sets the threshold on the cosine with the nearest in-scope
intent below which any turn is out of scope, chosen on a dev set. By default
it rejects at most 1 % of the dev set's in-scope turns (``FALSE_REJECTS``):
that rule rests on every in-scope turn, where one aimed at an out-of-scope
recall rests on the few out-of-scope ones (CLINC150 has 100 in ``val``; 75 %
of them meant 64-66 % of the 1,000 in ``oos_test``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlu.intent_classifier import ENCODER, HEAD, ClassifierInfo, IntentClassifier
from training.loop import LoopOptions, LoopResult
from training.runs import RunLog, train_logged
from training.task_examples import TurnExample
from voicedesk.errors import VoicedeskError

CENTROID_EXAMPLES = 16  # per label, embedded once to place the head's first rows


@dataclass
class ClassifierOptions:
    max_length: int = 64
    scale: float = 30.0
    label_smoothing: float = 0.1
    head_lr: float = 20.0  # the head's learning rate, as a multiple of the encoder's
    out_of_scope: str = "out_of_scope"
    loop: LoopOptions = field(default_factory=lambda: LoopOptions(
        epochs=4, batch_size=32, learning_rate=1e-4, weight_decay=0.01, warmup_fraction=0.06,
        save_every=100))


@dataclass
class ClassifierOutcome:
    run_id: str
    loop: LoopResult
    model_dir: Path


def _check(texts: Sequence[str], labels: Sequence[str]) -> list[str]:
    if len(texts) != len(labels):
        raise VoicedeskError(f"{len(texts)} texts but {len(labels)} labels")
    names = sorted(set(labels))
    if len(names) < 2:
        raise VoicedeskError(f"an intent classifier needs at least two labels; got {names}")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise VoicedeskError(f"{len(empty)} training texts are empty (the first is number "
                             f"{empty[0] + 1}); drop them before training")
    return names


def _centroids(encoder: Any, tokenizer: Any, texts: Sequence[str], targets: list[int],
               n_labels: int, max_length: int, seed: int) -> Any:
    import torch

    from nlu.embeddings import mean_pooled

    by_label: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_label.setdefault(t, []).append(i)
    rng = random.Random(seed)
    chosen = [i for rows in by_label.values()
              for i in rng.sample(rows, min(CENTROID_EXAMPLES, len(rows)))]
    sums = torch.zeros(n_labels, encoder.config.hidden_size)
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(chosen), 64):
            rows = chosen[start:start + 64]
            vectors = mean_pooled(encoder, tokenizer, [texts[i] for i in rows], max_length)
            sums.index_add_(0, torch.tensor([targets[i] for i in rows]), vectors)
    return torch.nn.functional.normalize(sums, dim=-1)


def train_classifier(encoder_dir: str, texts: Sequence[str], labels: Sequence[str], out: Path,
                     options: ClassifierOptions, log: RunLog | None = None,
                     on_step: Callable[[int, int, float], None] | None = None
                     ) -> ClassifierOutcome:
    """Train into ``out`` (resuming a stopped run there) and save the classifier in
    ``out/model``."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from nlu.embeddings import mean_pooled

    names = _check(texts, labels)
    index = {name: i for i, name in enumerate(names)}
    targets = [index[label] for label in labels]
    torch.manual_seed(options.loop.seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = torch.nn.Module()
    model.encoder = AutoModel.from_pretrained(encoder_dir)
    model.head = torch.nn.Parameter(_centroids(model.encoder, tokenizer, texts, targets,
                                               len(names), options.max_length,
                                               options.loop.seed))
    examples = list(zip(texts, targets, strict=True))

    def collate(batch: list[tuple[str, int]]) -> tuple[list[str], Any]:
        return [t for t, _ in batch], torch.tensor([y for _, y in batch])

    def loss(m: Any, batch: tuple[list[str], Any]) -> Any:
        vectors = mean_pooled(m.encoder, tokenizer, batch[0], options.max_length)
        logits = vectors @ torch.nn.functional.normalize(m.head, dim=-1).T * options.scale
        return torch.nn.functional.cross_entropy(logits, batch[1],
                                                 label_smoothing=options.label_smoothing)

    fingerprint = {"kind": "intent_classifier", "encoder": encoder_dir, "labels": names,
                   "n": len(texts), "head": [texts[i] for i in range(0, len(texts),
                                                                   max(1, len(texts) // 50))],
                   **{k: v for k, v in asdict(options).items() if k != "loop"}}
    lengths = [len(t) for t in texts]
    result = train_logged(model, examples, collate, loss, out, options.loop, fingerprint, log,
                          on_step, lr_multipliers={"head": options.head_lr}, lengths=lengths)
    folder = out / "model"
    (folder / ENCODER).mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(folder / ENCODER)
    tokenizer.save_pretrained(folder / ENCODER)
    save_file({"head": model.head.detach().contiguous()}, str(folder / HEAD))
    ClassifierInfo(labels=names, scale=options.scale, max_length=options.max_length,
                   out_of_scope=options.out_of_scope).save(folder)
    if log is not None:
        log.finish("completed", result.steps, {"final_loss": result.final_loss,
                                               "examples_per_s": result.examples_per_s})
    return ClassifierOutcome(log.id if log else "", result, folder)


FALSE_REJECTS = 0.01  # share of in-scope dev turns the calibrated threshold may reject


def calibrate(classifier: IntentClassifier, texts: Sequence[str], labels: Sequence[str],
              target_recall: float | None = None,
              false_rejects: float | None = FALSE_REJECTS) -> float:
    """Set (and save) the out-of-scope threshold on the nearest in-scope intent's
    cosine from a dev set of in-scope and out-of-scope turns; returns it.

    The rule is ``choose_threshold``'s: ``target_recall`` of the out-of-scope
    turns found, else at most ``false_rejects`` of the in-scope ones rejected,
    else (both None) the best in-scope accuracy plus out-of-scope recall.
    """
    cosines = classifier.cosines(list(texts))
    predicted = [classifier.labels[i] for i in cosines.argmax(axis=1)]
    chosen = choose_threshold(classifier.in_scope_fit(cosines), predicted, labels,
                              classifier.info.out_of_scope, target_recall,
                              None if target_recall is not None else false_rejects)
    classifier.info.threshold = chosen
    classifier.info.threshold_on = "cosine"
    classifier.info.save(classifier.folder)
    return chosen


def choose_threshold(scores: np.ndarray, predicted: Sequence[str], labels: Sequence[str],
                     oos: str, target_recall: float | None = None,
                     false_rejects: float | None = None) -> float:
    """The out-of-scope threshold on a per-turn score (higher: more in scope), from dev
    turns' scores and labels as predicted (of one model, or averaged over several).

    ``target_recall``: the lowest threshold that finds that share of the out-of-scope
    turns. ``false_rejects``: the highest that rejects at most that share of the
    in-scope turns. Neither: the one with the best in-scope accuracy plus recall.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_oos = np.array([label == oos for label in labels])
    if is_oos.all() or not is_oos.any():
        raise VoicedeskError("calibrating the out-of-scope threshold needs dev turns both in "
                             f"scope and out of scope ({oos!r})")
    if false_rejects is not None:
        if not 0.0 <= false_rejects < 1.0:
            raise VoicedeskError(f"false_rejects = {false_rejects}; expected a share in [0, 1)")
        inside = np.sort(scores[~is_oos])
        allowed = int(np.floor(false_rejects * len(inside)))  # turns that may fall below
        return float(inside[allowed])  # below it: the `allowed` lowest in-scope turns
    right = np.array([a == y for a, y in zip(predicted, labels, strict=True)])
    best, chosen = -1.0, float(scores.min())
    for threshold in np.unique(scores):
        below = scores < threshold
        in_acc = float((right & ~below)[~is_oos].mean())
        recall = float(((below | right) & is_oos)[is_oos].mean())
        if target_recall is not None:
            if recall >= target_recall:
                return float(threshold)
            continue
        if in_acc + recall > best:
            best, chosen = in_acc + recall, float(threshold)
    return chosen


# ---- the domain pack's own classifier -----------------------------------------------
DOMAIN_EPOCHS = 10.0  # a pack has a few hundred examples: ten epochs take under a minute


def domain_training_set(domain: Any) -> tuple[list[str], list[str]]:
    """Every example of the pack and each intent's description said by a caller.

    No spoken-style copies: the encoder's tokenizer is uncased, and on the
    held-out telecom turns copies without punctuation and with fillers (three
    times the steps) were right on 95 of 107 against 94 without them.
    """
    from training.task_examples import description_examples

    examples = [TurnExample(text, intent.name) for intent in domain.intents.values()
                for text in intent.examples] + description_examples(domain)
    return [e.text for e in examples], [e.intent for e in examples]


def domain_classifier(domain: Any, store: Any, encoder_ref: str) -> Path:
    """The classifier of ``domain``'s intents, trained from the pack on first use and kept
    in the model cache under a key of its examples, so editing the pack retrains it."""
    import hashlib
    import json
    import shutil

    encoder = store.embeddings(encoder_ref)
    texts, labels = domain_training_set(domain)
    options = ClassifierOptions(loop=LoopOptions(
        epochs=DOMAIN_EPOCHS, batch_size=32, learning_rate=1e-4, weight_decay=0.01,
        warmup_fraction=0.06, save_every=10_000, progress=True))
    key = hashlib.sha256(json.dumps([texts, labels, encoder_ref, asdict(options)],
                                    default=str).encode()).hexdigest()[:12]

    def build(scratch: Path) -> None:
        outcome = train_classifier(encoder, texts, labels, scratch / "run", options)
        outcome.model_dir.rename(scratch / "model")
        shutil.rmtree(scratch / "run")

    final = store.derived(f"intent-classifiers/{domain.name}-{key}",
                          f"the {domain.name} intent classifier ({len(texts)} examples, "
                          f"{DOMAIN_EPOCHS:g} epochs)", build)
    return final / "model"


def configured_classifier(config: Any, domain: Any, store: Any) -> IntentClassifier | None:
    """The classifier ``config.nlu.intent_classifier`` names: "domain" (trained from the pack
    on first use), a classifier folder, or "none"."""
    ref = config.nlu.intent_classifier.strip()
    if ref.lower() in ("", "none", "off"):
        return None
    if ref == "domain":
        return IntentClassifier(domain_classifier(domain, store, config.nlu.embeddings))
    classifier = IntentClassifier(ref)
    unknown = sorted(set(classifier.labels) - set(domain.intents) - {"out_of_scope"})
    if unknown:
        raise VoicedeskError(f"intent classifier {ref} knows intents the {domain.name} domain "
                             f"lacks ({', '.join(unknown[:5])}); train it on this domain's "
                             f"intents")
    return classifier
