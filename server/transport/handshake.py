"""A socket's handshake, from uvicorn's replayed request to the 101 or a refusal.

Sans-I/O: it is fed the request's bytes and hands back the bytes to write; the wire
(wire.py) owns the transport. A plain request is read once (upgrade.py) and answered with
our own 101; anything else goes to a throwaway websockets `ServerProtocol`, whose answers
(400, 405, 426, the permessage-deflate offer) stay the library's. Either way the 101
hands over a fresh `ServerProtocol` in frame mode: websockets' handshake parser keeps its
request alive, and an idle socket should not.
"""

from __future__ import annotations

import logging

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol

from server.transport.upgrade import Upgrade, read_upgrade, refusal, switching

# websockets' own protocol objects log each socket's open and close at INFO: kept under
# the library's logger name, which server/logs.py holds at WARNING (a connect wave would
# otherwise write a line per socket). Refused handshakes get one INFO line of the wire's.
PROTOCOL_LOG = logging.getLogger("websockets.server")
# The deflate parameters of uvicorn's own protocol (a client sees the same offer).
DEFLATE_WINDOW_BITS = 12
DEFLATE_MEM_LEVEL = 5


class Handshake:
    """One socket's handshake until it is answered; `request` is set once a well-formed
    upgrade request has been read."""

    __slots__ = ("deflate", "max_size", "request", "response", "slow")

    def __init__(self, deflate: bool, max_size: int | None) -> None:
        self.deflate = deflate  # permessage-deflate on (MANOR_WS_DEFLATE)
        self.max_size = max_size
        self.request: Upgrade | None = None
        self.slow: ServerProtocol | None = None  # websockets reading an unusual request
        self.response: Response | None = None  # websockets' 101, until sent

    def read(self, data: bytes) -> tuple[bytes, bool]:
        """Feed the request's bytes (uvicorn replays them in one call): the bytes to write
        now, and True when they end the connection (websockets refused the request)."""
        slow = self.slow
        if slow is None:
            upgrade = read_upgrade(data)
            if upgrade is not None and not (upgrade.extensions and self.deflate):
                self.request = upgrade
                return b"", False
            slow = self.slow = ServerProtocol(
                extensions=self._extensions(), max_size=self.max_size, logger=PROTOCOL_LOG
            )
        slow.receive_data(data)
        for event in slow.events_received():
            if isinstance(event, Request):
                response = slow.accept(event)
                if response.status_code != 101:  # websockets' answer to a bad handshake
                    slow.send_response(response)
                    break
                self.response = response
                headers: dict[str, list[str]] = {}
                for name, value in event.headers.raw_items():
                    headers.setdefault(name.lower(), []).append(value)
                self.request = Upgrade(event.path, headers, "")
        out = slow.data_to_send()
        return b"".join(out), SEND_EOF in out

    def accept(self, subprotocol: str | None) -> tuple[bytes, ServerProtocol]:
        """The 101 (naming the subprotocol, if any) and the protocol that reads the frames."""
        slow, response = self.slow, self.response
        if slow is not None and response is not None:
            if subprotocol:
                response.headers["Sec-WebSocket-Protocol"] = subprotocol
            slow.send_response(response)
            answer, extensions = b"".join(slow.data_to_send()), slow.extensions
        else:
            key = self.request.key if self.request is not None else ""
            answer, extensions = switching(key, subprotocol), []
        frames = ServerProtocol(state=State.OPEN, max_size=self.max_size, logger=PROTOCOL_LOG)
        frames.extensions = extensions
        return answer, frames

    def refuse(self, status: int, text: str) -> bytes:
        """A plain-text HTTP answer that ends the connection."""
        slow = self.slow
        if slow is None:
            return refusal(status, text)
        slow.send_response(slow.reject(status, text))
        return b"".join(slow.data_to_send())

    def _extensions(self) -> list[ServerPerMessageDeflateFactory]:
        if not self.deflate:
            return []
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=DEFLATE_WINDOW_BITS,
                client_max_window_bits=DEFLATE_WINDOW_BITS,
                compress_settings={"memLevel": DEFLATE_MEM_LEVEL},
            )
        ]
