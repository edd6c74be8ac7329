"""The HTTP job records in a real database: SQLite under the data dir, or PostgreSQL by URL.

Tables: `jobs` (one row per song, which is also the queue: see gateway/claims.py),
`job_events` (each job's event log, so any gateway replica can replay and follow it),
`batches` (songs uploaded together) and `settings` (secrets every replica shares). They
are created on start, and columns added since a database was made are added to it
(`create_tables`), under a PostgreSQL advisory lock so replicas starting together do not
race. The store is synchronous SQLAlchemy 2 (the job manager calls it from threads);
every method is one short transaction, so a crash at any point leaves each record
either before or after a change, never half.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
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
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELLED)
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
SCHEMA_LOCK = 0x7AB_A6E7    # the advisory lock replicas take while creating or altering tables


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One HTTP job, from upload to artifacts (or its error), and its place in the queue."""

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
    # Added by issue 16 (older databases get them from `create_tables`):
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)       # the user (API key)
    batch_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    worker: Mapped[str] = mapped_column(String(128), default="")                 # the gateway holding it
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)                    # times it was started
    disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0)               # its files on the volume


class EventRow(Base):
    """One event of a job's log (the SSE `id:` is `seq`)."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BatchRow(Base):
    """Songs uploaded together (POST /v1/batches); its jobs carry its id."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    title: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)


class SettingRow(Base):
    """A value every gateway replica must share (e.g. the key that signs links)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


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
    owner: str = ""
    batch_id: str = ""
    worker: str = ""
    lease_until: dt.datetime | None = None
    attempts: int = 0
    disk_bytes: int = 0

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing will change but a DELETE."""
        return self.status in FINISHED

    def artifact(self, name: str) -> dict[str, Any] | None:
        """The artifact entry named exactly `name`, or None."""
        return next((a for a in self.artifacts if a.get("name") == name), None)


@dataclass(frozen=True)
class BatchRecord:
    """A batch: who made it, when, how many songs."""

    id: str
    owner: str
    created_at: dt.datetime
    title: str
    size: int


@dataclass(frozen=True)
class StoredEvent:
    """One event as stored: its job, sequence number, type and JSON data."""

    job_id: str
    seq: int
    type: str
    data: dict[str, Any]


