"""Sockets and pushes: the /v1/ws endpoint, each socket's send queue, pub/sub fan-out.

May import the pipeline, metrics, store and the base modules; nothing below imports it.
"""
