"""The intent classifier: the bundled encoder fine-tuned by training/, loaded by nlu/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlu.domain import load_domain
from nlu.intent_classifier import IntentClassifier, is_classifier
from training.intent_classifier import ClassifierOptions, calibrate, train_classifier
from training.loop import BUCKET_BATCHES, LoopOptions, TrainingInterrupted, batch_indices
from training.task_examples import domain_split
from voicedesk.errors import VoicedeskError
from voicedesk.models.prepare import ModelStore

INTENTS = ("check_balance", "roaming", "sim_replacement", "cancel_service", "slow_internet")


@pytest.fixture(scope="module")
def encoder(models_dir: Path) -> str:
    return ModelStore(models_dir).embeddings("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def split() -> tuple[list, list]:
    domain = load_domain("telecom")
    train = [e for e in domain_split(domain, "train") if e.intent in INTENTS]
    test = [e for e in domain_split(domain, "test") if e.intent in INTENTS]
    return train, test


def options(**loop: object) -> ClassifierOptions:
    return ClassifierOptions(loop=LoopOptions(epochs=3, batch_size=8, learning_rate=1e-4,
                                              save_every=1000, progress=False, **loop))


@pytest.fixture(scope="module")
def trained(encoder: str, split: tuple[list, list], tmp_path_factory: pytest.TempPathFactory
            ) -> dict:
    """One run stopped part-way and resumed, and the classifier it saved."""
    train, _ = split
    out = tmp_path_factory.mktemp("classifier")
    texts, labels = [e.text for e in train], [e.intent for e in train]
    with pytest.raises(TrainingInterrupted) as stopped:
        train_classifier(encoder, texts, labels, out, options(stop_after=5))
    outcome = train_classifier(encoder, texts, labels, out, options())
    return {"stopped_at": stopped.value.step, "outcome": outcome,
            "classifier": IntentClassifier(outcome.model_dir)}


def test_an_interrupted_run_resumes_where_it_stopped(trained: dict) -> None:
    assert trained["stopped_at"] == 5
    assert trained["outcome"].loop.resumed_from == 5
    assert trained["outcome"].loop.steps > 5


def test_the_trained_classifier_recognises_held_out_turns(trained: dict,
                                                          split: tuple[list, list]) -> None:
    _, test = split
    classifier = trained["classifier"]
    assert is_classifier(trained["outcome"].model_dir)
    assert sorted(classifier.labels) == sorted(INTENTS)
    predicted = classifier.predict([e.text for e in test])
    right = sum(p.intent == e.intent for p, e in zip(predicted, test, strict=True))
    assert right / len(test) >= 0.8, [(e.text, p.intent) for p, e in zip(predicted, test,
                                                                          strict=True)]
    assert all(0.0 < p.confidence <= 1.0 for p in predicted)


def test_calibration_sets_a_threshold_that_finds_out_of_scope_turns(trained: dict) -> None:
    classifier = IntentClassifier(trained["outcome"].model_dir)
    in_scope = ["what is my balance", "I need a new sim card", "cancel my contract please"]
    outside = ["what is the capital of France", "play some jazz music",
               "how many eggs go into a pancake", "tell me a joke about penguins"]
    texts = in_scope + outside
    labels = ["check_balance", "sim_replacement", "cancel_service"] + ["out_of_scope"] * 4
    threshold = calibrate(classifier, texts, labels, target_recall=0.75)
    found = [p.intent for p in classifier.predict(outside)].count("out_of_scope")
    assert found >= 3
    saved = IntentClassifier(classifier.folder).info
    assert (saved.threshold, saved.threshold_on) == (threshold, "cosine")  # saved with it
    # the default rule: no in-scope dev turn of three may be rejected (1 % of 3 is none)
    calibrate(classifier, texts, labels)
    assert "out_of_scope" not in [p.intent for p in classifier.predict(in_scope)]


def test_the_threshold_is_chosen_from_scores_alone() -> None:
    from training.intent_classifier import choose_threshold

    scores = np.array([0.9, 0.7, 0.5, 0.35, 0.8])  # higher: more in scope
    predicted = ["a", "b", "a", "b", "out_of_scope"]
    labels = ["a", "b", "out_of_scope", "out_of_scope", "out_of_scope"]
    # a third of the out-of-scope turns is found by the class alone (no turn rejected);
    # two thirds need the threshold above 0.35; all three, above 0.5
    assert choose_threshold(scores, predicted, labels, "out_of_scope", 0.3) == 0.35
    assert choose_threshold(scores, predicted, labels, "out_of_scope", 0.6) == 0.5
    assert choose_threshold(scores, predicted, labels, "out_of_scope", 1.0) == 0.7
    # without a target: the best in-scope accuracy plus recall (all of both)
    assert choose_threshold(scores, predicted, labels, "out_of_scope") == 0.7
    with pytest.raises(VoicedeskError, match="both in scope and out of scope"):
        choose_threshold(scores[:2], predicted[:2], labels[:2], "out_of_scope")


def test_a_false_reject_budget_rejects_that_share_of_in_scope_turns() -> None:
    """The default rule rests on the in-scope dev turns: at most that share falls below."""
    from training.intent_classifier import choose_threshold

    rng = np.random.default_rng(0)
    inside = rng.uniform(0.4, 1.0, 200)
    scores = np.concatenate([inside, [0.1, 0.2, 0.3]])
    labels = ["a"] * 200 + ["out_of_scope"] * 3
    predicted = ["a"] * 203
    for share, rejected in ((0.0, 0), (0.01, 2), (0.05, 10)):
        threshold = choose_threshold(scores, predicted, labels, "out_of_scope",
                                     false_rejects=share)
        assert int((inside < threshold).sum()) == rejected
    with pytest.raises(VoicedeskError, match="expected a share"):
        choose_threshold(scores, predicted, labels, "out_of_scope", false_rejects=1.0)


def test_an_older_classifier_keeps_its_probability_threshold(trained: dict,
                                                             tmp_path: Path) -> None:
    """Classifiers calibrated before the cosine rule hold a top-probability threshold
    (no ``threshold_on`` in their file): it still means what it meant."""
    import json
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(trained["outcome"].model_dir, folder)
    info = json.loads((folder / "intent_classifier.json").read_text())
    info.pop("threshold_on", None)
    info["threshold"] = 1.01  # no top probability reaches it
    (folder / "intent_classifier.json").write_text(json.dumps(info))
    old = IntentClassifier(folder)
    assert old.info.threshold_on == "probability"
    assert {p.intent for p in old.predict(["what is my balance", "new sim please"])} == {
        "out_of_scope"}
    info["threshold"] = 0.0  # none: only the trained label
    (folder / "intent_classifier.json").write_text(json.dumps(info))
    assert IntentClassifier(folder).predict(["what is my balance"])[0].intent == "check_balance"


def test_bad_training_input_is_refused_with_a_reason(encoder: str, tmp_path: Path) -> None:
    with pytest.raises(VoicedeskError, match="2 texts but 1 labels"):
        train_classifier(encoder, ["a", "b"], ["x"], tmp_path, options())
    with pytest.raises(VoicedeskError, match="at least two labels"):
        train_classifier(encoder, ["a", "b"], ["x", "x"], tmp_path, options())
    with pytest.raises(VoicedeskError, match="empty"):
        train_classifier(encoder, ["a", " "], ["x", "y"], tmp_path, options())
    with pytest.raises(VoicedeskError, match="not an intent classifier"):
        IntentClassifier(tmp_path)


def test_length_bucketed_batches_cover_each_example_once_per_epoch() -> None:
    lengths = [(i * 37) % 101 for i in range(1000)]
    loop = LoopOptions(batch_size=4)
    per_epoch = 250
    epoch = [i for step in range(per_epoch) for i in batch_indices(step, 1000, loop, lengths)]
    assert sorted(epoch) == list(range(1000))
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b)
               for b in (batch_indices(s, 1000, loop, lengths) for s in range(per_epoch))]
    assert sum(spreads) / len(spreads) < 100 / BUCKET_BATCHES * 4  # far below random batches
    assert batch_indices(per_epoch, 1000, loop, lengths) != batch_indices(0, 1000, loop, lengths)


def test_train_intent_writes_a_classifier_the_assistant_can_serve(home: Path) -> None:
    from nlu.intent_classifier import IntentClassifier
    from tests.conftest import run_cli
    from training.intent_classifier import configured_classifier
    from voicedesk.config import load_config

    result = run_cli(["train", "intent", "--max-steps", "3", "--batch-size", "8"], home)
    assert result.returncode == 0, result.stderr
    folder = home / "runs" / "intent" / "model"
    assert f"classifier in {folder}" in result.stdout
    config = load_config(environ={"VOICEDESK_HOME": str(home),
                                  "VOICEDESK_NLU_INTENT_CLASSIFIER": str(folder)})
    domain = load_domain(config.nlu.domain)
    classifier = configured_classifier(config, domain, ModelStore(config.models_dir))
    assert isinstance(classifier, IntentClassifier)
    assert set(classifier.labels) == set(domain.intents)


def test_train_intent_calibrates_on_the_validation_split(home: Path,
                                                         split: tuple[list, list]) -> None:
    """A dataset with out-of-scope validation turns gets the cosine threshold, saved."""
    import json

    from tests.conftest import run_cli

    train, test = split
    data = home / "dataset"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    outside = ["what is the capital of France", "play some jazz music",
               "how many eggs go into a pancake", "tell me a joke about penguins"]
    rows = {"train": [{"text": e.text, "intent": e.intent} for e in train],
            "validation": [{"text": e.text, "intent": e.intent} for e in test]
            + [{"text": t, "intent": "oos"} for t in outside]}
    for name, split_rows in rows.items():
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    result = run_cli(["train", "intent", "--data", str(data), "--max-steps", "3",
                      "--batch-size", "8"], home)
    assert result.returncode == 0, result.stderr
    assert "out-of-scope threshold" in result.stdout and "1%" in result.stdout
    info = json.loads((home / "runs" / "intent" / "model" / "intent_classifier.json")
                      .read_text())
    assert info["threshold_on"] == "cosine" and info["threshold"] > 0


def test_the_assistant_asks_the_llm_only_when_its_classifier_is_unsure(assistant) -> None:
    import copy

    recognizer = assistant.recognizer
    assert recognizer.classifier is not None  # the default: the domain pack's classifier
    domain = assistant.domain
    sure = recognizer.understand("someone stole my phone on the train last night")
    assert sure.intent == "lost_or_stolen_device"
    assert set(sure.candidates) == set(domain.intents)  # the classifier's own distribution
    asking = copy.copy(recognizer)
    asking.confident = 1.01  # never sure enough: the LLM chooses among the likeliest
    chosen = asking.understand("someone stole my phone on the train last night")
    assert chosen.intent in domain.intents
    assert len(chosen.candidates) <= recognizer.k + 1
    assert "lost_or_stolen_device" in chosen.candidates


def test_a_calibrated_threshold_puts_a_turn_out_of_scope_in_calls(assistant) -> None:
    """A classifier calibrated on a dev set (``voicedesk train intent`` with a validation
    split) applies its threshold in calls too, not only in ``predict``."""
    import copy
    import dataclasses

    recognizer = copy.copy(assistant.recognizer)
    classifier = copy.copy(recognizer.classifier)
    recognizer.classifier = classifier
    text = "someone stole my phone on the train last night"
    fit = float(classifier.in_scope_fit(classifier.cosines([text]))[0])
    classifier.info = dataclasses.replace(classifier.info, threshold_on="cosine",
                                          threshold=fit - 0.01)
    assert recognizer.understand(text).intent == "lost_or_stolen_device"
    classifier.info = dataclasses.replace(classifier.info, threshold=fit + 0.01)
    outside = recognizer.understand(text)
    assert (outside.intent, outside.candidates) == ("out_of_scope", {"out_of_scope": 1.0})
