"""`make bench`: WebSocket round trips of a bare echo endpoint vs the real `sign_in` op."""
