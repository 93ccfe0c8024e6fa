"""The operators' HTTP API and the OpenAPI document of every HTTP API.

May import anything below the faces (platform, ops, ledger, store); only the app imports it.
"""
