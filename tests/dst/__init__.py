"""Deterministic simulation testing of the task engine and everything below it."""
