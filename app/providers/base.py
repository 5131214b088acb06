"""The adapter interface every CometAPI family implements, and its data types.

An adapter is pure translation: it validates a caller's input for one model,
builds the upstream requests, and parses upstream answers into one status
vocabulary. It never performs I/O; the pipeline does that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any, ClassVar, final

import structlog
from pydantic import BaseModel

from app.core.errors import FieldError, ValidationFailed

log = structlog.get_logger(__name__)


class UpstreamState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class UnreadableAnswer(Exception):
    """An upstream answer (create, poll or batch poll) whose shape the adapter cannot read."""


@dataclass(frozen=True)
class InputFile:
    """A file the create request must carry (multipart, inline), or, when `url` is set, a
    caller's upload the upstream fetches itself from that short-lived signed link."""

    field: str
    filename: str
    content_type: str
    open: Callable[[], IO[bytes]]
    url: str | None = None


@dataclass
class UpstreamRequest:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    files: list[InputFile] = field(default_factory=list)
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    # Seconds to wait for the answer, when the call is slower than usual (synchronous families).
    timeout: float | None = None


@dataclass
class ArtifactSource:
    """Where one result lives: a CometAPI request (authenticated), a plain URL, or the
    bytes themselves (`data`: results the upstream answers inline, e.g. `b64_json` images)."""

    name: str
    request: UpstreamRequest | None = None
    url: str | None = None
    optional: bool = False
    content_type: str | None = None
    data: bytes | None = None


@dataclass
class PollResult:
    state: UpstreamState
    raw_status: str | None = None
    progress: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    outputs: list[ArtifactSource] = field(default_factory=list)
    payload: dict[str, Any] | None = None
    # The upstream's own times, normalised from seconds, milliseconds or ISO 8601.
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class CreateResult:
    upstream_id: str
    # Synchronous families answer with the result at once.
    immediate: PollResult | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model as the catalogue describes it (configuration, not code)."""

    id: str
    family: str
    kind: str
    upstream_model: str
    options: Mapping[str, Any]
    poll_first_delay: float
    poll_interval: float
    poll_interval_max: float
    queue_deadline: float
    stall_deadline: float
    absolute_deadline: float
    # CometAPI's pages for the calls this model makes, and, where a call or a field is not
    # documented there, what we guessed (None: every call is documented).
    sources: tuple[str, ...] = ()
    unverified: str | None = None
    # Upstream tasks of this model, and of its family, in flight at once (0: no cap);
    # what one job of it costs, for daily budgets (0: free).
    max_in_flight: int = 0
    family_max_in_flight: int = 0
    price: float = 0.0

    @property
    def verified(self) -> bool:
        return self.unverified is None

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass
class ValidationContext:
    """What an adapter may look up while validating: the caller's own records."""

    client_id: str
    get_job: Callable[[str], Any]
    get_upload: Callable[[str], Any]


IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}
URL_SCHEMES = ("https://", "http://")


@dataclass(frozen=True)
class InputWarning:
    """Something in an accepted input the upstream may not do as the caller expects; it
    lands on the job's timeline instead of refusing the job."""

    field: str
    message: str
    code: str


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

    def image(
        self, field: str, ref: str, ctx: ValidationContext, *, types: Mapping[str, str] | None = None,
        https_only: bool = False,
    ) -> Any:
        """An `upl_...` upload of the caller's that is an image, or an http(s) URL (https only
        where the upstream documents that); returns the upload when it is one (for further
        checks, e.g. its dimensions). `types` narrows the image types: content type -> name."""
        allowed = types or {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
        if ref.startswith("upl_"):
            upload = ctx.get_upload(ref)
            if upload is None:
                self.add(field, f"no upload {ref} of yours exists", "not_found")
            elif upload.content_type not in allowed:
                self.add(field, f"upload {ref} is {upload.content_type}; {self.spec.id} takes "
                         f"{' or '.join(allowed.values())} images", "not_an_image")
            else:
                return upload
        elif https_only and not ref.startswith("https://"):
            self.add(field, "must be an upload id (upl_...) or an https image URL", "invalid_reference")
        elif not ref.startswith(URL_SCHEMES):
            self.add(field, "must be an upload id (upl_...) or an http(s) image URL", "invalid_reference")
        return None

    def url(self, field: str, ref: str, what: str = "video", https_only: bool = False) -> None:
        if https_only and not ref.startswith("https://"):
            self.add(field, f"must be an https URL of a {what}", "invalid_url")
        elif not ref.startswith(URL_SCHEMES):
            self.add(field, f"must be an http(s) URL of a {what}", "invalid_url")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in self.errors), errors=self.errors)


