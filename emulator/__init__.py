"""A CometAPI emulator served over real HTTP (tests, `make dev`, benchmarks).

Not part of the gateway's import path: `app/` never imports it.
"""
