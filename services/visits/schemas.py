"""Visits' payloads: In (requests), Out (responses), QueryArgs."""