class Adapter:
    """Base class: subclasses set `family` and `input_model` and override the hooks:
    `check` for the input rules, then the upstream calls (`build_*` / `parse_*`). A
    `parse_*` hook raises UnreadableAnswer for an answer whose shape it cannot read."""

    family: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    # False for the synchronous families: the create answer is the result, there is no task to poll.
    pollable: ClassVar[bool] = True
    # > 0 when the family has a batch fetch endpoint: the poller then asks for up to
    # this many tasks in one call (build_batch_poll / parse_batch_poll).
    batch_poll_size: ClassVar[int] = 0

    @final
    def validate(self, spec: ModelSpec, raw: dict[str, Any], ctx: ValidationContext) -> dict[str, Any]:
        """The input a job stores, or ValidationFailed naming every problem at once (pydantic's
        ValidationError when `raw` does not even fit `input_model`)."""
        data = self.input_model.model_validate(raw)
        job_input = data.model_dump(mode="json", exclude_none=True)
        problems = Problems(spec)
        self.check(spec, data, job_input, ctx, problems)
        problems.raise_if_any()
        return job_input

    def check(
        self, spec: ModelSpec, data: Any, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        """Add every problem with `data` (an `input_model`) to `problems`, and complete
        `job_input` (the input as given) with what the job must remember, e.g. defaults."""

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        """(multipart field, reference) pairs the create call needs resolved to files."""
        return []

    def input_links(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        """(label, upload id) pairs the upstream must fetch itself, by an https link to our
        storage: they reach `build_create` as InputFiles with `url` set."""
        return []

    def input_warnings(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[InputWarning]:
        """What in an accepted input (as stored) the job's timeline should warn about."""
        return []

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        raise NotImplementedError

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        raise NotImplementedError

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        raise NotImplementedError

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        raise NotImplementedError

    def batch_key(self, spec: ModelSpec) -> str:
        """Models whose batch requests differ (Suno's `action`) are batched apart."""
        return ""

    def build_batch_poll(self, spec: ModelSpec, upstream_ids: list[str]) -> UpstreamRequest:
        raise NotImplementedError

    def parse_batch_poll(self, spec: ModelSpec, upstream_ids: list[str], body: Any) -> dict[str, PollResult]:
        """Results by upstream id; an id missing from the answer is polled again later."""
        raise NotImplementedError

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        raise NotImplementedError

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        return dict(spec.options)


def upstream_state(spec: ModelSpec, word: Any) -> UpstreamState:
    """An upstream status word in our vocabulary, from the model's catalogue `statuses`;
    an unknown word means keep polling."""
    if word is None:
        return UpstreamState.UNKNOWN
    if not isinstance(word, str):
        raise UnreadableAnswer(f"the status is not a word: {str(word)[:200]}")
    table: Mapping[str, str] = spec.option("statuses") or {}
    state = table.get(word) or table.get(word.lower())
    if state is None:
        _log_unknown_status_once(spec.family, word)
        return UpstreamState.UNKNOWN
    return UpstreamState(state)


_seen_unknown: set[tuple[str, str]] = set()


def _log_unknown_status_once(family: str, word: str) -> None:
    if (family, word) not in _seen_unknown:
        _seen_unknown.add((family, word))
        log.warning("upstream_unknown_status", family=family, status_word=word)


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_progress(value: Any) -> int | None:
    """Integers, floats (0–1 or 0–100) and strings like "58%" become 0–100."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if -1e300 < value < 1e300 else math.inf  # JSON integers outgrow floats
        if 0 < number < 1 and isinstance(value, float):
            number *= 100
    elif isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            return None
        number = float(match.group(1))
    else:
        return None
    if not math.isfinite(number):
        return None
    return max(0, min(100, round(number)))


def parse_timestamp(value: Any) -> datetime | None:
    """Unix seconds, Unix milliseconds or ISO 8601 strings, to aware UTC (None for other
    values; UnreadableAnswer for a number no date can hold)."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            raise UnreadableAnswer(f"time {value!r} is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isdecimal():
            return parse_timestamp(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    """`value` when it is a JSON object; otherwise the answer is unreadable."""
    if not isinstance(value, Mapping):
        raise UnreadableAnswer(f"{what} is not an object: {str(value)[:200]}")
    return value


def first(mapping: Any, *paths: str) -> Any:
    """The first non-empty value at any dotted path (`data.task_result.videos.0.url`)."""
    for path in paths:
        node = mapping
        for part in path.split("."):
            if isinstance(node, Mapping):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
            if node is None:
                break
        if node not in (None, "", [], {}):
            return node
    return None


def names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))
