"""Task data for training: the dataset folder format, the domain pack as data, balancing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nlu.domain import load_domain
from training.task_examples import (
    DataError,
    TurnExample,
    balanced,
    catalogue_only,
    description_examples,
    general_turns,
    spoken_variants,
    turn_examples,
    turns_file,
    written_apart,
)
from voicedesk.errors import ConfigError


def dataset(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_dataset_turns_are_read_with_slots_and_reply(tmp_path: Path) -> None:
    folder = dataset(tmp_path / "d", [
        {"id": "1", "call_id": "c", "source": "call", "text": "my account is 40019012",
         "intent": "check_balance", "slots": {"account_number": "40019012"}, "reply": None}])
    [turn] = turn_examples(folder, "train")
    assert (turn.text, turn.intent, turn.slots, turn.reply) == (
        "my account is 40019012", "check_balance", {"account_number": "40019012"}, None)


def test_a_turn_without_an_intent_is_an_error_naming_the_line(tmp_path: Path) -> None:
    folder = dataset(tmp_path / "d", [{"text": "hello", "intent": "goodbye"},
                                      {"text": "what", "intent": ""}])
    with pytest.raises(DataError, match=r"train\.jsonl:2: every turn needs"):
        turn_examples(folder, "train")


def test_a_folder_without_a_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no manifest.json"):
        turn_examples(tmp_path, "train")


def test_other_label_spaces_are_left_out_and_oos_is_out_of_scope() -> None:
    domain = load_domain("telecom")
    said: list[str] = []
    kept = catalogue_only([TurnExample("book a flight", "oos"),
                           TurnExample("card not arrived", "card_arrival"),
                           TurnExample("my internet is down", "report_outage")], domain,
                          said.append)
    assert [(e.text, e.intent) for e in kept] == [("book a flight", "out_of_scope"),
                                                  ("my internet is down", "report_outage")]
    assert "left out 1 of 3 turns" in said[0]


def test_a_mapped_corpus_is_read_through_the_packs_mapping_only() -> None:
    domain = load_domain("telecom")
    kept = catalogue_only([TurnExample("how do I change my car's oil", "oil_change_how",
                                       source="clinc150"),
                           TurnExample("pay my water bill", "pay_bill", source="clinc150"),
                           TurnExample("thanks, that's all", "thank_you", source="clinc150"),
                           TurnExample("pay my bill", "pay_bill", source="calls")], domain)
    # CLINC150's pay_bill shares our name but not our meaning (a utility bill): left out.
    assert [(e.text, e.intent) for e in kept] == [
        ("how do I change my car's oil", "out_of_scope"), ("thanks, that's all", "goodbye"),
        ("pay my bill", "pay_bill")]


def test_general_turns_come_from_a_corpus_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nlu" / "clinc150"
    folder.mkdir(parents=True)
    (folder / "data_full.json").write_text(json.dumps({
        "train": [["book a hotel in rome", "book_hotel"], ["pay my gas bill", "pay_bill"],
                  ["bye now", "goodbye"]],
        "test": [["find me a flight", "book_flight"]],
        "oos_train": [["how tall is everest", "oos"]]}))
    said: list[str] = []
    turns = general_turns(tmp_path, ("clinc150",), load_domain("telecom"), "train", said.append)
    assert sorted((t.text, t.intent, t.source) for t in turns) == [
        ("book a hotel in rome", "out_of_scope", "clinc150"),
        ("bye now", "goodbye", "clinc150"),
        ("how tall is everest", "out_of_scope", "clinc150")]
    assert "3 of 4 rows map" in said[0] and "out_of_scope 2" in said[0]


def test_a_general_label_mapped_to_an_unknown_intent_is_refused(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(load_domain("telecom").knowledge_dir.parent, pack)
    (pack / "general_labels.yaml").write_text(
        "general_labels:\n  clinc150:\n    recipe: cooking_advice\n")
    with pytest.raises(ConfigError, match="recipe.*cooking_advice.*not an intent"):
        load_domain(str(pack))


def test_descriptions_become_caller_sentences() -> None:
    by_intent = {e.intent: e.text for e in description_examples(load_domain("telecom"))}
    assert by_intent["cancel_service"] == "I want to cancel my contract, service or account"
    assert "out_of_scope" not in by_intent  # not said by a caller


def test_balancing_repeats_rarer_intents_up_to_the_commonest() -> None:
    examples = [TurnExample(f"a{i}", "a") for i in range(3)] + [TurnExample("b", "b")]
    counts: dict[str, int] = {}
    for e in balanced(examples):
        counts[e.intent] = counts.get(e.intent, 0) + 1
    assert counts == {"a": 3, "b": 3}


def test_a_huge_catch_all_intent_is_sampled_down_keeping_the_packs_examples() -> None:
    examples = ([TurnExample(f"a{i}", "a") for i in range(4)]
                + [TurnExample(f"b{i}", "b") for i in range(3)]
                + [TurnExample(f"pack{i}", "out_of_scope", source="domain:telecom")
                   for i in range(2)]
                + [TurnExample(f"clinc{i}", "out_of_scope", source="clinc150")
                   for i in range(500)])
    out = balanced(examples)
    counts: dict[str, int] = {}
    for e in out:
        counts[e.intent] = counts.get(e.intent, 0) + 1
    # Median 4, so out_of_scope keeps 8 and the others are repeated to 4, not to 500.
    assert counts == {"a": 4, "b": 4, "out_of_scope": 8}
    kept = [e.text for e in out if e.intent == "out_of_scope"]
    assert {"pack0", "pack1"} <= set(kept)


def test_spoken_variants_look_like_transcripts() -> None:
    texts = [v.text for v in spoken_variants(TurnExample("What's my balance?", "check_balance"))]
    assert texts[0] == "What's my balance?" and texts[1] == "what's my balance"
    assert texts[2].endswith("what's my balance") and len(texts) == 3


TELECOM_TURNS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "telecom_turns.yaml"


def test_the_written_apart_test_set_covers_every_intent_of_the_pack() -> None:
    domain = load_domain("telecom")
    turns = turns_file(TELECOM_TURNS, domain)
    per_intent: dict[str, int] = {}
    for turn in turns:
        per_intent[turn.intent] = per_intent.get(turn.intent, 0) + 1
    assert set(per_intent) == set(domain.intents)
    assert min(per_intent.values()) >= 10
    assert len({t.text.lower() for t in turns}) == len(turns)


def test_a_turns_file_with_an_unknown_intent_names_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "turns.yaml"
    path.write_text("turns:\n  - text: pay my bill\n    intent: pay_bill\n"
                    "  - text: book me a flight\n    intent: travel\n")
    with pytest.raises(DataError, match="turn 2 has intent 'travel'"):
        turns_file(path, load_domain("telecom"))


def test_a_turns_file_without_turns_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "turns.yaml"
    path.write_text("examples: []\n")
    with pytest.raises(DataError, match="non-empty list under 'turns:'"):
        turns_file(path, load_domain("telecom"))


def test_turns_the_pack_already_has_are_not_held_out(tmp_path: Path) -> None:
    domain = load_domain("telecom")
    path = tmp_path / "turns.yaml"
    path.write_text(f"turns:\n  - text: {domain.intents['pay_bill'].examples[0].upper()}\n"
                    "    intent: pay_bill\n  - text: put it all on my card\n    intent: pay_bill\n")
    said: list[str] = []
    kept = written_apart(path, domain, said.append)
    assert [t.text for t in kept] == ["put it all on my card"]
    assert "1 of 2 turns are also pack examples" in said[0]


def test_a_missing_or_malformed_turns_file_says_which_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.yaml: cannot read the turns file"):
        turns_file(tmp_path / "missing.yaml", load_domain("telecom"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("turns:\n  - text: [unclosed\n")
    with pytest.raises(DataError, match="broken.yaml: cannot read the turns file"):
        turns_file(broken, load_domain("telecom"))
