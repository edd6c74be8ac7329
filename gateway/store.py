"""The HTTP job records in a real database: SQLite under the data dir, or PostgreSQL by URL.

One table, `jobs`, created on start. The store is synchronous SQLAlchemy 2 (the job
manager calls it through `asyncio.to_thread`); every method is one short transaction,
so a crash at any point leaves each record either before or after a change, never half.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELLED)
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One HTTP job, from upload to artifacts (or its error)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    title: Mapped[str] = mapped_column(String(255), default="")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    notes: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    stages: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str] = mapped_column(Text, default="")
    error_status: Mapped[int] = mapped_column(Integer, default=0)


@dataclass
class JobRecord:
    """A detached copy of one row (safe to use after its session has closed).

    `artifacts` lists `{name, path, size, content_type}`; `path` is relative to the
    job's storage folder and was written by the gateway, never taken from a request.
    """

    id: str
    status: str
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    filename: str = ""
    title: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    upload_bytes: int = 0
    duration: float | None = None
    seconds: float = 0.0
    wall_seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    error_status: int = 0

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing will change but a DELETE."""
        return self.status in FINISHED

    def artifact(self, name: str) -> dict[str, Any] | None:
        """The artifact entry named exactly `name`, or None."""
        return next((a for a in self.artifacts if a.get("name") == name), None)


_COLUMNS = [c.name for c in JobRow.__table__.columns]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes; every time stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _record(row: JobRow) -> JobRecord:
    values = {name: getattr(row, name) for name in _COLUMNS}
    for name in ("created_at", "started_at", "finished_at"):
        values[name] = _utc(values[name])
    return JobRecord(**values)


def now() -> dt.datetime:
    """The current time, UTC, as stored in records."""
    return dt.datetime.now(dt.UTC)


def database_url(db_url: str, data_dir: str | Path) -> str:
    """The SQLAlchemy URL to use: `db_url` if given, else SQLite in `data_dir`.

    A bare `postgresql://` or `postgres://` URL is given psycopg 3 as its driver (the one
    the gateway extra installs); a URL naming its driver (`postgresql+psycopg2://`) is kept.
    """
    if not db_url:
        return f"sqlite:///{Path(data_dir).resolve() / 'jobs.db'}"
    for bare in ("postgres://", "postgresql://"):
        if db_url.startswith(bare):
            return "postgresql+psycopg://" + db_url[len(bare):]
    return db_url


class JobStore:
    """Job records in a SQL database.

    Args:
        url: a SQLAlchemy URL (see `database_url`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_config(cls, db_url: str, data_dir: str | Path) -> JobStore:
        """The store a gateway's settings name (creating the data dir for SQLite)."""
        if not db_url:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        return cls(database_url(db_url, data_dir))

    def create_tables(self) -> None:
        """Create the table if it does not exist yet (every start)."""
        Base.metadata.create_all(self.engine)

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def _session(self) -> Session:
        return self._sessions()

    # -- records ------------------------------------------------------------------------

    def add(self, record: JobRecord) -> None:
        """Insert a new record."""
        with self._session() as s, s.begin():
            s.add(JobRow(**{name: getattr(record, name) for name in _COLUMNS}))

    def get(self, job_id: str) -> JobRecord | None:
        """The record with this id, or None."""
        with self._session() as s:
            row = s.get(JobRow, job_id)
            return _record(row) if row is not None else None

    def find(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[JobRecord], int]:
        """Records newest first, and how many match in all.

        Args:
            status: only records with this status (None = all).
            limit: at most this many records.
            offset: skip this many (for paging).
        """
        with self._session() as s:
            query = select(JobRow)
            count = select(func.count()).select_from(JobRow)
            if status:
                query = query.where(JobRow.status == status)
                count = count.where(JobRow.status == status)
            query = query.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
            rows = s.scalars(query).all()
            return [_record(r) for r in rows], int(s.scalar(count) or 0)

    def unfinished(self) -> list[JobRecord]:
        """Records still queued or running, oldest first (what a restart must settle)."""
        with self._session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.status.in_(UNFINISHED)).order_by(JobRow.created_at)).all()
            return [_record(r) for r in rows]

    def update(self, job_id: str, **values: Any) -> None:
        """Set some fields of one record."""
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        with self._session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    def delete(self, job_id: str) -> bool:
        """Remove one record; True if it existed."""
        with self._session() as s, s.begin():
            result = s.execute(delete(JobRow).where(JobRow.id == job_id))
            return bool(getattr(result, "rowcount", 0))

    def ids(self) -> set[str]:
        """Every job id (to find storage folders that have no record)."""
        with self._session() as s:
            return set(s.scalars(select(JobRow.id)).all())

    def mark_failed(self, job_ids: Iterable[str], message: str, status: int = 500) -> None:
        """Mark jobs failed with one message (e.g. interrupted by a restart)."""
        ids = list(job_ids)
        if not ids:
            return
        with self._session() as s, s.begin():
            s.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids))
                .values(status=FAILED, error=message, error_status=status, finished_at=now())
            )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (GET, SSE) go on while a job's record is written.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
