"""Locard workers: intake dispatch, analyzers and matchers, running on Ray."""
