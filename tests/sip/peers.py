"""Real SIP peers for the gateway tests: SIPp and baresip, run with discipline.

Every peer runs on loopback, on ports picked free at run time, under a
timeout, and is stopped by its own process id (never by name). The SIPp
scenarios in this folder use ``[name]`` placeholders that SIPp itself does
not know (the audio file, the codec); ``run_sipp`` fills them in a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voice.gateways.sip.rtp import RtpPacket
from voice.transport import CallerAudio, KeyPress, LineClosed, Transport

HERE = Path(__file__).resolve().parent
SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")
NEED_SIPP = "SIPp is not installed: apt-get install sip-tester (Debian package)"
NEED_BARESIP = "baresip is not installed: apt-get install baresip"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_ports(count: int) -> list[int]:
    """``count`` distinct free ports, held together while chosen so none repeats."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str
    messages: str

    def explain(self) -> str:
        return (f"sipp exit {self.returncode}\n--- output ---\n{self.output[-3000:]}\n"
                f"--- errors ---\n{self.errors[-3000:]}\n--- messages ---\n"
                f"{self.messages[-4000:]}")


async def run_sipp(scenario: str, target: tuple[str, int] | None, workdir: Path,
                   fill: dict[str, str] | None = None, keys: dict[str, str] | None = None,
                   calls: int = 1, concurrent: int = 1, rate: float = 10.0,
                   timeout_s: float = 30.0, extra: list[str] | None = None,
                   sip_port: int | None = None) -> SippResult:
    """Run one SIPp scenario, as a client of ``target`` or (target None) as a server on
    ``sip_port``; kill it if it overruns."""
    assert SIPP is not None, NEED_SIPP
    text = (HERE / scenario).read_text()
    for name, value in (fill or {}).items():
        text = text.replace(f"[{name}]", value)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / scenario
    path.write_text(text)
    chosen, media_port = free_udp_ports(2)
    sip_port = sip_port or chosen
    args = [SIPP, *([f"{target[0]}:{target[1]}"] if target else []), "-sf", str(path),
            "-i", "127.0.0.1",
            "-p", str(sip_port), "-mp", str(media_port), "-m", str(calls), "-l", str(concurrent),
            "-r", str(rate), "-timeout", f"{int(timeout_s)}s",
            "-timeout_error", "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_msg", "-message_file", str(workdir / "messages.log"),
            "-trace_screen", "-screen_file", str(workdir / "screen.log")]
    for name, value in (keys or {}).items():
        args += ["-key", name, value]
    args += extra or []
    process = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s + 10)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
    read = (lambda p: p.read_text(errors="replace") if p.exists() else "")  # noqa: E731
    return SippResult(process.returncode if process.returncode is not None else -9,
                      output.decode(errors="replace"), read(workdir / "errors.log"),
                      read(workdir / "messages.log"))


def match_fraction(heard: np.ndarray, sent: np.ndarray) -> float:
    """How much of ``sent`` appears sample-exact, in order, somewhere in ``heard`` (0-1).

    G.711 is deterministic, so a lossless line reproduces the decoded samples
    exactly; a packet lost or late on a loaded machine costs one 20 ms frame.
    """
    n, best = len(sent), 0.0
    for anchor in range(0, max(1, n - 160), max(160, n // 10)):
        window = sent[anchor:anchor + 160]
        if not np.any(np.abs(window) > 0.01):
            continue
        for hit in np.flatnonzero(heard == window[0]):
            start = hit - anchor
            if start < 0 or start + n > len(heard) or \
                    not np.array_equal(heard[hit:hit + 160], window):
                continue
            best = max(best, float(np.mean(heard[start:start + n] == sent)))
        if best > 0.99:
            break
    return best


class RtpCapture(asyncio.DatagramProtocol):
    """A UDP port standing in for the caller's phone speaker: keeps every RTP packet."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.garbage = 0
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, port: int = 0) -> RtpCapture:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", port))
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.packets.append(RtpPacket.parse(data))
        except ValueError:
            self.garbage += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class RecordingHandler:
    """A stand-in for the call loop: plays a real recording, keeps what the caller sent.

    ``hang_up_after_play``: hang up (BYE from our side) ``tail_s`` after the
    recording has played; otherwise wait for the caller to hang up.
    """

    reply: np.ndarray
    hang_up_after_play: bool = False
    tail_s: float = 0.0  # after the reply has played, wait this long before hanging up
    max_call_s: float = 20.0
    calls: list[dict] = field(default_factory=list)

    async def __call__(self, line: Transport) -> None:
        record: dict = {"info": line.info, "line": line, "audio": [], "digits": "",
                        "closed": None, "played_s": 0.0}
        self.calls.append(record)
        line.play(self.reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_call_s
        played_at: float | None = None
        while loop.time() < deadline:
            if self.hang_up_after_play and line.pending_s == 0:
                played_at = played_at or loop.time()
                if loop.time() - played_at >= self.tail_s:
                    record["played_s"] = line.played_s
                    await line.close()
            try:
                event = await asyncio.wait_for(line.receive(), 0.1)
            except TimeoutError:
                continue
            if isinstance(event, CallerAudio):
                record["audio"].append(event.samples)
            elif isinstance(event, KeyPress):
                record["digits"] += event.digit
            elif isinstance(event, LineClosed):
                record["closed"] = event.reason
                break
        record["played_s"] = max(record["played_s"], line.played_s)
        record["audio"] = (np.concatenate(record["audio"]) if record["audio"]
                           else np.zeros(0, np.float32))


async def stop_process(process: asyncio.subprocess.Process, grace_s: float = 3.0) -> None:
    """Terminate one process we started, then kill it if it does not go."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
