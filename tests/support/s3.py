"""moto's standalone S3 server on loopback (a real process, real HTTP), for the S3 backend."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.support.procs import Service, free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


class MotoS3:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.service = Service(
            f"moto-s3-{self.port}",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            dict(os.environ), log_dir,
        )
        self.client: Any = None

    def start(self) -> MotoS3:
        self.service.start()
        self.service.wait_http(f"{self.endpoint}/moto-api/")
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"}),
        )
        return self

    def stop(self) -> None:
        self.service.stop()

    def new_bucket(self) -> str:
        name = f"cj-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def uploads_in_progress(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        return self.client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])

    def get(self, bucket: str, key: str) -> dict[str, Any]:
        answer = self.client.get_object(Bucket=bucket, Key=key)
        return {**answer, "Body": answer["Body"].read()}

    def standard_env(self) -> dict[str, str]:
        """The AWS tools' own variables, as an operator would set them for any S3 client."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }
