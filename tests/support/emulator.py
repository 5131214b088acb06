"""Control of a running CometAPI emulator over its `/_emulator` admin routes."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULTS: dict[str, Any] = {
    "job_seconds": 1.0, "content_bytes": 300_000, "error_rate": 0.0, "throttle_rate": 0.0,
    "retry_after": 1.0, "latency": 0.0, "create_delay": 0.0, "download_rate": 0.0,
    "cut_download_at": None, "cut_downloads": 1_000_000, "variants": ["video", "thumbnail"],
}


class Emulator:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.http = httpx.Client(base_url=url, timeout=10)

    def configure(self, **switches: object) -> None:
        self.http.post("/_emulator/config", json=switches).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()
        self.configure(**DEFAULTS, api_key=self.api_key)

    def stats(self) -> dict:
        return self.http.get("/_emulator/stats").json()

    def tasks(self) -> list[dict]:
        return self.http.get("/_emulator/tasks").json()

    def download(self, path: str, **params: str) -> bytes:
        response = self.http.get(path, params=params, headers={"Authorization": f"Bearer {self.api_key}"})
        response.raise_for_status()
        return response.content
