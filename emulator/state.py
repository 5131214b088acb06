"""The emulator's switches, its tasks and what it saw."""

from __future__ import annotations

import hashlib
import random
import re
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Config:
    job_seconds: float = 5.0
    content_bytes: int = 256 * 1024
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    api_key: str | None = None
    # Extra wait inside a create call, after the task exists upstream: a worker killed
    # during it leaves an upstream task whose id it never learned.
    create_delay: float = 0.0
    # Bytes per second for downloads (0: unlimited), and a byte count after which a
    # download is cut off (None: never), for slow and interrupted copies.
    download_rate: float = 0.0
    cut_download_at: int | None = None
    cut_downloads: int = 1_000_000
    variants: tuple[str, ...] = ("video", "thumbnail")
    seed: int = 0
    # Unfinished tasks the account may have at once (0: no limit); a create beyond it is
    # answered 429 with Retry-After, as a saturated provider answers.
    max_in_flight: int = 0

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            if key == "variants" and isinstance(value, list):
                value = tuple(value)
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["api_key"] = bool(self.api_key)
        return out


class Saturated(Exception):
    """A create beyond `max_in_flight` unfinished tasks."""

    def __init__(self, in_flight: int) -> None:
        super().__init__(f"{in_flight} tasks in flight")
        self.in_flight = in_flight


@dataclass
class Task:
    id: str
    family: str
    model: str
    prompt: str
    created: float
    job_seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    fail: bool = False
    stall: bool = False
    odd_status: str | None = None
    content_bytes: int = 0
    polls: int = 0
    poll_times: list[float] = field(default_factory=list)
    create_delay: float | None = None
    download_rate: float | None = None

    def polled(self) -> None:
        self.polls += 1
        self.poll_times.append(time.monotonic())

    def phase(self, now: float | None = None) -> tuple[str, int]:
        """("queued" | "running" | "succeeded" | "failed" | "odd", progress)."""
        if self.stall:  # never ends by itself, whatever the global job length (even instant)
            return "running", 42
        elapsed = (now or time.monotonic()) - self.created
        if self.job_seconds <= 0:
            return ("failed" if self.fail else "succeeded"), 100
        fraction = elapsed / self.job_seconds
        if fraction < 0.15:
            return "queued", 0
        if fraction < 1:
            if self.odd_status and fraction > 0.4:
                return "odd", int(fraction * 100)
            return "running", min(99, int(fraction * 100))
        return ("failed" if self.fail else "succeeded"), 100


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.totals: Counter[str] = Counter()
        self.per_model: dict[str, Counter[str]] = defaultdict(Counter)
        self.served_sha256: dict[str, str] = {}
        self.faults: Counter[str] = Counter()

    def batch(self, ids: int) -> None:
        """One batch fetch call asking for `ids` tasks: counted, and the largest kept."""
        with self.lock:
            self.totals["batch_calls"] += 1
            self.totals["batch_max_ids"] = max(self.totals["batch_max_ids"], ids)

    def count(self, kind: str, model: str | None) -> None:
        with self.lock:
            self.totals[kind] += 1
            if model:
                self.per_model[model][kind] += 1

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "creates": self.totals["creates"],
                "polls": self.totals["polls"],
                "downloads": self.totals["downloads"],
                "totals": dict(self.totals),
                "faults": dict(self.faults),
                "per_model": {m: dict(c) for m, c in self.per_model.items()},
                "served_sha256": dict(self.served_sha256),
            }


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.tasks: dict[str, Task] = {}
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self.cuts = 0
        self.open: set[str] = set()

    def add(self, task: Task) -> Task:
        with self.lock:
            limit = self.config.max_in_flight
            if limit > 0:
                now = time.monotonic()
                self.open = {t for t in self.open if self.tasks[t].phase(now)[0] not in ("succeeded", "failed")}
                if len(self.open) >= limit:
                    self.stats.faults["saturated"] += 1
                    raise Saturated(len(self.open))
                self.open.add(task.id)
            self.tasks[task.id] = task
        self.stats.count("creates", task.model)
        return task

    def new_task(self, family: str, model: str, prompt: str, prefix: str, **params: Any) -> Task:
        """A task whose behaviour the prompt may steer per task: `[fail]`, `[stall]`,
        `[odd-status]`, and `[job-seconds=N]`, `[content-bytes=N]`, `[create-delay=N]`,
        `[download-rate=N]` overriding the global switches for this task alone."""
        lowered = prompt.lower()
        odd = None
        if "[odd-status]" in lowered:
            odd = "rendering_on_mars"
        tags = {k: float(v) for k, v in _TAG.findall(lowered)}
        task = Task(
            id=f"{prefix}{hashlib.sha1(f'{time.time_ns()}-{self.rng.random()}'.encode()).hexdigest()[:24]}",
            family=family, model=model, prompt=prompt, created=time.monotonic(),
            job_seconds=tags.get("job-seconds", self.config.job_seconds), params=params,
            fail="[fail]" in lowered, stall="[stall]" in lowered, odd_status=odd,
            content_bytes=int(tags.get("content-bytes", self.config.content_bytes)),
            create_delay=tags.get("create-delay"), download_rate=tags.get("download-rate"),
        )
        return self.add(task)

    def create_delay(self, task: Task) -> float:
        return self.config.create_delay if task.create_delay is None else task.create_delay

    def reset(self) -> None:
        with self.lock:
            self.tasks.clear()
            self.open.clear()
        self.stats.reset()
        self.cuts = 0


_TAG = re.compile(r"\[(job-seconds|content-bytes|create-delay|download-rate)=(\d+(?:\.\d+)?)\]")


# A real MP4 (H.264, 64x64, 8 frames, 1 s; moov first), made once with PyAV's libx264.
SAMPLE_MP4 = (Path(__file__).parent / "sample.mp4").read_bytes()


def content_stream(seed: str, size: int, chunk: int = 256 * 1024, media_type: str | None = None) -> Iterator[bytes]:
    """Deterministic bytes for (task, variant), exactly `size` of them. A video/mp4 of at
    least SAMPLE_MP4's size is a playable MP4: the sample, then a `free` box (which
    players skip) padding it to `size`. The rest is a 1 MiB block derived from the seed,
    repeated and cut; nothing larger than the block is ever held."""
    if media_type == "video/mp4" and size >= len(SAMPLE_MP4) + 16:
        rest = size - len(SAMPLE_MP4)
        header = struct.pack(">I4s", rest, b"free") if rest <= 0xFFFFFFFF else struct.pack(">I4sQ", 1, b"free", rest)
        yield SAMPLE_MP4 + header
        yield from _noise(seed, rest - len(header), chunk)
        return
    yield from _noise(seed, size, chunk)


def _noise(seed: str, size: int, chunk: int) -> Iterator[bytes]:
    block = random.Random(seed).randbytes(1 << 20)
    sent = 0
    while sent < size:
        offset = sent % len(block)
        piece = block[offset : offset + min(chunk, size - sent, len(block) - offset)]
        sent += len(piece)
        yield piece


def content_sha256(seed: str, size: int, media_type: str | None = None) -> str:
    digest = hashlib.sha256()
    for piece in content_stream(seed, size, media_type=media_type):
        digest.update(piece)
    return digest.hexdigest()
