"""Visits' use cases. Each takes a session and plain values and owns its transaction."""
