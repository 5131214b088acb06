"""Answers serialised once. An endpoint that returns a pydantic model has FastAPI
validate it again against `response_model` and serialise it a second way; the hot
endpoints build the model themselves and return its JSON (the spec still documents
`response_model`)."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def model_json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json", headers=headers)


__all__ = ["model_json"]
