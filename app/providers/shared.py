"""Pieces the video adapters share: collecting field errors, checking image and
video references, turning uploads into inline images, and reading catalogue-driven
result locations."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from app.core.errors import FieldError, ValidationFailed
from app.providers.base import (
    InputFile,
    ModelSpec,
    ValidationContext,
    first,
)

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}
URL_SCHEMES = ("https://", "http://")


class Problems:
    """Every problem with one input, each naming its field, raised together."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(field=f"input.{field}", message=message, code=code))

    def choice(self, field: str, value: Any, allowed: Iterable[Any]) -> None:
        options = [str(a) for a in allowed]
        if str(value) not in options:
            self.add(field, f"{value!r} is not allowed for {self.spec.id}; choose one of {', '.join(options)}",
                     "not_allowed")

    def unsupported(self, data: Any, allowed_fields: Iterable[str], all_fields: Iterable[str]) -> None:
        allowed = set(allowed_fields)
        for name in all_fields:
            if name not in allowed and getattr(data, name, None) is not None:
                self.add(name, f"not supported by {self.spec.id}", "unsupported_field")

    def max_length(self, field: str, value: str | None, limit: int | None) -> None:
        if value is not None and limit is not None and len(value) > limit:
            self.add(field, f"at most {limit} characters for {self.spec.id}; this has {len(value)}", "too_long")

    def image(self, field: str, ref: str, ctx: ValidationContext) -> None:
        """An `upl_...` upload of the caller's that is an image, or an http(s) URL."""
        if ref.startswith("upl_"):
            upload = ctx.get_upload(ref)
            if upload is None:
                self.add(field, f"no upload {ref} of yours exists", "not_found")
            elif upload.content_type not in IMAGE_TYPES:
                self.add(field, f"upload {ref} is {upload.content_type}; an image (PNG, JPEG, WebP) is required",
                         "not_an_image")
        elif not ref.startswith(URL_SCHEMES):
            self.add(field, "must be an upload id (upl_...) or an http(s) image URL", "invalid_reference")

    def url(self, field: str, ref: str, what: str = "video") -> None:
        if not ref.startswith(URL_SCHEMES):
            self.add(field, f"must be an http(s) URL of a {what}", "invalid_url")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in self.errors), errors=self.errors)


def uploads_among(pairs: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """The (label, upload id) pairs the pipeline must resolve; URLs go upstream as they are."""
    return [(label, ref) for label, ref in pairs if ref and ref.startswith("upl_")]


def inline_image(ref: str, label: str, files: list[InputFile], data_uri: bool = True) -> str:
    """A URL as given, or the resolved upload as base64 (a `data:` URI unless the upstream wants it bare)."""
    for item in files:
        if item.field == label:
            with item.open() as fh:
                encoded = base64.b64encode(fh.read()).decode()
            return f"data:{item.content_type};base64,{encoded}" if data_uri else encoded
    return ref


def result_url(body: Any, paths: Iterable[str]) -> str | None:
    value = first(body, *paths)
    return value if isinstance(value, str) and value.startswith(URL_SCHEMES) else None


def numbered(name: str, count: int, index: int) -> str:
    """`video` for a single result, `video_1`, `video_2`, ... for several."""
    return name if count == 1 else f"{name}_{index + 1}"
