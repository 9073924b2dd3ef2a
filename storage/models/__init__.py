"""Model-plane records and stores: the ModelStore protocol, in-memory and SQLite."""
