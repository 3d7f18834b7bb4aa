"""This machine's microphone and speaker as a phone line: ``voicedesk talk``.

``MicTransport`` is a ``Transport`` on PortAudio (through PyAudio, an optional extra):
the input stream's callback turns each 20 ms of the microphone into a ``CallerAudio``
event on the event loop; the output stream's callback drains the ``Playout`` queue at
the sound card's own pace, so ``played_s`` is what really left the speaker. Both
callbacks run on PortAudio's threads and do no more than copy. Use a headset: the
echo gate keeps the assistant's own voice from the speaker from interrupting it, but
a headset keeps it out of the transcript too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.audio import to_int16
from voice.transport import CallerAudio, CallInfo, LineClosed, LineEvent, Playout
from voicedesk.config import Config
from voicedesk.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

RATE = 16_000
FRAME_MS = 20
INSTALL = ("voicedesk talk needs PyAudio: pip install 'voicedesk[mic]' (needs Debian's "
           "portaudio19-dev to build)")


def import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise ConfigError(INSTALL) from None
    return pyaudio


@dataclass(frozen=True)
class AudioDevice:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: int


def list_devices(portaudio: Any) -> list[AudioDevice]:
    """Every device PortAudio sees (``portaudio`` is a ``pyaudio.PyAudio()``)."""
    devices = []
    for i in range(portaudio.get_device_count()):
        info = portaudio.get_device_info_by_index(i)
        devices.append(AudioDevice(i, str(info["name"]), int(info["maxInputChannels"]),
                                   int(info["maxOutputChannels"]),
                                   int(info["defaultSampleRate"])))
    return devices


class MicTransport:
    """A call on the microphone and speaker: 16-bit mono at ``rate``, 20 ms buffers."""

    def __init__(self, rate: int = RATE, input_device: int | None = None,
                 output_device: int | None = None, frame_ms: int = FRAME_MS,
                 pyaudio_module: Any = None) -> None:
        self._module = pyaudio_module or import_pyaudio()
        if not 8000 <= rate <= 48_000:
            raise ConfigError(f"--rate {rate}: expected 8000 to 48000 Hz (16000 suits speech)")
        self.rate = rate
        self.frame = rate * frame_ms // 1000
        self._pa = self._module.PyAudio()
        try:
            self.input_device = self._pick(input_device, "input")
            self.output_device = self._pick(output_device, "output")
        except Exception:
            self._pa.terminate()
            raise
        names = {d.index: d.name for d in list_devices(self._pa)}
        self.info = CallInfo(f"mic-{uuid.uuid4().hex[:8]}", "mic", "", rate,
                             {"input": names.get(self.input_device, ""),
                              "output": names.get(self.output_device, "")})
        self._playout = Playout()
        self._lock = threading.Lock()  # the playout is shared with PortAudio's thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self._streams: list[Any] = []
        self._gone = ""  # why the line closed, once it has
        self._shut = False
        self.overflows = 0  # microphone buffers lost: the machine was too busy
        self.transfers: list[tuple[str, dict[str, Any]]] = []

    def _pick(self, index: int | None, kind: str) -> int:
        """The device to use for ``kind`` (input or output), checked before any model loads."""
        count = self._pa.get_device_count()
        if count == 0:
            raise AudioError("PortAudio finds no audio devices: connect a microphone and a "
                             "speaker (or a headset), or check that this user may use the "
                             "sound card")
        channels = "maxInputChannels" if kind == "input" else "maxOutputChannels"
        if index is None:
            try:
                default = (self._pa.get_default_input_device_info() if kind == "input"
                           else self._pa.get_default_output_device_info())
            except OSError:
                raise AudioError(f"there is no default {kind} device: pass --{kind}-device N "
                                 f"(voicedesk talk --list-devices shows them)") from None
            index = int(default["index"])
        if not 0 <= index < count:
            raise AudioError(f"--{kind}-device {index}: no such device; there are {count} "
                             f"(0-{count - 1}): see voicedesk talk --list-devices")
        info = self._pa.get_device_info_by_index(index)
        if int(info[channels]) < 1:
            raise AudioError(f"--{kind}-device {index} ({info['name']}) has no {kind} "
                             f"channels: see voicedesk talk --list-devices")
        try:
            if kind == "input":
                self._pa.is_format_supported(self.rate, input_device=index, input_channels=1,
                                             input_format=self._module.paInt16)
            else:
                self._pa.is_format_supported(self.rate, output_device=index,
                                             output_channels=1,
                                             output_format=self._module.paInt16)
        except ValueError as exc:
            raise AudioError(f"--{kind}-device {index} ({info['name']}) cannot {kind} 16-bit "
                             f"mono at {self.rate} Hz ({exc}); try --rate "
                             f"{int(info['defaultSampleRate'])}") from None
        return index

    # ---- Transport ------------------------------------------------------------------
    async def receive(self) -> LineEvent:
        if self._loop is None and not self._gone:
            await self._open()
        if self._gone and self._events.empty():
            return LineClosed(self._gone)
        return await self._events.get()

    def play(self, samples: np.ndarray) -> None:
        if not self._gone:
            with self._lock:
                self._playout.put(samples)

    def clear(self) -> None:
        with self._lock:
            self._playout.clear()

    @property
    def played_s(self) -> float:
        return self._playout.played / self.rate

    @property
    def pending_s(self) -> float:
        return self._playout.queued / self.rate

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        """There is no one to hand a microphone call to: say where it would have gone."""
        self.transfers.append((target, summary))
        log.info("the assistant would transfer this call to %s", target or "(no target)")
        return False

    async def close(self) -> None:
        self.hang_up("closed")
        if not self._shut:
            self._shut = True
            await asyncio.to_thread(self._shutdown)

    def hang_up(self, reason: str = "hangup") -> None:
        """The person at the microphone is done (Ctrl-C): end the call like a hang-up."""
        if not self._gone:
            self._gone = reason
            self._events.put_nowait(LineClosed(reason))

    # ---- PortAudio --------------------------------------------------------------------
    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        pa = self._module
        common = {"format": pa.paInt16, "channels": 1, "rate": self.rate,
                  "frames_per_buffer": self.frame, "start": False}
        try:
            self._streams.append(self._pa.open(output=True,
                                               output_device_index=self.output_device,
                                               stream_callback=self._speaker, **common))
            self._streams.append(self._pa.open(input=True, input_device_index=self.input_device,
                                               stream_callback=self._microphone, **common))
            for stream in self._streams:
                stream.start_stream()
        except OSError as exc:
            await self.close()
            raise AudioError(f"the sound card refused a {self.rate} Hz mono stream on devices "
                             f"{self.input_device}/{self.output_device}: {exc}") from None

    def _microphone(self, in_data: bytes | None, frame_count: int, time_info: Any,
                    status: int) -> tuple[None, int]:
        pa = self._module
        if self._gone or self._loop is None:
            return None, pa.paComplete
        if status & pa.paInputOverflow:
            self.overflows += 1
        samples = np.frombuffer(in_data or b"", dtype="<i2").astype(np.float32) / 32768.0
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, CallerAudio(samples))
        except RuntimeError:  # the event loop is gone: so is the call
            return None, pa.paComplete
        return None, pa.paContinue

    def _speaker(self, in_data: bytes | None, frame_count: int, time_info: Any,
                 status: int) -> tuple[bytes, int]:
        with self._lock:
            out = self._playout.take(frame_count)
        return to_int16(out).tobytes(), self._module.paContinue

    def _shutdown(self) -> None:
        for stream in self._streams:
            try:
                stream.stop_stream()
                stream.close()
            except OSError as exc:
                log.warning("closing an audio stream: %s", exc)
        self._streams.clear()
        self._pa.terminate()


# ---- voicedesk talk ---------------------------------------------------------------------

async def talk(service: Any, transport: MicTransport) -> Any:
    """One call on the microphone until either side ends it; Ctrl-C hangs up (stored)."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        transport.hang_up()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once

    try:
        await service.start()  # Ctrl-C while the models load stops as usual
        loop.add_signal_handler(signal.SIGINT, interrupted)
        return await service.handle(transport)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await transport.close()
        await service.stop()


