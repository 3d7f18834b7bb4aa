"""TTS backends: the reply at every line rate, and Coqui TTS in its own environment.

Coqui runs as a worker process under another Python. Its happy path is tested
only where that environment is configured (``VOICEDESK_TTS_COQUI_PYTHON``); the
process boundary itself (a worker that cannot start, crashes, or breaks the
protocol) is tested here with real processes that do exactly that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import wer
from voice.coqui_tts import CoquiSynthesizer, CoquiWorker, worker_command
from voice.tts import create_synthesizer
from voicedesk.config import TtsConfig
from voicedesk.errors import ConfigError, ModelError
from voicedesk.models.prepare import ModelStore

SENTENCE = "Your bill for March is forty two pounds, due on the first of April."


# ---- the reply at each line rate ---------------------------------------------------------

def band_energy(samples: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Energy per second between ``lo`` and ``hi`` Hz (comparable across rates)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum()) / len(samples) / rate


class Overheard:
    """The assistant's own synthesizer, keeping a copy of what it made (Piper is not
    deterministic: each synthesis of a sentence differs a little in timing)."""

    def __init__(self, synthesizer) -> None:
        self.inner = synthesizer
        self.name, self.sample_rate = synthesizer.name, synthesizer.sample_rate
        self.made: list[np.ndarray] = []

    def synthesize(self, text: str):
        for chunk in self.inner.synthesize(text):
            self.made.append(chunk.copy())
            yield chunk


def loop_speech(assistant, config, rate: int, text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """What the call loop's speech stage queues on a line at ``rate`` for one sentence,
    and the synthesizer's own output it came from (with its rate)."""
    from voice.context import CallContext
    from voice.frames import ReplyAudio, ReplyText
    from voice.line import CallerScript, MemoryLine
    from voice.pool import InferencePool
    from voice.speaking import Speech
    from voice.speech_cache import SpeechCache

    overheard = Overheard(assistant.synthesizer)
    # no cache: each take is the synthesiser's own (it draws prosody at random)
    speaker = dataclasses.replace(assistant, synthesizer=overheard, speech_cache=SpeechCache(0))

    async def go() -> np.ndarray:
        pool = InferencePool(workers=1)
        ctx = CallContext("tts-rates", MemoryLine(CallerScript([]), rate), speaker, pool,
                          config)
        out: list[ReplyAudio] = []

        async def collect(frame) -> None:
            out.append(frame)

        speech = Speech(ctx)
        speech.push = collect
        try:
            await speech.process(ReplyText(ctx.current_turn, 0, text, True))
        finally:
            pool.close()
        assert len(out) == 1 and isinstance(out[0], ReplyAudio)
        return out[0].samples

    line = asyncio.run(go())
    return line, np.concatenate(overheard.made), overheard.sample_rate


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_the_reply_keeps_its_length_and_speech_band_at_every_line_rate(
        assistant, config, rate) -> None:
    assert assistant.synthesizer.name == "piper"  # the bundled voice, at 22.05 kHz
    line, source, source_rate = loop_speech(assistant, config, rate, SENTENCE)
    assert line.dtype == np.float32
    assert abs(len(line) / rate - len(source) / source_rate) < 0.002  # same duration
    # The telephone band (300-3400 Hz) arrives intact at every rate: no loss, no aliasing.
    kept = band_energy(line, rate, 300, 3400) / band_energy(source, source_rate, 300, 3400)
    assert 0.9 < kept < 1.1
    if rate >= 16000:  # the wideband part survives too, up to the line's Nyquist
        top = min(rate / 2, source_rate / 2) * 0.9
        kept = band_energy(line, rate, 3400, top) / band_energy(source, source_rate, 3400, top)
        assert 0.9 < kept < 1.1
    if rate > source_rate:  # upsampling adds no images above the voice's own band
        total = band_energy(line, rate, 0, rate / 2)
        assert band_energy(line, rate, source_rate / 2 * 1.05, rate / 2) < 1e-4 * total
    # No gain change (band-limited resampling may overshoot a full-scale peak by a hair;
    # the line encoders clip to [-1, 1]).
    # peaks move a little when 8 kHz cuts the band above 4 kHz; loudness must not change
    assert abs(np.max(np.abs(line)) / np.max(np.abs(source)) - 1) < 0.05


