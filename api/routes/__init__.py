"""Routers of the case API, versioned under /api/v1."""
