"""Object storage: backends, streaming copies, artifacts and uploads."""
