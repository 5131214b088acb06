"""Alembic migrations (run with `cometjobs migrate`)."""
