"""Telephone audio: G.711 bit-exact with the ITU tables and audioop, 8 kHz lines, stereo calls."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.telephony import (
    ALAW_TO_LINEAR,
    ULAW_TO_LINEAR,
    CallRecording,
    alaw_decode,
    alaw_encode,
    g711_decode,
    g711_encode,
    narrowband_to_speech,
    speaker_labels,
    ulaw_decode,
    ulaw_encode,
)
from tests.conftest import JFK, SHARED_DATA, wer
from voicedesk.errors import AudioError

ALL_CODES = np.arange(256, dtype=np.uint8)
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
LIBRI = SHARED_DATA / "asr" / "dev" / "librispeech_kw"


def _audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop", reason="audioop left the standard library in 3.13")


def test_mu_law_decodes_to_the_g711_table_values() -> None:
    # ITU-T G.711 table 2 on the 16-bit scale: 0x00/0x80 are the extremes, 0xFF/0x7F zero.
    assert ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F, 0x7E, 0xFE, 0x0F, 0x8F])).tolist() == [
        -32124, 32124, 0, 0, -8, 8, -16764, 16764]


def test_a_law_decodes_to_the_g711_table_values() -> None:
    # ITU-T G.711 table 1: even bits inverted, 0xD5/0x55 the smallest steps, 0xAA/0x2A the largest.
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A, 0x80, 0x00])).tolist() == [
        8, -8, 32256, -32256, 5504, -5504]


def test_both_tables_are_odd_symmetric_and_monotonic_per_sign() -> None:
    for table in (ULAW_TO_LINEAR, ALAW_TO_LINEAR):
        values = sorted(table.tolist())
        assert values == sorted(-v for v in table.tolist())
        assert len(set(values)) >= 255  # mu-law has +0 and -0


def test_decoding_matches_audioop_for_all_256_codes() -> None:
    audioop = _audioop()
    codes = ALL_CODES.tobytes()
    assert ulaw_decode(codes).tolist() == np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2").tolist()
    assert alaw_decode(codes).tolist() == np.frombuffer(audioop.alaw2lin(codes, 2), "<i2").tolist()


def test_encoding_matches_audioop_for_every_16_bit_sample() -> None:
    audioop = _audioop()
    pcm = ALL_SAMPLES.tobytes()
    assert np.array_equal(ulaw_encode(ALL_SAMPLES), np.frombuffer(audioop.lin2ulaw(pcm, 2),
                                                                  np.uint8))
    assert np.array_equal(alaw_encode(ALL_SAMPLES), np.frombuffer(audioop.lin2alaw(pcm, 2),
                                                                  np.uint8))
    assert np.array_equal(ulaw_encode(pcm), ulaw_encode(ALL_SAMPLES))  # bytes in, same codes


def test_every_code_survives_a_round_trip() -> None:
    assert np.array_equal(alaw_encode(alaw_decode(ALL_CODES)), ALL_CODES)
    back = ulaw_encode(ulaw_decode(ALL_CODES))
    # mu-law's negative zero (0x7F) decodes to 0, which encodes as positive zero (0xFF).
    assert np.array_equal(np.delete(back, 0x7F), np.delete(ALL_CODES, 0x7F))
    assert back[0x7F] == 0xFF


def test_quantisation_error_is_half_a_step_that_grows_with_the_level() -> None:
    samples = ALL_SAMPLES.astype(np.int32)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        top = int(decode(ALL_CODES).max())
        inside = np.abs(samples) <= top  # beyond the largest code, G.711 clips
        error = np.abs(decode(encode(ALL_SAMPLES)).astype(np.int32) - samples)[inside]
        # Four mantissa bits per segment: half a step is at most 1/32 of the level, plus the
        # finest step near zero.
        assert np.all(error <= np.abs(samples[inside]) / 32 + 8)


def test_encoders_refuse_float_arrays_with_a_pointer() -> None:
    with pytest.raises(ValueError, match="to_int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))


def test_narrowband_upsampling_keeps_the_tone_and_adds_no_images() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.float32)
    wide = narrowband_to_speech(tone)
    assert len(wide) == 16_000
    spectrum = np.abs(np.fft.rfft(wide[2000:-2000] * np.hanning(12_000)))
    freqs = np.fft.rfftfreq(12_000, 1 / 16_000)
    assert abs(freqs[np.argmax(spectrum)] - 1000) < 5
    image = spectrum[(freqs > 4100)].max() / spectrum.max()  # a naive upsampler leaves 7 kHz
    assert image < 1e-3


@pytest.fixture(scope="module")
def transcriber(models_dir: Path):
    from asr.transcriber import create_transcriber
    from voicedesk.config import AsrConfig
    from voicedesk.models.prepare import ModelStore

    return create_transcriber(AsrConfig(), ModelStore(models_dir))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_speech_over_a_g711_line_is_still_understood(transcriber, law: str) -> None:
    line = g711_decode(g711_encode(load_audio(JFK, rate=8000).samples, law), law)  # type: ignore[arg-type]
    text = transcriber.transcribe(narrowband_to_speech(line)).text
    assert wer("and so my fellow americans ask not what your country can do for you ask what "
               "you can do for your country", text) < 0.1, text


def test_a_raw_mu_law_file_reads_as_8k_mono_and_streams_at_16k(tmp_path: Path) -> None:
    speech = load_audio(LIBRI / "1089-134691-0000.flac", rate=8000).samples
    path = tmp_path / "line.ul"
    path.write_bytes(g711_encode(speech, "ulaw"))
    recording = CallRecording(path)
    assert (recording.info.sample_rate, recording.info.channels) == (8000, 1)
    wide = np.concatenate(list(recording.speech_blocks()))
    assert wide.shape == (2 * len(speech), 1)


def test_a_stereo_call_names_channel_0_caller_and_channel_1_agent(tmp_path: Path) -> None:
    left = load_audio(LIBRI / "1089-134691-0000.flac", rate=8000).samples
    right = np.zeros_like(left)
    right[: len(left) // 2] = 0.1
    sf.write(tmp_path / "call.wav", np.stack([left, right], axis=1), 8000, subtype="ULAW")
    recording = CallRecording(tmp_path / "call.wav")
    assert speaker_labels(recording.info.channels) == ("caller", "agent")
    assert speaker_labels(1) == ("caller",)
    assert not recording.channels_identical()
    blocks = np.concatenate(list(recording.speech_blocks()))
    assert blocks.shape[1] == 2 and abs(len(blocks) - 2 * len(left)) <= 2


def test_a_stereo_file_with_the_same_signal_twice_is_recognised(tmp_path: Path) -> None:
    assert CallRecording(JFK).channels_identical()  # Whisper's jfk.flac is mono saved as stereo


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("caller notes, not audio\n" * 10), "not a readable audio file"),
        (lambda p: sf.write(p, np.zeros((8000, 4), np.float32), 8000), "has 4 channels"),
        (lambda p: sf.write(p, np.zeros(4000, np.float32), 4000), "4000 Hz"),
    ],
    ids=["empty", "text", "four-channels", "rate-too-low"],
)
def test_unusable_recordings_fail_on_opening_with_a_reason(tmp_path: Path, make,
                                                           message: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        CallRecording(path)


def test_a_truncated_wav_is_reported_not_passed_off_as_a_short_call(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(16_000, np.float32), 16_000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:20_000])
    with pytest.raises(AudioError, match="truncated: its header declares 16000 frames"):
        CallRecording(cut)