_COLUMNS = [c.name for c in JobRow.__table__.columns]
_TIMES = ("created_at", "started_at", "finished_at", "lease_until")


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (SQLite returns naive ones; all are UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def record_of(row: JobRow) -> JobRecord:
    """A detached record of a row."""
    values = {name: getattr(row, name) for name in _COLUMNS}
    for name in _TIMES:
        values[name] = utc(values[name])
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
    """Job records, their events, batches and shared settings in a SQL database.

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

    @property
    def shared(self) -> bool:
        """True when other gateway processes may use this database (PostgreSQL)."""
        return not self.is_sqlite

    def create_tables(self) -> None:
        """Create missing tables and add missing columns (every start; idempotent)."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
            Base.metadata.create_all(conn)
            _add_missing_columns(conn)

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def session(self) -> Session:
        """A new ORM session (for gateway/claims.py, which shares this store's engine)."""
        return self._sessions()

    def clock(self) -> Any:
        """The current time as the database sees it, for comparisons between replicas
        (PostgreSQL's `now()`; SQLite has one gateway, whose own clock is used)."""
        return now() if self.is_sqlite else func.now()

    # -- records ------------------------------------------------------------------------

    def add(self, record: JobRecord, events: Iterable[StoredEvent] = ()) -> None:
        """Insert a new record (and its first events, in the same transaction)."""
        with self.session() as s, s.begin():
            s.add(JobRow(**{name: getattr(record, name) for name in _COLUMNS}))
            s.flush()
            s.add_all([EventRow(job_id=e.job_id, seq=e.seq, type=e.type, data=e.data) for e in events])

    def get(self, job_id: str) -> JobRecord | None:
        """The record with this id, or None."""
        with self.session() as s:
            row = s.get(JobRow, job_id)
            return record_of(row) if row is not None else None

    def find(self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None,
             batch_id: str | None = None) -> tuple[list[JobRecord], int]:
        """Records newest first, and how many match in all.

        Args:
            status: only records with this status (None = all).
            limit: at most this many records.
            offset: skip this many (for paging).
            owner: only this user's records (None = everyone's).
            batch_id: only the records of this batch.
        """
        with self.session() as s:
            query = select(JobRow)
            count = select(func.count()).select_from(JobRow)
            filters = [JobRow.status == status] if status else []
            if owner is not None:
                filters.append(JobRow.owner == owner)
            if batch_id is not None:
                filters.append(JobRow.batch_id == batch_id)
            if filters:
                query = query.where(*filters)
                count = count.where(*filters)
            query = query.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
            rows = s.scalars(query).all()
            return [record_of(r) for r in rows], int(s.scalar(count) or 0)

    def unfinished(self) -> list[JobRecord]:
        """Records still queued or running, oldest first."""
        with self.session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.status.in_(UNFINISHED)).order_by(JobRow.created_at)).all()
            return [record_of(r) for r in rows]

    def update(self, job_id: str, **values: Any) -> None:
        """Set some fields of one record."""
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    def delete(self, job_id: str) -> bool:
        """Remove one record and its events; True if it existed."""
        with self.session() as s, s.begin():
            s.execute(delete(EventRow).where(EventRow.job_id == job_id))
            result = s.execute(delete(JobRow).where(JobRow.id == job_id))
            return bool(getattr(result, "rowcount", 0))

    def delete_finished(self, job_id: str) -> bool:
        """Remove a record only if it is finished (what retention may remove); True if it did."""
        with self.session() as s, s.begin():
            result = s.execute(delete(JobRow).where(JobRow.id == job_id, JobRow.status.in_(FINISHED)))
            if not getattr(result, "rowcount", 0):
                return False
            s.execute(delete(EventRow).where(EventRow.job_id == job_id))
            return True

    def ids(self) -> set[str]:
        """Every job id (to find storage folders that have no record)."""
        with self.session() as s:
            return set(s.scalars(select(JobRow.id)).all())

    def mark_failed(self, job_ids: Iterable[str], message: str, status: int = 500) -> None:
        """Mark jobs failed with one message (e.g. their upload is gone)."""
        ids = list(job_ids)
        if not ids:
            return
        with self.session() as s, s.begin():
            s.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids))
                .values(status=FAILED, error=message, error_status=status, finished_at=now(), worker="",
                        lease_until=None, disk_bytes=0)
            )

    # -- numbers ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Jobs by status (every status, 0 when none)."""
        with self.session() as s:
            rows = s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        got = {status: 0 for status in STATUSES}
        got.update({status: int(n) for status, n in rows})
        return got

    def queued_ids(self) -> list[str]:
        """The queue, first to run first."""
        with self.session() as s:
            return list(s.scalars(select(JobRow.id).where(JobRow.status == QUEUED)
                                  .order_by(JobRow.created_at, JobRow.id)).all())

    def recent_speeds(self, since: dt.datetime, limit: int = 20) -> list[float]:
        """Wall seconds per second of audio of the last done jobs (none finished before `since`)."""
        with self.session() as s:
            rows = s.execute(select(JobRow.wall_seconds, JobRow.seconds)
                             .where(JobRow.status == DONE, JobRow.finished_at >= since, JobRow.seconds > 0)
                             .order_by(JobRow.finished_at.desc()).limit(limit)).all()
        return [float(w) / float(a) for w, a in rows if w and a]

    def queue_snapshot(self) -> tuple[list[tuple[dt.datetime | None, float]], list[float]]:
        """What runs and waits now: (started_at, audio seconds) of running jobs, and the audio
        seconds of queued jobs, first to run first (0 where unknown)."""
        with self.session() as s:
            running = s.execute(select(JobRow.started_at, JobRow.duration).where(JobRow.status == RUNNING)).all()
            queued = s.scalars(select(JobRow.duration).where(JobRow.status == QUEUED)
                               .order_by(JobRow.created_at, JobRow.id)).all()
        return [(utc(t), float(d or 0.0)) for t, d in running], [float(d or 0.0) for d in queued]

    def disk_usage(self) -> int:
        """Bytes the jobs' files take, as recorded (uploads of unfinished jobs, artifacts of done ones)."""
        with self.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(JobRow.disk_bytes), 0))) or 0)

    def finished_before(self, before: dt.datetime | None, limit: int = 100) -> list[JobRecord]:
        """Finished records, oldest first; only those finished before `before` when given."""
        with self.session() as s:
            query = select(JobRow).where(JobRow.status.in_(FINISHED))
            if before is not None:
                query = query.where(JobRow.finished_at < before)
            rows = s.scalars(query.order_by(JobRow.finished_at, JobRow.id).limit(limit)).all()
            return [record_of(r) for r in rows]

    # -- events -------------------------------------------------------------------------

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """A job's events with seq > `after`, in order."""
        with self.session() as s:
            rows = s.scalars(select(EventRow).where(EventRow.job_id == job_id, EventRow.seq > after)
                             .order_by(EventRow.seq).limit(limit)).all()
            return [StoredEvent(r.job_id, r.seq, r.type, r.data) for r in rows]

    def append_event(self, job_id: str, type_: str, data: dict[str, Any], tries: int = 5) -> int:
        """Append one event after the job's last (for a job no worker writes now); its seq."""
        for _ in range(tries):
            try:
                with self.session() as s, s.begin():
                    seq = int(s.scalar(select(func.coalesce(func.max(EventRow.seq), 0))
                                       .where(EventRow.job_id == job_id)) or 0) + 1
                    s.add(EventRow(job_id=job_id, seq=seq, type=type_, data=data))
                return seq
            except IntegrityError:
                continue  # a worker wrote one at the same moment: take the next number
        raise RuntimeError(f"could not append an event to job {job_id}")

    def last_seq(self, job_id: str) -> int:
        """The highest event number of a job (0 without events)."""
        with self.session() as s:
            return int(s.scalar(select(func.coalesce(func.max(EventRow.seq), 0))
                                .where(EventRow.job_id == job_id)) or 0)

    def drop_events(self, job_id: str, types: Iterable[str]) -> None:
        """Remove a job's events of these types (a finished job's progress; a restarted
        job's output of its earlier attempt)."""
        with self.session() as s, s.begin():
            s.execute(delete(EventRow).where(EventRow.job_id == job_id, EventRow.type.in_(list(types))))

    # -- batches --------------------------------------------------------------------------

    def add_batch(self, batch: BatchRecord) -> None:
        """Insert a batch."""
        with self.session() as s, s.begin():
            s.add(BatchRow(id=batch.id, owner=batch.owner, created_at=batch.created_at, title=batch.title,
                           size=batch.size))

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch with this id, or None."""
        with self.session() as s:
            row = s.get(BatchRow, batch_id)
            if row is None:
                return None
            created = utc(row.created_at)
            assert created is not None
            return BatchRecord(row.id, row.owner, created, row.title, row.size)

    def delete_batch(self, batch_id: str) -> None:
        """Remove a batch (its jobs are removed one by one by the caller)."""
        with self.session() as s, s.begin():
            s.execute(delete(BatchRow).where(BatchRow.id == batch_id))

    def empty_batches(self) -> list[str]:
        """Batches none of whose jobs are left (retention removed them)."""
        with self.session() as s:
            used = select(JobRow.batch_id).where(JobRow.batch_id == BatchRow.id).exists()
            return list(s.scalars(select(BatchRow.id).where(~used)).all())

    # -- settings -------------------------------------------------------------------------

    def secret(self, name: str) -> str:
        """A random secret stored once under `name` and the same for every replica."""
        with self.session() as s:
            row = s.get(SettingRow, name)
            if row is not None:
                return row.value
        try:
            with self.session() as s, s.begin():
                s.add(SettingRow(name=name, value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another replica stored it first: use theirs
        with self.session() as s:
            row = s.get(SettingRow, name)
            assert row is not None
            return row.value


def _add_missing_columns(conn: Connection) -> None:
    """ALTER TABLE ... ADD COLUMN for every column the model has and the table lacks."""
    have = {c["name"] for c in inspect(conn).get_columns("jobs")}
    for column in JobRow.__table__.columns:
        if column.name in have:
            continue
        kind = column.type.compile(dialect=conn.dialect)
        default = column.default.arg if column.default is not None and not callable(column.default.arg) else None
        clause = "" if default is None else f" NOT NULL DEFAULT {default!r}"
        quoted = conn.dialect.identifier_preparer.quote(column.name)
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {quoted} {kind}{clause}"))
        log.info("job store: added column jobs.%s", column.name)
    if "owner" not in have or "batch_id" not in have:
        for index in Base.metadata.tables["jobs"].indexes:
            index.create(conn, checkfirst=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (GET, SSE) go on while a job's record is written.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
