"""Numbers as request bodies declare them. pydantic's lax mode reads JSON `true` as 1
and `"5"` as 5; a field that says integer (or number) takes only that."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

# Nothing wider than the 64-bit integers Postgres and most callers hold.
StrictInt = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
# An integer is a number too; a boolean or a string is not.
StrictFloat = Annotated[float, Strict()]

__all__ = ["StrictFloat", "StrictInt"]
