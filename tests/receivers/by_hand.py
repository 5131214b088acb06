"""README's by-hand verification, verbatim (tests/test_receivers.py checks README still
holds this exact code, and runs it against the same deliveries and forgeries)."""

# fmt: off
import base64, binascii, hashlib, hmac, time  # noqa: E401, I001
from collections.abc import Mapping

def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int = 300) -> bool:
    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, signatures = h["webhook-id"], int(h["webhook-timestamp"]), h["webhook-signature"]
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (KeyError, ValueError, binascii.Error):
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, part[3:]) for part in signatures.split() if part.startswith("v1,"))
