"""Background work: the job table, the leased scheduler, and `manor push-relay`.

May import platform, ops, ledger and store; only the app and the CLI import it.
"""
