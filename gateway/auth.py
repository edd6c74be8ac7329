"""The HTTP API key (a bearer token) and signed links for what a browser fetches without headers.

A `<video src>`, an `<a download>` and an `EventSource` cannot send an Authorization
header, so the API hands out links to a job's events and artifacts that carry an expiry
and an HMAC of (path, expiry) keyed by the API key. A signature opens exactly one path
(one job's one artifact, or its events) until it expires, and never reveals the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from fastapi import HTTPException, Request

LINK_SECONDS = 6 * 3600     # how long a signed link works
_CONTEXT = b"tabagent-link-v1"


def unauthorized(message: str) -> HTTPException:
    """A 401 that tells the client to send a bearer token."""
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="tabagent"'})


class Auth:
    """Checks requests against the API key; with no key configured every request passes.

    Args:
        api_key: the shared secret ("" = no authentication).
        link_seconds: lifetime of signed links.
    """

    def __init__(self, api_key: str, link_seconds: int = LINK_SECONDS) -> None:
        self.api_key = api_key
        self.link_seconds = link_seconds
        self._link_key = hmac.new(api_key.encode(), _CONTEXT, hashlib.sha256).digest() if api_key else b""

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def _signature(self, path: str, expires: int) -> str:
        msg = f"{path}\n{expires}".encode()
        return hmac.new(self._link_key, msg, hashlib.sha256).hexdigest()

    def link(self, path: str, now: float | None = None) -> str:
        """`path` itself without a key, else `path?exp=...&sig=...`."""
        if not self.enabled:
            return path
        expires = int(now if now is not None else time.time()) + self.link_seconds
        return f"{path}?{urlencode({'exp': expires, 'sig': self._signature(path, expires)})}"

    def token_ok(self, token: str) -> bool:
        """Whether a bearer token is the key (the gRPC API checks its calls with this too)."""
        return bool(token) and hmac.compare_digest(token.encode(), self.api_key.encode())

    def _bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(token.strip())

    def _link_ok(self, request: Request) -> bool:
        sig = request.query_params.get("sig", "")
        exp = request.query_params.get("exp", "")
        if not sig or not exp.isdigit() or int(exp) < time.time():
            return False
        expected = self._signature(request.url.path, int(exp))
        return hmac.compare_digest(sig.encode(), expected.encode())

    def require_key(self, request: Request) -> None:
        """FastAPI dependency: the bearer token must match.

        Raises:
            HTTPException: 401 with WWW-Authenticate.
        """
        if self.enabled and not self._bearer_ok(request):
            raise unauthorized("this endpoint needs the API key: send 'Authorization: Bearer <key>'")

    def require_key_or_link(self, request: Request) -> None:
        """FastAPI dependency: the bearer token, or a valid signed link for this very path.

        Raises:
            HTTPException: 401 with WWW-Authenticate.
        """
        if self.enabled and not self._bearer_ok(request) and not self._link_ok(request):
            raise unauthorized("this link needs the API key ('Authorization: Bearer <key>') or a valid "
                               "signature; get fresh links from GET /v1/jobs/{id}")
