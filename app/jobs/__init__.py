"""Jobs: the state machine, the API, and the pipeline (submit, poll, collect, sweep)."""
