"""Analyzers: one per module, each registered with `workers.analyzers.registry.register`."""
