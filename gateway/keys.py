"""API keys per user, stored hashed: the one place the HTTP and gRPC APIs check a bearer key.

    keys = KeyRing.from_config(config)          # TABAGENT_KEYS_FILE and/or TABAGENT_API_KEY
    who = keys.check_header("Bearer ta_...")    # Principal(user="alice", admin=False), or None
    who = keys.check_metadata(handler_call_details.invocation_metadata)   # the same for a gRPC call
    who.may_see(record.owner)                   # a user sees their own jobs; an admin all

The keys file (TABAGENT_KEYS_FILE; a Kubernetes Secret mounted as a file) has one key per
line, `#` starts a comment:

    # user   key hash                                                                  role
    alice    sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
    ops      sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9   admin

A user may have several lines (key rotation: add the new key, then remove the old one).
Keys are 256-bit random tokens (`new_key`), so one SHA-256 stores them safely: unlike a
password a token cannot be guessed, and a slow password hash would only slow every
request. The file is re-read when it changes (checked every few seconds), so keys are
added and revoked without a restart. TABAGENT_API_KEY, the older single shared key,
still works and stands for the admin user `admin`. With neither set, nothing is checked
and every caller is `OPEN` (an admin: a local, single-user gateway).

Manage the file with `python -m gateway.keys add alice [--admin] --file keys.txt` (prints
the new key once), `list` and `remove` (also `tabagent keys ...`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ADMIN_USER = "admin"            # the user TABAGENT_API_KEY stands for
KEY_PREFIX = "ta_"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
CHECK_SECONDS = 5.0             # how often the keys file's modification time is looked at


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a user name, and whether they may see every user's jobs."""

    user: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        """Whether this caller may read, follow or delete a job owned by `owner`."""
        return self.admin or owner == self.user


OPEN = Principal("", admin=True)    # no keys configured: one local user who sees everything


def new_key() -> str:
    """A fresh API key: `ta_` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """How a key is stored: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    """One line of the keys file."""

    user: str
    digest: str
    admin: bool = False

    def line(self) -> str:
        return f"{self.user}\t{self.digest}" + ("\tadmin" if self.admin else "")


