"""Webhooks: signed, ordered, retried, visible, replayable, SSRF-safe."""
