"""Object storage: backends (local disk, S3), streaming copies, artifacts, retention and uploads."""