def parse_keys(text: str, source: str = "keys file") -> list[KeyEntry]:
    """The entries of a keys file.

    Raises:
        ValueError: a malformed line (named by its number).
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (2, 3) or not USER_NAME.match(fields[0]) \
                or not re.fullmatch(r"sha256:[0-9a-f]{64}", fields[1]) \
                or (len(fields) == 3 and fields[2] not in ("admin", "user")):
            raise ValueError(f"{source}, line {number}: expected 'USER sha256:<64 hex digits> [admin]'")
        entries.append(KeyEntry(fields[0], fields[1], len(fields) == 3 and fields[2] == "admin"))
    return entries


class KeyRing:
    """The API keys a gateway accepts.

    Args:
        api_key: the single shared key (TABAGENT_API_KEY): the admin user `admin`.
        keys_file: the per-user keys file (TABAGENT_KEYS_FILE).
        check_seconds: how often to look whether the file changed.

    Raises:
        SystemExit: the keys file is missing or malformed at start (fail fast).
    """

    def __init__(self, api_key: str = "", keys_file: str | Path = "", check_seconds: float = CHECK_SECONDS) -> None:
        self.api_key = api_key
        self.path = Path(keys_file) if keys_file else None
        self.check_seconds = check_seconds
        self._by_digest: dict[str, Principal] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if self.path is not None:
            try:
                self._load()
            except (OSError, ValueError) as exc:
                raise SystemExit(f"TABAGENT_KEYS_FILE: {exc}") from None

    @classmethod
    def from_config(cls, config: Any) -> KeyRing:
        """The key ring a GatewayConfig names (`api_key`, `keys_file`)."""
        return cls(config.api_key, getattr(config, "keys_file", ""))

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self.api_key or self.path)

    def users(self) -> dict[str, bool]:
        """Every user with a key, and whether they are an admin."""
        self._refresh()
        out: dict[str, bool] = {ADMIN_USER: True} if self.api_key else {}
        for p in self._by_digest.values():
            out[p.user] = out.get(p.user, False) or p.admin
        return out

    def verify(self, key: str) -> Principal | None:
        """The user a key belongs to, or None for an unknown key.

        With no keys configured every caller is `OPEN`. Lookups are by the key's hash:
        the attacker controls the key, not its hash, so a dictionary lookup leaks nothing
        useful; the shared key is compared in constant time.
        """
        if not self.enabled:
            return OPEN
        key = key.strip()
        if not key:
            return None
        if self.api_key and hmac.compare_digest(key.encode(), self.api_key.encode()):
            return Principal(ADMIN_USER, admin=True)
        self._refresh()
        return self._by_digest.get(hash_key(key))

    def check_header(self, authorization: str | None) -> Principal | None:
        """The user of an `Authorization: Bearer <key>` value (HTTP header or gRPC
        `authorization` metadata), or None when it is missing or wrong."""
        if not self.enabled:
            return OPEN
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.verify(token)

    def check_metadata(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal | None:
        """The user of a gRPC call's `authorization: Bearer <key>` metadata (what a server
        interceptor passes: `context.invocation_metadata()` or `handler_call_details.invocation_metadata`)."""
        if not self.enabled:
            return OPEN
        for name, value in metadata or ():
            if name.lower() == "authorization":
                return self.check_header(value.decode() if isinstance(value, bytes) else value)
        return None

    # -- the file ---------------------------------------------------------------------

    def _refresh(self) -> None:
        if self.path is None or time.monotonic() - self._checked < self.check_seconds:
            return
        with self._lock:
            if time.monotonic() - self._checked < self.check_seconds:
                return
            try:
                self._load()
            except (OSError, ValueError) as exc:  # keep the keys we had: never lock everyone out
                log.error("could not reload the keys file %s (keeping the previous keys): %s", self.path, exc)
            self._checked = time.monotonic()

    def _load(self) -> None:
        assert self.path is not None
        st = self.path.stat()
        stamp = (st.st_mtime, st.st_size)
        self._checked = time.monotonic()
        if stamp == self._stamp:
            return
        entries = parse_keys(self.path.read_text(encoding="utf-8"), str(self.path))
        self._by_digest = {e.digest: Principal(e.user, e.admin) for e in entries}
        self._stamp = stamp
        log.info("keys file %s: %d key(s) of %d user(s)", self.path, len(entries),
                 len({e.user for e in entries}))


# -- managing the file ---------------------------------------------------------------------

def read_entries(path: Path) -> list[KeyEntry]:
    """The entries of a keys file ([] when it does not exist yet)."""
    return parse_keys(path.read_text(encoding="utf-8"), str(path)) if path.exists() else []


def write_entries(path: Path, entries: list[KeyEntry]) -> None:
    """Write a keys file atomically, readable by its owner only."""
    body = "# Tab Agent API keys: USER sha256:<hash of the key> [admin]\n" + "".join(e.line() + "\n" for e in entries)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, path)


def add_user(path: Path, user: str, admin: bool = False) -> str:
    """Give `user` a new key in the file; returns the key (shown once, never stored).

    Raises:
        ValueError: a user name that is not allowed.
    """
    if not USER_NAME.match(user):
        raise ValueError(f"user name {user!r}: use letters, digits and . _ @ - (at most 64)")
    key = new_key()
    write_entries(path, [*read_entries(path), KeyEntry(user, hash_key(key), admin)])
    return key


def remove_user(path: Path, user: str) -> int:
    """Remove every key of `user`; how many were removed."""
    entries = read_entries(path)
    kept = [e for e in entries if e.user != user]
    write_entries(path, kept)
    return len(entries) - len(kept)


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.keys add|list|remove`: manage a keys file."""
    parser = argparse.ArgumentParser(prog="gateway.keys", description="Manage the gateway's API keys file.")
    parser.add_argument("--file", type=Path, default=Path(os.environ.get("TABAGENT_KEYS_FILE") or "keys.txt"),
                        help="the keys file (default: $TABAGENT_KEYS_FILE or keys.txt)")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="give a user a new key (printed once)")
    add.add_argument("user")
    add.add_argument("--admin", action="store_true", help="may see every user's jobs")
    sub.add_parser("list", help="users and how many keys each has")
    rm = sub.add_parser("remove", help="revoke every key of a user")
    rm.add_argument("user")
    args = parser.parse_args(argv)
    try:
        if args.action == "add":
            print(add_user(args.file, args.user, args.admin))
            print(f"key for {args.user!r} added to {args.file}; it is shown only now", file=sys.stderr)
        elif args.action == "list":
            counts: dict[str, list[int]] = {}
            for e in read_entries(args.file):
                c = counts.setdefault(e.user, [0, 0])
                c[0] += 1
                c[1] |= e.admin
            for user, (n, admin) in sorted(counts.items()):
                print(f"{user}\t{n} key(s)" + ("\tadmin" if admin else ""))
        else:
            n = remove_user(args.file, args.user)
            print(f"removed {n} key(s) of {args.user!r}", file=sys.stderr)
            return 0 if n else 1
    except (OSError, ValueError) as exc:
        print(f"gateway.keys: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
