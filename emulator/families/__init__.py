"""One module per CometAPI family, each exposing a FastAPI `router`."""
