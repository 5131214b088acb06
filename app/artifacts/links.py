"""Signed, expiring links to a caller's upload, for upstreams that fetch an input
themselves and take nothing but an https URL (Runway's `promptImage` and
`references`). The link is served by our own API without an API key: the HMAC over
the upload id and the expiry is the authorisation, so it works for every storage
backend. It is only as public as `PUBLIC_BASE_URL` makes it, which is why it must be
https (and reachable from the internet) for such jobs to be accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from urllib.parse import urlencode

from app.core.settings import Settings, get_settings

# Long enough for the upstream to fetch the image while its task waits in a queue;
# short enough that a link copied out of a log is soon worthless.
LINK_TTL = timedelta(hours=1)


def https_available(settings: Settings | None = None) -> bool:
    return (settings or get_settings()).public_base_url.startswith("https://")


def _key(settings: Settings) -> bytes:
    # No setting of its own: derived from the secrets every API and worker process shares,
    # so rotating the CometAPI key (or the database password) also retires old links.
    key = settings.cometapi_key.get_secret_value() if settings.cometapi_key else ""
    material = f"cometjobs upload links\0{key}\0{settings.database_url}".encode()
    return hashlib.sha256(material).digest()


def signature(upload_id: str, expires: int, settings: Settings | None = None) -> str:
    message = f"{upload_id}.{expires}".encode()
    return hmac.new(_key(settings or get_settings()), message, hashlib.sha256).hexdigest()


def signed_url(upload_id: str, now: datetime, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    expires = int((now + LINK_TTL).timestamp())
    query = urlencode({"expires": expires, "signature": signature(upload_id, expires, settings)})
    return f"{settings.public_base_url}/v1/uploads/{upload_id}/content?{query}"


def valid(upload_id: str, expires: int, offered: str, now: datetime) -> bool:
    if expires < now.timestamp():
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (a forged signature).
    return hmac.compare_digest(signature(upload_id, expires).encode(), offered.encode())
