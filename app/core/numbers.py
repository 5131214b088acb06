"""Numbers as request bodies declare them. pydantic's lax mode reads JSON `true` as 1
and `"5"` as 5; a field that says integer (or number) takes only that."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

# Nothing wider than the 64-bit integers Postgres and most callers hold. Stated as
# exclusive bounds so that a field's own `ge`/`le` adds to them: metadata in the type
# would replace a field's constraint of the same name.
StrictInt = Annotated[int, Strict(), Field(gt=-(2**63) - 1, lt=2**63)]
# An integer is a number too; a boolean or a string is not.
StrictFloat = Annotated[float, Strict()]

__all__ = ["StrictFloat", "StrictInt"]
