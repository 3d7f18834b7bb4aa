"""Each speech stage on real audio: Whisper, the endpointer, Piper, and a round trip."""

from pathlib import Path

import numpy as np

from asr.audio import load_audio, resample
from tests.conftest import EXAMPLES, JFK, wer, words
from voice.vad import split_turns
from voicedesk.config import VadConfig


def test_whisper_transcribes_the_jfk_excerpt(assistant) -> None:
    text = assistant.transcriber.transcribe(load_audio(JFK).samples).text
    assert "ask not what your country can do for you" in " ".join(words(text))


def test_whisper_invents_nothing_on_silence(assistant) -> None:
    assert assistant.transcriber.transcribe(np.zeros(48_000, dtype=np.float32)).text == ""


def test_word_times_lie_inside_the_audio(assistant) -> None:
    audio = load_audio(JFK)
    transcript = assistant.transcriber.transcribe(audio.samples)
    assert transcript.words
    assert all(0 <= w.start <= w.end <= audio.duration + 0.1 for w in transcript.words)
    assert 0.5 < transcript.confidence <= 1.0


def test_endpointer_finds_each_turn_of_an_example_call() -> None:
    audio = load_audio(EXAMPLES / "outage_report.flac")
    expected = len((EXAMPLES / "outage_report.txt").read_text().strip().splitlines())
    spans = split_turns(audio, VadConfig())
    assert len(spans) == expected
    assert all(s.start < s.end <= s.endpoint for s in spans)


def test_endpointer_ignores_silence_and_a_short_click() -> None:
    silent = np.zeros(16_000 * 3, dtype=np.float32)
    clicked = silent.copy()
    clicked[16_000:16_000 + 80] = 0.8
    from asr.audio import Audio

    assert split_turns(Audio(silent, 16_000), VadConfig()) == []
    assert split_turns(Audio(clicked, 16_000), VadConfig()) == []


def test_speech_synthesised_by_piper_transcribes_back_to_its_text(assistant) -> None:
    text = "Your internet should be back within two hours. Is there anything else I can do?"
    tts = assistant.synthesizer
    audio = np.concatenate(list(tts.synthesize(text)))
    assert len(audio) / tts.sample_rate > 2.0
    heard = assistant.transcriber.transcribe(resample(audio, tts.sample_rate, 16_000)).text
    assert wer(text, heard) < 0.15, heard


def test_examples_have_a_reference_for_every_recording() -> None:
    recordings = sorted(p.stem for p in EXAMPLES.glob("*.flac"))
    assert len(recordings) >= 3
    for name in recordings:
        assert (EXAMPLES / f"{name}.txt").read_text().strip(), name
        assert Path(EXAMPLES / f"{name}.flac").stat().st_size > 10_000


def test_words_decide_whether_a_turn_sounds_finished() -> None:
    from voice.listening import sounds_finished

    assert sounds_finished("What plans do you have?") is True
    assert sounds_finished("My account number is") is False
    assert sounds_finished("") is None
    # Digits end a turn once there are as many as the assistant asked for, and not
    # before (the caller reads on); more, or when nobody asked, are unclear.
    assert sounds_finished("four zero zero one, one two three four.", 8) is True
    assert sounds_finished("It's 4001-1234", 8) is True
    assert sounds_finished("four zero zero one.", 8) is False
    assert sounds_finished("9, 0, 1.") is None
    assert sounds_finished("My PIN is 2468.", 4) is True
    assert sounds_finished("It's for 0, 0, 1, 9, 0, 1, 2.", 8) is True  # "for": four
    assert sounds_finished("It's 40019012 and I was born in 19", 8) is None
    # More digits than asked for: done when every number is a whole one of the digits
    # slots' lengths, the last too (account number and PIN in one breath)
    both = "4, 0, 0, 1, 1, 2, 3, 4, PIN 4, 8, 2, 1."
    assert sounds_finished(both, 8) is None  # lengths unknown: unclear, as before
    assert sounds_finished(both, 8, {4, 8}) is True
    assert sounds_finished("40011234 and my PIN is 4 8", 8, {4, 8}) is None  # PIN half read
    assert sounds_finished("It's 40019012 and I was born in 19", 8, {4, 8}) is None
    assert sounds_finished("40011234 and my PIN is", 8, {4, 8}) is False