def test_the_telephone_rate_reply_is_still_understood(assistant, config) -> None:
    from asr.audio import resample

    # Piper draws its prosody at random, so one take may be misheard where most are not
    # ("due" as "do"): the median of three takes is what a caller would hear.
    heard = []
    for _ in range(3):
        line, _, _ = loop_speech(assistant, config, 8000, SENTENCE)
        heard.append(assistant.transcriber.transcribe(resample(line, 8000, 16000)).text)
    errors = sorted(wer(SENTENCE.replace("forty two", "42"), text.replace("forty two", "42"))
                    for text in heard)
    assert errors[1] <= 0.25, heard


# ---- Coqui TTS: configuration and the worker boundary ------------------------------------

def test_coqui_without_its_environment_says_how_to_make_one(models_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        create_synthesizer(TtsConfig(backend="coqui"), ModelStore(models_dir))
    message = str(err.value)
    assert "needs a separate environment" in message
    assert "python3 -m venv" in message and "pip install coqui-tts" in message
    assert "tts.coqui_python" in message


def test_coqui_with_a_missing_interpreter_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "coqui-env" / "bin" / "python"
    with pytest.raises(ConfigError, match=f"tts.coqui_python = '{missing}' does not exist"):
        CoquiSynthesizer(TtsConfig(backend="coqui", coqui_python=str(missing)))


def test_unknown_tts_backends_list_coqui(models_dir: Path) -> None:
    with pytest.raises(ConfigError, match="available: piper, coqui, espeak-ng"):
        create_synthesizer(TtsConfig(backend="festival"), ModelStore(models_dir))


def test_the_worker_command_carries_model_rate_and_speaker(tmp_path: Path) -> None:
    python = executable(tmp_path / "python", "exit 0\n")
    command = worker_command(TtsConfig(backend="coqui", coqui_python=str(python),
                                       voice="tts_models/en/vctk/vits", length_scale=1.2,
                                       coqui_speaker="p225"))
    assert command[0] == str(python) and command[1].endswith("coqui_worker.py")
    assert command[2:] == ["--model", "tts_models/en/vctk/vits", "--length-scale", "1.2",
                           "--speaker", "p225"]
    default = worker_command(TtsConfig(backend="coqui", coqui_python=str(python)))
    assert default[default.index("--model") + 1] == "tts_models/en/ljspeech/vits"


@pytest.mark.skipif(importlib.util.find_spec("TTS") is not None,
                    reason="Coqui TTS is installed in this environment")
def test_the_real_worker_in_an_environment_without_coqui_says_so() -> None:
    """The mistake users make: pointing tts.coqui_python at a Python without Coqui."""
    with pytest.raises(ModelError) as err:
        CoquiSynthesizer(TtsConfig(backend="coqui", coqui_python=sys.executable))
    assert "could not start" in str(err.value)
    assert f"Coqui TTS is not installed in {sys.executable}" in str(err.value)
    assert "pip install" in str(err.value)


def executable(path: Path, body: str, shell: str = "/bin/sh") -> Path:
    path.write_text(f"#!{shell}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def peer(tmp_path: Path, body: str) -> list[str]:
    """A worker process (Python) that sends a ready line, then runs ``body`` per request.

    It logs each start to ``starts`` and ignores its arguments, so it can also stand in
    for ``tts.coqui_python`` (which is given the worker script and its options).
    """
    script = executable(tmp_path / "peer.py", (
        "import json, sys\n"
        f"open({str(tmp_path / 'starts')!r}, 'a').write('start\\n')\n"
        "print(json.dumps({'ready': True, 'protocol': 1, 'sample_rate': 22050}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    request = json.loads(line)\n"
        + "".join(f"    {row}\n" for row in body.splitlines())), shell=sys.executable)
    return [str(script)]


def test_a_worker_that_dies_at_start_is_a_model_error_with_its_last_words(
        tmp_path: Path) -> None:
    crash = executable(tmp_path / "python", "echo 'ImportError: libtorchaudio.so' >&2\nexit 3\n")
    with pytest.raises(ModelError) as err:
        CoquiSynthesizer(TtsConfig(backend="coqui", coqui_python=str(crash)))
    assert "exited with status 3 while starting" in str(err.value)
    assert "libtorchaudio.so" in str(err.value)


def test_a_worker_that_prints_garbage_is_stopped_with_what_it_printed(tmp_path: Path) -> None:
    chatty = executable(tmp_path / "python", "echo 'Loading model weights...'\nsleep 60\n")
    with pytest.raises(ModelError, match="wrote 'Loading model weights...' while starting, "
                                         "which is not a protocol message"):
        CoquiWorker([str(chatty)], start_timeout_s=20)


def test_a_worker_that_answers_nothing_times_out(tmp_path: Path) -> None:
    mute = executable(tmp_path / "python", "sleep 60\n")
    with pytest.raises(ModelError, match="did not answer within 1 s while starting"):
        CoquiWorker([str(mute)], start_timeout_s=1)


def test_a_worker_that_crashes_mid_sentence_is_restarted_for_the_next(tmp_path: Path) -> None:
    python = peer(tmp_path, "sys.stderr.write('Killed\\n'); sys.exit(137)")[0]
    synth = CoquiSynthesizer(TtsConfig(backend="coqui", coqui_python=python))
    assert synth.sample_rate == 22050
    for _ in range(2):
        with pytest.raises(ModelError, match=r"exited with status 137 while speaking "
                                             r"'Hello\.'; it said: Killed"):
            list(synth.synthesize("Hello."))
    assert (tmp_path / "starts").read_text().split() == ["start", "start"]


def test_a_reply_that_is_not_audio_is_an_error(tmp_path: Path) -> None:
    worker = CoquiWorker(peer(tmp_path, (
        "print(json.dumps({'id': request['id'], 'sample_rate': 22050, 'pcm': 'no audio!'}),"
        " flush=True)")))
    with pytest.raises(ModelError, match="sent unusable audio while speaking 'Hello.'"):
        worker.synthesize("Hello.")
    assert not worker.alive  # a worker out of step with us is not used again


def test_a_reply_to_another_request_is_an_error(tmp_path: Path) -> None:
    worker = CoquiWorker(peer(tmp_path, (
        "print(json.dumps({'id': 99, 'sample_rate': 22050, 'pcm': ''}), flush=True)")))
    with pytest.raises(ModelError, match="answered request 99 while speaking 'Hi.' "
                                         r"\(request 1\)"):
        worker.synthesize("Hi.")


def test_a_sentence_the_model_refuses_is_an_error_and_the_worker_goes_on(
        tmp_path: Path) -> None:
    worker = CoquiWorker(peer(tmp_path, (
        "print(json.dumps({'id': request['id'], 'error': 'RuntimeError: input too short'}),"
        " flush=True)")))
    for text in ("a", "b"):
        with pytest.raises(ModelError, match=f"could not speak '{text}': RuntimeError: input "
                                             f"too short"):
            worker.synthesize(text)
    assert worker.alive
    worker.close()
    assert not worker.alive


# ---- Coqui TTS for real, where its environment is configured -----------------------------

COQUI_PYTHON = os.environ.get("VOICEDESK_TTS_COQUI_PYTHON", "")
needs_coqui = pytest.mark.skipif(
    not COQUI_PYTHON, reason="no Coqui environment configured: set VOICEDESK_TTS_COQUI_PYTHON "
                             "(and optionally VOICEDESK_TTS_VOICE, a Coqui model) to run")


@needs_coqui
def test_coqui_speaks_a_sentence_the_asr_understands(assistant) -> None:
    from asr.audio import resample

    config = TtsConfig(backend="coqui", coqui_python=COQUI_PYTHON,
                       voice=os.environ.get("VOICEDESK_TTS_VOICE", TtsConfig.voice))
    first = CoquiSynthesizer(config)
    chunks = list(first.synthesize(SENTENCE))
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32 and first.sample_rate >= 16000
    assert 2.0 < len(audio) / first.sample_rate < 10.0
    heard = assistant.transcriber.transcribe(resample(audio, first.sample_rate, 16000)).text
    assert wer(SENTENCE.replace("forty two", "42"), heard.replace("forty two", "42")) <= 0.3
    second = CoquiSynthesizer(config)  # the same worker process, not a second model load
    assert second._worker is first._worker
