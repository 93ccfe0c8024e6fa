"""A typed asyncio client for the WebSocket API v1: used by the tests, the bench and load/."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.protocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK

PUSHES_QUEUED_MAX = 1000


class ManorError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ManorClient:
    """One socket. Replies are matched to requests by id; pushes land in `pushes`."""

    def __init__(self, socket: ClientConnection, json_mode: bool) -> None:
        self.socket = socket
        self.json_mode = json_mode
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue(PUSHES_QUEUED_MAX)
        self.unmatched: asyncio.Queue[dict[str, Any]] = asyncio.Queue(PUSHES_QUEUED_MAX)
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        # Replies are remembered per player for a day: ids must not repeat across sockets.
        self._session = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self.last_seq = 0
        self.balance_entry_seq = 0  # the newest balance's entry_seq (a push's, a reply's)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str,
        *,
        json_mode: bool = False,
        since_seq: int | None = None,
        entry_seq: int | None = None,
        header_auth: bool = True,
    ) -> ManorClient:
        """A socket; `since_seq` resumes the pushes after it, `entry_seq` names the balance
        this app holds (the resume then sends the balance only when it is newer)."""
        url = base_url.rstrip("/") + "/v1/ws"
        query = [] if header_auth else [f"token={token}"]
        if since_seq is not None:
            query.append(f"since_seq={since_seq}")
        if entry_seq is not None:
            query.append(f"entry_seq={entry_seq}")
        if query:
            url += "?" + "&".join(query)
        headers = {"Authorization": f"Bearer {token}"} if header_auth else None
        protocol = SUBPROTOCOL_JSON if json_mode else SUBPROTOCOL_MSGPACK
        socket = await connect(
            url,
            subprotocols=[protocol],  # type: ignore[list-item]
            additional_headers=headers,
            max_size=1 << 20,
        )
        client = cls(socket, json_mode)
        client.last_seq = since_seq or 0
        client.balance_entry_seq = entry_seq or 0
        return client

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):  # the code stays on socket.close_code
            await self._route()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ManorError("CLOSED", f"socket closed ({self.close_code})"))

    @property
    def close_code(self) -> int | None:
        return self.socket.close_code

    async def _route(self) -> None:
        async for frame in self.socket:
            message = json.loads(frame) if self.json_mode else msgpack.unpackb(frame, raw=False)
            if "push" in message:
                if message["push"] == "balance" and "entry_seq" in message["data"]:
                    # A state push (seq 0): a resume sends the balance as it is, which a
                    # newer live one may have passed; the newest entry_seq wins. (Balance
                    # pushes of before, still in an inbox, have a seq and no entry_seq.)
                    entry_seq = message["data"]["entry_seq"]
                    if entry_seq <= self.balance_entry_seq:
                        continue
                    self.balance_entry_seq = entry_seq
                # A resume may deliver a push both live and from the inbox: keep one.
                elif message["push"] != "resync" and message["seq"] <= self.last_seq:
                    continue
                else:
                    self.last_seq = max(self.last_seq, message["seq"])
                self.pushes.put_nowait(message)
                continue
            result = message.get("result")
            if isinstance(result, dict) and isinstance(result.get("entry_seq"), int):
                # A balance as of that entry (`state`, an op that moved coins): this socket
                # gets no `balance` push for its own commit, and drops an older one.
                self.balance_entry_seq = max(self.balance_entry_seq, result["entry_seq"])
            future = self._waiting.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self.unmatched.put_nowait(message)

    async def send_raw(self, frame: bytes | str) -> None:
        await self.socket.send(frame)

    def encode(self, message: dict[str, Any]) -> bytes | str:
        if self.json_mode:
            return json.dumps(message)
        packed: bytes = msgpack.packb(message)
        return packed

    async def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        request_id: int | str | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """Send one request, return the whole reply map."""
        rid = f"{self._session}-{next(self._ids)}" if request_id is None else request_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        await self.socket.send(self.encode({"id": rid, "op": op, "args": args or {}}))
        return await asyncio.wait_for(future, timeout_s)

    async def call(
        self, op: str, request_id: int | str | None = None, **args: Any
    ) -> dict[str, Any]:
        """Send one request, return its result or raise ManorError."""
        reply = await self.request(op, args, request_id)
        if not reply["ok"]:
            raise ManorError(reply["error"]["code"], reply["error"]["message"])
        result: dict[str, Any] = reply["result"]
        return result

    async def next_push(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.pushes.get(), timeout_s)

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> ManorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
