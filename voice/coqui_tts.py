"""Coqui TTS (``tts.backend = "coqui"``), run in its own Python environment.

Coqui needs torchaudio, which has no release for the torch voicedesk installs, so it
cannot share voicedesk's environment. It runs instead as a long-lived worker process
(``voice/coqui_worker.py``) under the interpreter named by ``tts.coqui_python``,
started once per process and model and shared by every call; requests and audio
travel as JSON lines over its stdin and stdout (the protocol is described in the
worker). A worker that dies is restarted on the next sentence; every failure is a
``ModelError`` that says what the worker said last.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from voicedesk.config import TtsConfig
from voicedesk.errors import ConfigError, ModelError

WORKER = Path(__file__).with_name("coqui_worker.py")
PROTOCOL = 1
DEFAULT_MODEL = "tts_models/en/ljspeech/vits"
START_TIMEOUT_S = 300.0  # first start may download and load the model
REQUEST_TIMEOUT_S = 120.0

SETUP = ("tts.backend = coqui needs a separate environment (Coqui needs torchaudio, which "
         "voicedesk's torch lacks): python3 -m venv ~/coqui-env && ~/coqui-env/bin/pip install "
         "coqui-tts; then set tts.coqui_python = ~/coqui-env/bin/python (or "
         "VOICEDESK_TTS_COQUI_PYTHON); see docs/voice-backends.md")


class CoquiWorker:
    """One worker process and the JSON-lines conversation with it (one request at a time)."""

    def __init__(self, command: list[str], start_timeout_s: float = START_TIMEOUT_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.command = command
        self.request_timeout_s = request_timeout_s
        self._lock = threading.Lock()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._stderr_done = threading.Event()
        self._next_id = 0
        self.sample_rate = 0
        try:
            # Its own process group: a wrapper script and its children are stopped together.
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                          start_new_session=True)
        except OSError as exc:
            raise ConfigError(f"tts.coqui_python = {command[0]!r} cannot be run "
                              f"({exc.strerror or exc}); {SETUP}") from None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        threading.Thread(target=self._read_stdout, args=(self._proc.stdout,),
                         daemon=True, name="coqui-stdout").start()
        threading.Thread(target=self._read_stderr, args=(self._proc.stderr,),
                         daemon=True, name="coqui-stderr").start()
        ready = self._receive(start_timeout_s, "starting")
        if "error" in ready:
            self._stop()
            raise ModelError(f"the Coqui TTS worker could not start: {ready['error']}")
        if ready.get("ready") is not True or ready.get("protocol") != PROTOCOL:
            self._stop()
            raise ModelError(f"the Coqui TTS worker ({command[0]}) answered {ready!r} instead "
                             f"of the protocol {PROTOCOL} ready line; is {WORKER.name} the "
                             f"one from this voicedesk?")
        self.sample_rate = int(ready["sample_rate"])

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip())
        self._stderr_done.set()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """The whole utterance as float32 mono, and its sample rate."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            doing = f"speaking {text[:40]!r}"
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"id": rid, "text": text}) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died(doing) from None
            reply = self._receive(self.request_timeout_s, doing)
        if reply.get("id") != rid:
            self._stop()
            raise ModelError(f"the Coqui TTS worker answered request {reply.get('id')!r} while "
                             f"{doing} (request {rid}); it was restarted")
        if "error" in reply:
            raise ModelError(f"Coqui TTS could not speak {text[:40]!r}: {reply['error']}")
        try:
            pcm = base64.b64decode(reply["pcm"], validate=True)
            rate = int(reply["sample_rate"])
            if len(pcm) % 4:
                raise ValueError(f"{len(pcm)} bytes is not whole float32 samples")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self._stop()
            raise ModelError(f"the Coqui TTS worker sent unusable audio while {doing}: "
                             f"{type(exc).__name__}: {exc}") from None
        return np.frombuffer(pcm, dtype="<f4").astype(np.float32), rate

    def _receive(self, timeout_s: float, doing: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            self._stop()
            raise ModelError(f"the Coqui TTS worker did not answer within {timeout_s:.0f} s "
                             f"while {doing}; it was stopped{self._last_words()}") from None
        if line is None:
            raise self._died(doing)
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            self._stop()
            raise ModelError(f"the Coqui TTS worker wrote {line[:120]!r} while {doing}, which "
                             f"is not a protocol message (JSON object per line); it was "
                             f"stopped{self._last_words()}") from None
        return message

    def _died(self, doing: str) -> ModelError:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # stdout closed, process still there: end it
            self._stop()
            code = self._proc.returncode
        return ModelError(f"the Coqui TTS worker ({self.command[0]}) exited with status "
                          f"{code} while {doing}{self._last_words()}")

    def _last_words(self) -> str:
        """The end of the worker's stderr: usually the traceback that explains it."""
        if not self.alive:  # the stderr reader may be a moment behind the exit
            self._stderr_done.wait(2.0)
        lines = [line for line in self._stderr if line]
        return f"; it said: {' | '.join(lines[-3:])}" if lines else ""

    def _stop(self) -> None:
        """End a worker that broke the protocol: it cannot be trusted to exit by itself."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def close(self) -> None:
        """Let the worker finish (end of its input), then make sure it is gone."""
        if self._proc.poll() is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._stop()


_workers: dict[tuple[str, ...], CoquiWorker] = {}
_workers_lock = threading.Lock()


def shared_worker(command: list[str]) -> CoquiWorker:
    """The running worker for this command, started if there is none (or it died)."""
    key = tuple(command)
    with _workers_lock:
        worker = _workers.get(key)
        if worker is None or not worker.alive:
            worker = _workers[key] = CoquiWorker(command)
        return worker


@atexit.register
def _stop_workers() -> None:
    with _workers_lock:
        for worker in _workers.values():
            worker.close()
        _workers.clear()


def worker_command(config: TtsConfig) -> list[str]:
    """How to start the worker for this configuration, or why it cannot be."""
    python = config.coqui_python.strip()
    if not python:
        raise ConfigError(f"tts.coqui_python is not set. {SETUP}")
    path = Path(python).expanduser()
    if not path.is_file():
        raise ConfigError(f"tts.coqui_python = {python!r} does not exist. {SETUP}")
    model = config.voice if config.voice != TtsConfig.voice else DEFAULT_MODEL
    command = [str(path), str(WORKER), "--model", model,
               "--length-scale", str(config.length_scale)]
    if config.coqui_speaker:
        command += ["--speaker", config.coqui_speaker]
    return command


class CoquiSynthesizer:
    name = "coqui"

    def __init__(self, config: TtsConfig) -> None:
        self._command = worker_command(config)
        self._worker = shared_worker(self._command)
        self.sample_rate = self._worker.sample_rate
        self.model = self._command[self._command.index("--model") + 1]

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        if not self._worker.alive:
            self._worker = shared_worker(self._command)
        audio, rate = self._worker.synthesize(text)
        if rate != self.sample_rate:
            raise ModelError(f"the Coqui TTS worker changed its sample rate from "
                             f"{self.sample_rate} to {rate} Hz mid-call")
        yield audio
