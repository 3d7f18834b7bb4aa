"""The LLM engines on the same weights, constrained choice, and intents from the catalogue."""

import shutil
from pathlib import Path

import pytest

from nlu.domain import load_domain
from nlu.llm.engine import GenerationOptions, choose
from voice.sentences import SentenceChunker, split_sentences
from voicedesk.config import LlmConfig
from voicedesk.models.prepare import ModelStore

REQUIRED_INTENTS = {
    "check_balance", "pay_bill", "billing_dispute", "data_usage", "change_plan", "roaming",
    "report_outage", "slow_internet", "sim_replacement", "lost_or_stolen_device", "port_number",
    "cancel_service", "technician_appointment", "ticket_status", "update_contact_details",
    "new_connection", "complaint", "speak_to_agent", "goodbye", "out_of_scope",
}
MESSAGES = [{"role": "system", "content": "You are a helpful phone agent."},
            {"role": "user", "content": "My internet is down."}]


@pytest.fixture(scope="module")
def transformers_engine(models_dir):
    from nlu.llm.transformers_engine import TransformersEngine

    return TransformersEngine(ModelStore(models_dir).llm_hf("smollm2-135m-instruct"), LlmConfig())


def test_catalogue_holds_every_required_intent() -> None:
    assert set(load_domain("telecom").intents) >= REQUIRED_INTENTS


def test_ctranslate2_streams_a_reply_in_pieces(assistant) -> None:
    pieces = list(assistant.llm.stream(MESSAGES, GenerationOptions(max_new_tokens=24)))
    assert len(pieces) > 3 and "".join(pieces).strip()


def test_transformers_streams_a_reply_in_pieces(transformers_engine) -> None:
    pieces = list(transformers_engine.stream(MESSAGES, GenerationOptions(max_new_tokens=16)))
    assert len(pieces) > 3 and "".join(pieces).strip()


def test_both_engines_score_the_same_weights_alike(assistant, transformers_engine) -> None:
    prompt = "Caller: I want to talk to a real person.\nIntent:"
    options = [" speak_to_agent", " pay_bill", " goodbye", " roaming"]
    int8 = assistant.llm.score(prompt, options)
    fp32 = transformers_engine.score(prompt, options)
    assert sorted(options, key=dict(zip(options, int8, strict=True)).get) == sorted(
        options, key=dict(zip(options, fp32, strict=True)).get)
    assert max(abs(a - b) for a, b in zip(int8, fp32, strict=True)) < 1.5


def test_choose_scores_first_tokens_and_tells_shared_prefixes_apart(assistant) -> None:
    llm = assistant.llm
    prompt = "Caller: my mobile has no signal at all\nIntent:"
    options = [" report_outage", " roaming", " speak_to_agent", " speak_up"]
    assert llm.encode(options[2])[0] == llm.encode(options[3])[0]  # share " speak"
    fast = choose(llm, prompt, options)
    for option, got in zip(options[:2], fast[:2], strict=True):
        first = llm.tokenizer.decode(llm.encode(option)[:1])
        assert got == pytest.approx(llm.score(prompt, [first])[0], abs=1e-3)
    assert fast[2:] == pytest.approx(llm.score(prompt, options[2:]), abs=1e-3)


@pytest.mark.parametrize(
    ("utterance", "intent"),
    [
        ("Hi, my internet has been down since this morning.", "report_outage"),
        ("I want to talk to a real person, not a machine.", "speak_to_agent"),
        ("Why is my bill so much higher this month?", "billing_dispute"),
        ("That's everything, thanks a lot, goodbye.", "goodbye"),
    ],
)
def test_clear_requests_get_their_intent(assistant, utterance: str, intent: str) -> None:
    result = assistant.recognizer.understand(utterance)
    assert result.intent == intent
    assert result.intent in REQUIRED_INTENTS and 0 < result.confidence <= 1


def test_chunker_releases_whole_sentences() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Sorry to hear ") == []
    assert chunker.push("that. Let me che") == ["Sorry to hear that."]
    assert chunker.push("ck! Done") == ["Let me check!"]
    assert chunker.flush() == "Done"


def test_split_sentences_keeps_a_final_fragment() -> None:
    assert split_sentences("Done. Your ticket is TKT-000001") == ["Done.",
                                                                "Your ticket is TKT-000001"]


@pytest.mark.parametrize(("orders", "message"), [
    ("work_orders:\n  complaint: {called: complaint}\n", "called must be a list"),
    ("work_orders:\n  complaint: {follow_up: [a, b]}\n", "follow_up must be a sentence"),
    ("work_orders:\n  complaint: high\n", "must be a mapping"),
    ("work_orders: [complaint]\n", "map each type"),
])
def test_a_malformed_work_order_file_is_a_configuration_error(tmp_path: Path, orders: str,
                                                              message: str) -> None:
    from voicedesk.errors import ConfigError
    pack = tmp_path / "telecom"
    shutil.copytree(Path(__file__).resolve().parent.parent / "nlu" / "domain" / "telecom", pack)
    (pack / "work_orders.yaml").write_text(orders)
    with pytest.raises(ConfigError, match=message):
        load_domain(str(pack))
