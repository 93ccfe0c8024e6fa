"""Redis: the pipelined connection, the Lua scripts (lua/), key names and their layout
(layout.py: the version a store is marked with, and the migration), leases, timers.

The bottom layer: imports only the base modules (settings, clock), never the layers above.
"""
