"""`make fuzz`: schemathesis over openapi/openapi.json against a live stack of its own.

A scratch Postgres database (migrated), a Redis key prefix of its own, `cometjobs api` on
a free port and an admin client's key; then `schemathesis run` with a bounded budget:
FUZZ_MAX_EXAMPLES cases per operation and phase, FUZZ_MAX_TIME seconds in all. The exit
code is schemathesis's: any 5xx, or any answer the spec does not describe, fails it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
MAX_TIME = os.environ.get("FUZZ_MAX_TIME", "180")
SEED = os.environ.get("FUZZ_SEED")


def _base_env(run: str, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COMETJOBS_ENV": "test",
        "COMETJOBS_LOG_FORMAT": "json",
        "COMETJOBS_LOG_LEVEL": "WARNING",
        "COMETJOBS_BROKER_URL": os.environ.get("COMETJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "COMETJOBS_BROKER_KEY_PREFIX": f"cjfuzz-{run}:",
        "COMETJOBS_DATA_DIR": str(data),
    }


def _forget_broker_keys(env: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(env["COMETJOBS_BROKER_URL"])
    keys = list(client.scan_iter(f"{env['COMETJOBS_BROKER_KEY_PREFIX']}*"))
    if keys:
        client.delete(*keys)


def main() -> int:
    from tests.support.stack import Stack

    run = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix=f"cometjobs-fuzz-{run}-"))
    stack = Stack("fuzz", root, _base_env(run, root / "data"))
    try:
        stack.create_database()
        stack.start_api()
        admin = stack.create_client("fuzz", None, "--admin")
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run", str(SPEC),
            "--url", f"http://127.0.0.1:{stack.api_port}",
            "--header", f"Authorization: Bearer {admin['api_key']}",
            "--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME,
            "--request-timeout", "30", "--workers", "2", "--no-color",
            *(["--seed", SEED] if SEED else []),
            *sys.argv[1:],
        ]
        print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in command), flush=True)
        code = subprocess.call(command, cwd=root)
        api_log = stack.services[0].log()
        if '"internal_error"' in api_log:
            print("the API logged internal errors:", file=sys.stderr)
            print("\n".join(line for line in api_log.splitlines() if "internal_error" in line)[:20000], file=sys.stderr)
            code = code or 1
        return code
    finally:
        stack.stop()
        _forget_broker_keys(stack.env)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