def cmd_talk(config: Config, args: argparse.Namespace) -> int:
    from voice.service import CallService

    pyaudio = import_pyaudio()
    if args.list_devices:
        portaudio = pyaudio.PyAudio()
        try:
            devices = list_devices(portaudio)
        finally:
            portaudio.terminate()
        if not devices:
            print("PortAudio finds no audio devices")
        for d in devices:
            print(f"{d.index:3d}  in {d.inputs:2d}  out {d.outputs:2d}  {d.default_rate:6d} Hz  "
                  f"{d.name}")
        return 0
    transport = MicTransport(args.rate, args.input_device, args.output_device,
                             pyaudio_module=pyaudio)
    print(f"voicedesk talk: {transport.info.metadata['input']} -> "
          f"{transport.info.metadata['output']} at {args.rate} Hz; loading models...",
          file=sys.stderr)
    outcome = asyncio.run(talk(CallService(config), transport))
    if outcome.greeting:
        print(f"assistant: {outcome.greeting}")
    for turn in outcome.turns:
        if turn.transcript or turn.dtmf:
            print(f"you: {turn.transcript or '[keypad]'}   ({turn.intent})")
        if turn.heard:
            print(f"assistant: {turn.heard}")
    for target, _ in transport.transfers:
        print(f"(the call would now go to a person at {target or 'telephony.transfer_target'})")
    print(f"call {outcome.call_id}: {outcome.ended}; "
          f"{'stored' if outcome.stored else 'NOT stored'}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add ``voicedesk talk`` to the command's subparsers."""
    talk_cmd = sub.add_parser(
        "talk", help="talk to the assistant through this machine's microphone and speaker",
        description="One live call on the microphone and speaker (PortAudio through PyAudio: "
                    "pip install 'voicedesk[mic]'), through the same call loop as `serve`. "
                    "It runs until the assistant ends the call or you press Ctrl-C; the call "
                    "is stored like any other. Use a headset if you can.")
    talk_cmd.add_argument("--input-device", type=int, metavar="N",
                          help="microphone device index (default: the system's default)")
    talk_cmd.add_argument("--output-device", type=int, metavar="N",
                          help="speaker device index (default: the system's default)")
    talk_cmd.add_argument("--list-devices", action="store_true",
                          help="list the audio devices and their indexes, then exit")
    talk_cmd.add_argument("--rate", type=int, default=RATE, metavar="HZ",
                          help=f"sample rate of both streams (default {RATE})")
    talk_cmd.set_defaults(func=cmd_talk)
