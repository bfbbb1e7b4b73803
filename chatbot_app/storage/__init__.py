"""Persistence: SQLModel tables, the engine, and plain functions that take a Session."""
