"""The books: transfers and journals, the commit call, verify, compaction, finance, outbox.

Imports the store and the base modules; never ops, transports or the HTTP APIs.
"""
