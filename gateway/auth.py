"""HTTP authentication: the bearer key (checked by gateway/keys.py) and signed links for
what a browser fetches without headers.

A `<video src>`, an `<a download>` and an `EventSource` cannot send an Authorization
header, so the API hands out links to a job's events and artifacts that carry an expiry
and an HMAC of (path, expiry) keyed by the API key. A signature opens exactly one path
(one job's one artifact, or its events) until it expires, and never reveals the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.keys import KeyRing, Principal

# A signed link opens exactly the path it was made for, whoever holds it.
LINK = Principal("(signed link)", admin=True)

LINK_SECONDS = 6 * 3600     # how long a signed link works
_CONTEXT = b"tabagent-link-v1"
# Declared on the checks below only so that the OpenAPI document names the scheme (and
# Swagger UI's "Authorize" fills it in); the checks read the header themselves.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearerAuth",
                    description="An API key (a user's, or TABAGENT_API_KEY) as `Authorization: Bearer <key>`; "
                                "not needed when the gateway has none.")


def unauthorized(message: str) -> HTTPException:
    """A 401 that tells the client to send a bearer token."""
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="tabagent"'})


class Auth:
    """Checks requests against the API keys; with no key configured every request passes.

    Args:
        api_key: the shared secret (TABAGENT_API_KEY, "" = none); also signs links
            unless `link_secret` is given.
        link_seconds: lifetime of signed links.
        keys: the key ring (default: one made of `api_key` alone).
        link_secret: the secret links are signed with; every replica must share it (the
            app takes it from the job store's settings when only a keys file is used).
    """

    def __init__(self, api_key: str = "", link_seconds: int = LINK_SECONDS, keys: KeyRing | None = None,
                 link_secret: str = "") -> None:
        self.api_key = api_key
        self.keys = keys if keys is not None else KeyRing(api_key)
        self.link_seconds = link_seconds
        self._link_key = b""
        self.set_link_secret(link_secret or api_key or (secrets.token_hex(32) if self.keys.enabled else ""))

    def set_link_secret(self, secret: str) -> None:
        """Sign links with a key derived from `secret`."""
        self._link_key = hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest() if secret else b""

    @property
    def enabled(self) -> bool:
        return self.keys.enabled

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
        """Whether a bearer token is a user's key (the gRPC API checks its calls with this too)."""
        return self.keys.verify(token) is not None if token else False

    def _link_ok(self, request: Request) -> bool:
        sig = request.query_params.get("sig", "")
        exp = request.query_params.get("exp", "")
        if not sig or not exp.isdigit() or int(exp) < time.time():
            return False
        expected = self._signature(request.url.path, int(exp))
        return hmac.compare_digest(sig.encode(), expected.encode())

    def require_key(self, request: Request,
                    _bearer: HTTPAuthorizationCredentials | None = Security(BEARER)) -> Principal:
        """FastAPI dependency: the bearer key must belong to a user; returns who.

        Raises:
            HTTPException: 401 with WWW-Authenticate.
        """
        who = self.keys.check_header(request.headers.get("authorization"))
        if who is None:
            raise unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
        return who

    def require_key_or_link(self, request: Request,
                            _bearer: HTTPAuthorizationCredentials | None = Security(BEARER)) -> Principal:
        """FastAPI dependency: the bearer key, or a valid signed link for this very path.

        Raises:
            HTTPException: 401 with WWW-Authenticate.
        """
        who = self.keys.check_header(request.headers.get("authorization"))
        if who is not None:
            return who
        if self._link_ok(request):
            return LINK
        raise unauthorized("this link needs an API key ('Authorization: Bearer <key>') or a valid "
                           "signature; get fresh links from GET /v1/jobs/{id}")
