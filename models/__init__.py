"""Locard model layer: inference wrappers with no I/O of their own."""
