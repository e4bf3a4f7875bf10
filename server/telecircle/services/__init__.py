"""Concurrency, persistence and timers around the pure domain."""
