"""Personal data in transcripts: found by kind, replaced by placeholders, counted, never kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.data.digits import luhn_valid
from training.data.pci import scrub_turn
from training.data.pii import RedactionPolicy, find_pii, redact_text
from training.data.redact import RedactionReport
from training.data.silence import redact_words, silence
from voicedesk.errors import VoicedeskError

VISA = "4539148803436467"  # a Luhn-valid test number
NOT_A_CARD = "1234567890123456"  # 16 digits, fails the Luhn check


def test_luhn_accepts_real_test_cards_and_rejects_a_wrong_digit() -> None:
    assert luhn_valid(VISA) and luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid(NOT_A_CARD)
    assert not luhn_valid(VISA[:-1] + "8")


@pytest.mark.parametrize("said", [
    f"my card number is {VISA}",
    "my card number is 4539 1488 0343 6467, expiry 12 25",
    "card 4539-1488-0343-6467 please",
    "my card is 4,539,148,803,436,467.",  # how Whisper writes a long number
    "my card is four five three nine one four eight eight oh three four three six four six "
    "seven thanks",
    "it's forty five thirty nine, fourteen eighty eight, zero three four three, six four six "
    "seven",
])
def test_a_valid_card_number_is_redacted_however_it_is_written(said: str) -> None:
    result = redact_text(said)
    assert result.counts == {"card_number": 1}
    assert "[CARD_NUMBER]" in result.text
    digits = "".join(c for c in result.text if c.isdigit())
    assert "4539" not in digits and "6467" not in digits


def test_an_invalid_sixteen_digit_number_is_not_treated_as_a_card() -> None:
    for said in (f"the order reference is {NOT_A_CARD}", "reference 1234 5678 9012 3456"):
        assert "card_number" not in redact_text(said).counts
        assert "1234" in redact_text(said).text


def test_a_misheard_card_after_card_words_is_still_treated_as_a_card() -> None:
    # One digit wrong (ASR), so the Luhn check fails; the caller still said a card number.
    result = redact_text("my card number is 4539 1488 0343 6468")
    assert result.text == "my card number is [CARD_NUMBER]"
    assert "card_number" not in redact_text("my account reference is 4539 1488 0343 6468").counts


def test_a_card_that_asr_repeats_past_the_context_window_goes_whole() -> None:
    # Whisper sometimes loops on the last digit group of a read-out card.
    said = "I want to pay with my card, number is 4111 1111 1111 1111" + " -1" * 40 + ". Thanks"
    result = redact_text(said)
    assert result.text == "I want to pay with my card, number is [CARD_NUMBER]. Thanks"


def test_a_card_whisper_writes_as_dotted_digits_goes_whole_and_amounts_stay() -> None:
    # A read-out card that Whisper wrote digit by digit with dots, looping, then a stray word.
    said = "with my card Number is " + ".".join("4" + "1" * 37 + "0111") + ".I."
    assert redact_text(said).text == "with my card Number is [CARD_NUMBER].I."
    assert redact_text("pay " + ".".join(VISA.replace(" ", "")) + " now").counts == {
        "card_number": 1}
    kept = "the bill is 42.50 for 18.2 GB on plan 4.1"
    assert redact_text(kept).text == kept


@pytest.mark.parametrize(("said", "kept"), [
    ("pay with my cards. Number is 41-101-101-One-one-one-one-one... one one one one",
     "pay with my cards. Number is [CARD_NUMBER]"),
    ("pay my bill with my card, number is 4OSE", "pay my bill with my card, number is "
     "[CARD_NUMBER]"),
    ("with my card. number is 4-1-1-1 I like the", "with my card. number is [CARD_NUMBER]"),
    ("my card on the number is 4-1-1-1-1-1-1-1-1- EN 1-1-1", "my card on the number is "
     "[CARD_NUMBER]"),
    ("my card. The number is familiarity. Thanks.", "my card. The number is [CARD_NUMBER]. "
     "Thanks."),
    ("with my card, Remember is 4h1h1h1 1h1h1h1h1h1 1h1h", "with my card, Remember is "
     "[CARD_NUMBER]"),
])
def test_a_card_asr_garbled_past_recognition_still_goes(said: str, kept: str) -> None:
    """Whisper's ways of losing a read-out card (tiny.en on espeak-ng, sampled)."""
    assert redact_text(said).text == kept


def test_card_words_near_other_numbers_do_not_take_them() -> None:
    assert redact_text("I lost my card, my phone number is 555 123 4567").counts == {
        "phone_number": 1}
    assert redact_text("twenty-one days on a one-on-one plan").text == \
        "twenty-one days on a one-on-one plan"


def test_card_security_code_counts_as_card_data() -> None:
    assert redact_text("and the cvv is 123").text == "and the cvv is [CARD_NUMBER]"


