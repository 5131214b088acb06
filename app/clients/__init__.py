"""Clients: internal callers, their API keys and webhook secrets."""
