"""Newsletter's payloads: In (requests), Out (responses), QueryArgs."""
