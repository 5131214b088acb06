from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.core.boundary import CheckedRoute
from app.core.deps import ClientDep
from app.core.errors import problem_responses
from app.providers.registry import adapter_for, catalog

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=CheckedRoute)


class ModelOut(BaseModel):
    id: str
    family: str
    kind: str
    upstream_model: str
    verified: bool = Field(description="Every call this model makes is documented by CometAPI (see `sources`).")
    sources: list[str] = Field(description="CometAPI's pages for the calls this model makes.")
    unverified: str | None = Field(
        None, description="When `verified` is false: what is guessed, because CometAPI does not document it."
    )
    input_schema: dict[str, Any]
    constraints: dict[str, Any]
    example_input: dict[str, Any]


class ModelList(BaseModel):
    data: list[ModelOut]


def describe_models() -> list[ModelOut]:
    out = []
    for spec in sorted(catalog().values(), key=lambda s: (s.family, s.id)):
        adapter = adapter_for(spec)
        out.append(ModelOut(
            id=spec.id, family=spec.family, kind=spec.kind, upstream_model=spec.upstream_model,
            verified=spec.verified, sources=list(spec.sources), unverified=spec.unverified,
            input_schema=adapter.input_model.model_json_schema(),
            constraints=adapter.constraints(spec), example_input=adapter.example_input(spec),
        ))
    return out


@router.get(
    "",
    response_model=ModelList,
    operation_id="listModels",
    summary="Every model: family, kind, input schema, constraints and a valid example input",
    responses=problem_responses(401, 503),
)
def list_models(_client: ClientDep) -> ModelList:
    return ModelList(data=describe_models())
