"""What every gateway is to `voicedesk serve`: something that starts, hosts calls, stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from voice.transport import Transport

# The call loop's entry point: runs one call on its line until the call ends.
CallHandler = Callable[[Transport], Awaitable[None]]


class Gateway(Protocol):
    name: str  # sip, audiosocket, websocket

    async def start(self) -> None:
        """Bind and begin accepting calls; returns once listening."""
        ...

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound: port 0 in the config means any free port."""
        ...

    @property
    def active_calls(self) -> int: ...

    async def stop(self) -> None:
        """Stop accepting calls, end those in progress cleanly, release every socket."""
        ...
