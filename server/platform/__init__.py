"""The server-to-server API for the shop, and the business it drives (commerce).

May import ops, the pipeline, the ledger and the store; only admin, jobs and the app import it.
"""
