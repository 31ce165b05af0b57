"""Locard storage: settings, the evidence object store, the record store and the durable job queue."""
