"""Knowledge answers: found where the pack says it, admitted unknown where it does not."""

from __future__ import annotations

import pytest

from nlu.knowledge import KnowledgeBase


@pytest.mark.parametrize(("question", "source", "fact"), [
    # a sentence that answers only under its section's title
    ("Do you charge if an engineer comes out?", "troubleshooting.md#Engineer visits", "free"),
    ("Is there a fee for a technician visit?", "troubleshooting.md#Engineer visits", "$60"),
    # and one that is closer on its own than under its title
    ("My wifi keeps dropping, what can I do?",
     "troubleshooting.md#Slow internet or Wi-Fi dropping out", "Restart the router"),
    # one a section's own "? ..." question all but says
    ("How do I reset my router?", "troubleshooting.md#No internet at home", "30 seconds"),
    ("Is Mexico in your travel zone?", "roaming.md#Travel Zone", "Mexico"),
    # a title naming the question's words is no answer when a sentence answers it alone
    ("Does my phone work abroad, what's the travel zone?", "roaming.md#Travel Zone",
     "European Union"),
    ("What does it cost to call Germany from home?", "roaming.md#International calls from home",
     "10 cents"),
    # a word one passage alone uses, where the embedder scores every sentence low
    ("does my Everyday 20 allowance work in Canada?", "roaming.md#Travel Zone", "Canada"),
    ("who is the ombudsman and when can I go to them", "stores_and_policies.md#Complaints",
     "ombudsman"),
    ("what's a PAC and how do I get one",
     "stores_and_policies.md#Moving your number to us (porting)", "porting code"),
    # a country the question names picks the section that names it ...
    ("I'm off to Spain next week, will my phone cost me extra over there?",
     "roaming.md#Travel Zone", "no extra cost"),
    # ... unless the question is about something else
    ("What's the rate for ringing a mobile number in India from here at home?",
     "roaming.md#International calls from home", "25 cents"),
    # a price question gets the section's sentence that states a price
    ("And will my plan work in France next week, is that extra?", "roaming.md#Travel Zone",
     "no extra cost"),
])
def test_questions_find_the_section_that_answers_them(assistant, question: str, source: str,
                                                      fact: str) -> None:
    kb: KnowledgeBase = assistant.knowledge
    answer = kb.answer(question)
    assert answer is not None and answer.source == source, answer
    assert fact in answer.text


@pytest.mark.parametrize("question", [
    "Do you offer a student discount?", "What's the capital of Peru?",
    "What's the weather like tomorrow?", "How do I get to the airport?",
    "Do you charge extra for sending paper bills by post?",  # no section states that price
    # a word of the pack's, in a question far from what the pack says
    "what's the weather in Canada", "can you recommend a restaurant in Mexico City",
])
def test_what_the_pack_does_not_say_is_not_answered(assistant, question: str) -> None:
    assert assistant.knowledge.answer(question) is None


def test_a_question_asked_twice_in_a_turn_is_embedded_once(assistant, monkeypatch) -> None:
    """The dialogue asks whether a doubted turn is answerable, then answers it."""
    kb: KnowledgeBase = assistant.knowledge
    embedded: list[list[str]] = []
    embed = kb.embedder.embed
    monkeypatch.setattr(kb.embedder, "embed", lambda texts: embedded.append(texts) or embed(texts))
    first = kb.answer("Is Canada in the travel zone for my phone?")
    assert kb.answer("Is Canada in the travel zone for my phone?") == first
    assert embedded == [["Is Canada in the travel zone for my phone?"]]


def test_a_sections_questions_are_read_apart_from_its_answer(tmp_path) -> None:
    from nlu.knowledge import read_passages
    (tmp_path / "shop.md").write_text(
        "## Opening hours\nWe open at nine. We close at five.\n\n"
        "? When do you open?\n? When do you close? [close at five]\n")
    passage, = read_passages(tmp_path)
    assert passage.sentences == ("We open at nine.", "We close at five.")
    assert passage.questions == ("When do you open?", "When do you close?")
    assert passage.anchors == ("", "close at five")


def test_a_question_close_to_a_sections_own_gets_the_sentence_it_names(assistant) -> None:
    answer = assistant.knowledge.answer("Is there a monthly download limit on your fibre?")
    assert answer is not None and answer.source == "plans_and_prices.md#Broadband plans"
    assert "no data cap" in answer.text


def test_other_names_for_a_place_are_read_as_the_packs(assistant) -> None:
    from nlu.knowledge import Aliases
    aliases = Aliases({"United States": ["US", "the States"]})
    assert aliases.apply("what about the US? tell us") == "what about the United States? tell us"
    answer = assistant.knowledge.answer("What does it cost to use my phone in the States?")
    assert answer is not None and answer.source == "roaming.md#Outside the Travel Zone"


@pytest.mark.parametrize("text", ["- US\n- USA\n", "United States: US\n",
                                  "United States: [US\n"])
def test_a_malformed_aliases_file_is_a_configuration_error_naming_it(tmp_path, text) -> None:
    from nlu.knowledge import Aliases
    from voicedesk.errors import ConfigError
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="aliases.yaml"):
        Aliases.read(path)
    assert Aliases.read(tmp_path / "absent.yaml").apply("the US") == "the US"


@pytest.mark.parametrize(("question", "plan", "others"), [
    ("How much is the Family Share plan?", "Family Share costs $80", ["Everyday 20"]),
    ("Is the Unlimited 5G one really unlimited, or do you slow people down at some point?",
     "300 GB", ["Basic Talk", "Everyday 20"]),
    ("How much is the Fibre 500 a month?", "$50", ["Fibre 100 ", "Fibre 1000"]),
])
def test_a_question_about_one_plan_is_not_told_about_the_others(assistant, question, plan,
                                                                 others) -> None:
    answer = assistant.knowledge.answer(question)
    assert answer is not None and plan in answer.text
    assert not any(other in answer.text for other in others), answer.text


def test_sentences_know_the_plan_of_their_line(tmp_path) -> None:
    from nlu.knowledge import read_passages
    (tmp_path / "plans.md").write_text(
        "## Plans\n- **Basic** costs $5. Roaming is not included.\n- **Fibre 10** costs $9.\n"
        "- **Fibre 100** costs $20.\nAll plans are monthly.\n")
    passage, = read_passages(tmp_path)
    assert [sorted(s) for s in passage.subjects] == [["Basic"], ["Basic"], ["Fibre 10"],
                                                     ["Fibre 100"], []]


def test_a_follow_up_is_read_with_the_question_before_it(assistant) -> None:
    kb: KnowledgeBase = assistant.knowledge
    assert kb.answer("and how many people can be on it?") is None
    answer = kb.answer("and how many people can be on it?", "How much is Family Share?")
    assert answer is not None and "four lines" in answer.text
