"""Drivers of the result tables and speed studies (not part of the harness; they use it)."""