def test_an_expected_answer_has_the_lengths_asked_for_and_enough_digits() -> None:
    from voice.listening import expected_answer

    assert expected_answer(0, frozenset({4, 8}), "My PIN is 5, 8, 6, 0.") is None
    assert expected_answer(8, frozenset(), "hint") is None  # a slot of any length
    account = expected_answer(8, frozenset({4, 8}), "My account number is 4, 0, 0, 7, ...")
    assert account is not None and account.prompt.startswith("My account number")
    assert account.fits("It's 4, 0, 0, 1, 9, 0, 1, 2.")
    assert account.fits("40019012 and my PIN is 2468")  # both in one breath
    assert not account.fits("It's for Mirror, Mirror, One, Nine, Mirror, One, Two.")
    assert not account.fits("It's 4, 0, 0, 1.")  # a group, and the caller goes on
    assert not account.fits("4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,")  # a loop
    pin = expected_answer(4, frozenset({4, 8}), "My PIN is 5, 8, 6, 0.")
    assert pin is not None and pin.fits("2, 4, 6, 8.") and not pin.fits("Two four.")
    # what a beam search may yet mend: a digit or two short, or a loop; not a first group
    assert account.near is not None and pin.near is not None
    assert account.near("It's 4, 0, 1, 9, 0, 1, 2.") and account.near("4, 0, 1, 9, 0, 2.")
    assert account.near("4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,")
    assert not account.near("It's 4, 0, 0, 1.") and not account.near("It's for Mirror.")
    assert pin.near("2, 4.") and not pin.near("Two.")


def _listening_ctx(config, **fields):
    from types import SimpleNamespace

    from voice.echo import ReferenceTrack

    values = dict(config=config, reference=ReferenceTrack(), interrupted=False,
                  transport=SimpleNamespace(pending_s=0.0), latest_partial="",
                  latest_partial_t=0.0, expected_digits=0, digit_lengths=frozenset(),
                  pause_pass_pending=False,
                  speaking=lambda: False)
    return SimpleNamespace(**{**values, **fields})


def _turn_ends(ctx, audio: np.ndarray, hangup: bool = True):
    """What Listening pushes as TurnEnded for this audio (and a hangup after it)."""
    import asyncio

    from voice.frames import CallerAudio16k, Hangup, TurnEnded
    from voice.listening import Listening

    async def run() -> list[TurnEnded]:
        stage = Listening(ctx)
        pushed: list[object] = []

        async def keep(frame: object) -> None:
            pushed.append(frame)

        stage.push = stage.broadcast = keep  # type: ignore[method-assign]
        await stage.process(CallerAudio16k(audio, 0.0, False))
        if hangup:
            await stage.process(Hangup(len(audio) / 16_000))
        return [f for f in pushed if isinstance(f, TurnEnded)]

    return asyncio.run(run())


def test_a_stale_partial_waits_for_the_pause_pass_on_its_way(config) -> None:
    from tests.test_live_call import say

    lead = np.zeros(8_000, dtype=np.float32)  # the line's noise floor is learnt first
    speech = say("I would like to check my bill")
    quiet = np.zeros(int(1.2 * 16_000), dtype=np.float32)  # past the 700 ms default
    audio = np.concatenate([lead, speech, quiet])
    # The latest partial heard only the start of the turn: it says nothing about the end.
    stale = dict(latest_partial="I would like to", latest_partial_t=0.5)
    waiting = _turn_ends(_listening_ctx(config, pause_pass_pending=True, **stale), audio,
                         hangup=False)
    assert waiting == []  # the pass over the pause will tell
    ended = _turn_ends(_listening_ctx(config, **stale), audio, hangup=False)
    assert len(ended) == 1  # no pass coming: the default wait, not the 2 s of "to"
    assert ended[0].t - ended[0].speech_end < 1.0


def test_a_hangup_ends_the_turn_in_progress_and_no_other(config) -> None:
    from tests.test_live_call import say

    def ends(audio: np.ndarray):
        return _turn_ends(_listening_ctx(config), audio)

    silence = np.zeros(16_000, dtype=np.float32)
    speech = np.concatenate([silence, say("Hello, I need help with my bill")])
    assert ends(silence) == []  # nobody spoke: no turn to end
    assert len(ends(speech)) == 1  # hung up mid-sentence: that turn ends
