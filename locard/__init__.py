"""Locard's command line: the thin composition root that starts the embedded stack and talks to the API."""
