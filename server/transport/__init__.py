"""Sockets and pushes: the WebSocket wire under uvicorn (wire.py, its frames written by
frames.py), the /v1/ws endpoint on
it (ws.py; the handshake in admission.py, handshake.py and upgrade.py) and through ASGI under other
servers (asgi_socket.py), both one `Socket` to the handler (sockets.py), each socket's
send queue, pub/sub fan-out.

May import the pipeline, metrics, store and the base modules; nothing below imports it.
"""
