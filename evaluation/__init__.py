"""Locard evaluation: accuracy and speed benchmarks that write JSON results."""
