"""Who is signed in to the console, and proof that a form came from the console.

The session is a cookie signed with COMETJOBS_CONSOLE_SECRET (itsdangerous, timestamped,
refused once older than CONSOLE_SESSION_TTL): HttpOnly, SameSite=Strict, Secure when
PUBLIC_BASE_URL is https, scoped to /console. It names an admin client, the first
characters of its key's hash (a rotated or revoked key ends every session signed in
with it) and a random CSRF token that every form carries back and every POST checks.
Before sign-in, a short-lived cookie of its own carries the login form's token.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from app.clients.models import Client
from app.core.settings import get_settings

SESSION_COOKIE = "cometjobs_console"
LOGIN_COOKIE = "cometjobs_console_login"
COOKIE_PATH = "/console"
LOGIN_TTL_SECONDS = 3600
# Enough of the key's hash to tell a rotated key from the one signed in with.
KEY_FINGERPRINT_CHARS = 16


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in form, JSON answers 401."""


class CSRFRefused(Exception):
    """A POST without the form's token (another site's form, a stale page)."""


@dataclass(frozen=True)
class ConsoleUser:
    client: Client
    csrf_token: str


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().console_signing_key, salt=salt)


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=get_settings().public_base_url.startswith("https://"),
    )


def _ttl() -> int:
    return int(get_settings().console_session_ttl.total_seconds())


def start_session(response: Response, client: Client) -> None:
    token = secrets.token_urlsafe(32)
    value = _serializer("session").dumps(
        {"c": client.id, "k": client.api_key_hash[:KEY_FINGERPRINT_CHARS], "t": token}
    )
    _cookie(response, SESSION_COOKIE, value, _ttl())
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def _load(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> Any:
    if not value:
        return None
    try:
        return serializer.loads(value, max_age=max_age)
    except BadSignature:  # tampered, signed with another secret, or expired
        return None


def current_user(request: Request, session: Session) -> ConsoleUser:
    data = _load(_serializer("session"), request.cookies.get(SESSION_COOKIE), _ttl())
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("c", "k", "t")):
        raise NotSignedIn()
    client = session.get(Client, data["c"])
    if (
        client is None or not client.is_admin or client.revoked_at is not None
        or not hmac.compare_digest(client.api_key_hash[:KEY_FINGERPRINT_CHARS], data["k"])
    ):
        raise NotSignedIn()
    return ConsoleUser(client=client, csrf_token=data["t"])


def login_token(request: Request) -> tuple[str, bool]:
    """The sign-in form's CSRF token: the one its cookie already holds (another tab's form
    stays valid), or a new one, True when the cookie must be set (`remember_login_token`)."""
    token = _load(_serializer("login"), request.cookies.get(LOGIN_COOKIE), LOGIN_TTL_SECONDS)
    if isinstance(token, str):
        return token, False
    return secrets.token_urlsafe(32), True


def remember_login_token(response: Response, token: str) -> None:
    _cookie(response, LOGIN_COOKIE, _serializer("login").dumps(token), LOGIN_TTL_SECONDS)


def check_login_token(request: Request, sent: str | None) -> None:
    expected = _load(_serializer("login"), request.cookies.get(LOGIN_COOKIE), LOGIN_TTL_SECONDS)
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise CSRFRefused()


def check_csrf(user: ConsoleUser, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(user.csrf_token, sent):
        raise CSRFRefused()
