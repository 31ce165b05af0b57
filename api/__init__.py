"""Locard's case API (FastAPI). It depends on storage only: no workers, models, torch or Ray."""
