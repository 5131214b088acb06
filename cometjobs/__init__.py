"""The `cometjobs` command: the composition root that starts each part of the service.

It sits above both layers (`workers/ → app/ → app/core/`): it may import the worker
app to run it; nothing below imports this package.
"""
