"""Test support: real processes, real sockets, deadline-based waiting."""
