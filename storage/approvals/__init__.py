"""Approval stores: the Store protocol, the in-memory store and the SQLite store."""
