"""Cross-cutting plumbing: settings, database, errors, ids, logging, queueing."""
