"""Outbound delivery: queued replies and brand reactions sent through the Send API, at most once."""
