"""Offline-first sync between office boxes and the central instance (see docs/sync.md)."""
