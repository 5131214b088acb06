"""Object storage infrastructure: backends (local disk, S3) and streaming copies.
No database here: the rows that point at stored objects belong to `app.artifacts`."""