@pytest.mark.parametrize(("said", "kind", "kept"), [
    ("My phone number is 0770-0900123.", "phone_number", "My phone number is"),
    ("call me back on +44 20 7946 0958 please", "phone_number", "please"),
    ("my email is john.smith@example.com ok", "email", "ok"),
    ("my email address is john at example dot com", "email", "my email address is"),
    ("My email address is john and example.com.", "email", "address is"),  # Whisper's
    ("my account number is 4001 1234 thanks", "account_number", "thanks"),
    ("my pin is four eight two one", "pin", "my pin is"),
    ("I was born on the ninth of March nineteen eighty four and I live here",
     "date_of_birth", "and I live here"),
    ("date of birth 09/03/1984", "date_of_birth", "date of birth"),
])
def test_each_kind_of_personal_data_is_found(said: str, kind: str, kept: str) -> None:
    result = redact_text(said)
    assert result.counts == {kind: 1}
    assert f"[{kind.upper()}]" in result.text
    assert kept in result.text


def test_ordinary_numbers_are_left_alone() -> None:
    said = "I paid 42.50 dollars on 12/03/2025 and want to pay for it at 10 am, plan 5G"
    assert find_pii(said) == []
    assert redact_text(said).text == said


def test_several_kinds_in_one_turn_are_counted_separately() -> None:
    result = redact_text("It's 40011234, pin 4821, and mail me at ann@example.org")
    assert result.counts == {"account_number": 1, "pin": 1, "email": 1}
    assert result.text == "It's [ACCOUNT_NUMBER], pin [PIN], and mail me at [EMAIL]"


def test_policy_can_limit_kinds_but_never_drops_card_numbers() -> None:
    policy = RedactionPolicy.only("email")
    result = redact_text(f"email a@b.com, pin 4821, card {VISA}", policy)
    assert result.counts == {"email": 1, "card_number": 1}
    assert "4821" in result.text
    with pytest.raises(VoicedeskError, match="unknown PII kind"):
        RedactionPolicy.only("email,passport")


def test_report_holds_counts_and_never_a_value() -> None:
    report = RedactionReport()
    for said in (f"card {VISA}", "pin 4821", "mail ann@example.org", "pin 9999"):
        result = redact_text(said)
        report.add(result.counts)
    text = json.dumps(report.to_json())
    assert report.to_json()["counts"] == {"card_number": 1, "email": 1, "pin": 2}
    for value in (VISA, "4821", "9999", "ann@example.org", "example"):
        assert value not in text


WORDS = [{"word": w, "start": i * 0.5, "end": i * 0.5 + 0.4, "probability": 0.9}
         for i, w in enumerate(["my", "pin", "is", "4821.", "thanks"])]


def test_redacted_words_become_one_placeholder_word_with_their_time() -> None:
    result = redact_words(WORDS, RedactionPolicy(audio_padding_s=0.0))
    assert [w["word"] for w in result.words] == ["my", "pin", "is", "[PIN]", "thanks"]
    assert result.words[3]["start"] == 1.5 and result.words[3]["end"] == 1.9
    assert result.ranges == [(1.5, 1.9)]
    assert result.counts == {"pin": 1}


def test_silence_zeroes_exactly_the_range() -> None:
    rng = np.random.default_rng(0)
    samples = rng.uniform(-0.5, 0.5, 16_000).astype(np.float32)
    out = silence(samples, 16_000, [(0.25, 0.5)])
    assert not out[4000:8000].any()
    assert np.array_equal(out[:4000], samples[:4000]) and np.array_equal(out[8000:],
                                                                         samples[8000:])


def test_pci_scrub_silences_the_whole_turn_when_words_cannot_place_the_card() -> None:
    samples = np.full(8000, 0.25, dtype=np.float32)
    scrubbed = scrub_turn(f"my card is {VISA}", [], "noted", samples, 16_000)
    assert scrubbed.whole_turn_silenced and not scrubbed.samples.any()
    assert scrubbed.counts == {"card_number": 1}
    assert VISA not in scrubbed.transcript


def test_pci_scrub_leaves_turns_without_cards_untouched() -> None:
    samples = np.full(8000, 0.25, dtype=np.float32)
    scrubbed = scrub_turn("my pin is 4821", WORDS, "your pin is 4821", samples, 16_000)
    assert not scrubbed.changed
    assert scrubbed.transcript == "my pin is 4821" and np.array_equal(scrubbed.samples, samples)


@pytest.mark.parametrize("said", [
    "I want to pay my bill with my cut. The number is 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.",
    "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.",  # the card's digits heard as a turn of their own
    "it's four five three nine one four eight eight oh three four three",
])
def test_a_long_number_nothing_else_claims_is_taken_for_a_misheard_card(said: str) -> None:
    result = redact_text(said)
    assert result.counts == {"card_number": 1}, result.text
    assert not any(c.isdigit() for c in result.text)


def test_long_numbers_that_say_what_they_are_keep_their_kind() -> None:
    assert redact_text("my phone number is 0044 7700 900 123").counts == {"phone_number": 1}
    assert redact_text("call me on +44 7700 900 123 4").counts == {"phone_number": 1}
    assert redact_text("the order reference is 1234 5678 9012 3456").counts == {}


def test_an_account_number_and_pin_given_when_asked_are_not_taken_for_a_card() -> None:
    samples = np.full(8000, 0.25, dtype=np.float32)
    said = "It's 4001 1234 4821."  # twelve digits: account number and PIN in one breath
    asked = scrub_turn(said, [], "", samples, 16_000, digits_asked=True)
    assert not asked.changed and asked.transcript == said
    unasked = scrub_turn(said, [], "", samples, 16_000)
    assert unasked.counts == {"card_number": 1} and "4001" not in unasked.transcript
