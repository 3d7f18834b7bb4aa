"""Reading caller audio: any rate and layout becomes 16 kHz mono, or a clear reason why not."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from tests.conftest import JFK
from voicedesk.errors import AudioError


def test_stereo_44k_recording_becomes_16k_mono() -> None:
    audio = load_audio(JFK)
    assert audio.sample_rate == 16_000 and audio.samples.ndim == 1
    assert audio.source_rate == 44_100 and audio.source_channels == 2
    assert audio.duration == pytest.approx(11.0, abs=0.1)


def test_telephone_rate_is_resampled_without_losing_length(tmp_path: Path) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32) * 0.5
    sf.write(tmp_path / "phone.wav", tone, 8000)
    audio = load_audio(tmp_path / "phone.wav")
    assert len(audio.samples) == 16_000
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * 16_000 / len(audio.samples) - 440) < 2


def test_one_channel_of_a_multichannel_file_can_be_picked(tmp_path: Path) -> None:
    data = np.zeros((16_000, 3), dtype=np.float32)
    data[:, 2] = 0.25
    sf.write(tmp_path / "three.wav", data, 16_000)
    with pytest.raises(AudioError, match="3 channels; pick the caller's with --channel"):
        load_audio(tmp_path / "three.wav")
    assert load_audio(tmp_path / "three.wav", channel=2).samples.mean() == pytest.approx(0.25, 1e-3)
    with pytest.raises(AudioError, match="channel 5 does not exist"):
        load_audio(tmp_path / "three.wav", channel=5)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.wav", None, "does not exist"),
        ("empty.wav", b"", "is empty"),
        ("notes.wav", b"this is not audio, just some text\n" * 20, "not a readable audio file"),
        ("corrupt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "not a readable"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(tmp_path: Path, name: str,
                                                   content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        load_audio(path)


def test_a_wav_with_no_samples_is_rejected(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="contains no audio"):
        load_audio(tmp_path / "zero.wav")


def test_a_rate_too_low_for_speech_is_rejected(tmp_path: Path) -> None:
    sf.write(tmp_path / "low.wav", np.zeros(4000, dtype=np.float32), 4000)
    with pytest.raises(AudioError, match="4000 Hz; voicedesk needs 8000"):
        load_audio(tmp_path / "low.wav")
