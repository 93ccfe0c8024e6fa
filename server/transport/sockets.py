"""What a socket is to the handler (ws.py): its messages, how its end shows, and the
`Socket` protocol that both carriers implement: our wire under uvicorn (wire.py) and
Starlette's WebSocket under another ASGI server (asgi_socket.py).
"""

from __future__ import annotations

from typing import Protocol

from server.transport.upgrade import Upgrade

CODE_ABNORMAL = 1006  # the TCP connection ended without a close frame

Message = bytes | str


class Socket(Protocol):
    """What the socket handler (ws.py) uses of a socket: the Wire (wire.py), or Starlette's
    WebSocket seen through asgi_socket.py under another ASGI server."""

    @property
    def request(self) -> Upgrade | None: ...

    @property
    def peer(self) -> str:
        """The client's address as "host:port" ("-" when the server does not say)."""
        ...

    def deny(self, status: int, text: str) -> None: ...

    def accept(self, subprotocol: str | None) -> None: ...

    async def receive(self) -> Message: ...

    def send_now(self, message: Message) -> bool: ...

    def cork(self) -> None:
        """Hold what send_now sends until uncork, to write it in one call."""

    def uncork(self) -> None: ...

    async def send(self, message: Message) -> None: ...

    async def close(self, code: int) -> None: ...


class Disconnected(Exception):
    """The socket ended: the close code the handler sees (the client's, ours, or 1006)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
