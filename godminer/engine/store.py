"""The single source of truth: offers, jobs, their transitions, outcomes and alerts, in SQL.

SQLite in WAL mode by default (a PostgreSQL URL works too). Every state change is validated by
`jobs.check_transition` and written, with an event row, in one transaction before the caller acts
on it. Active jobs are also kept in a write-through cache so that offers are decided from memory.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, Text, bindparam, create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from godminer.engine.jobs import FINISHED, JobRecord, JobState, check_transition

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class OfferRow(Base):
    __tablename__ = "offers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(128), index=True)
    validator_hotkey: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256))
    params_b: Mapped[float] = mapped_column(Float)
    hours: Mapped[float] = mapped_column(Float)
    ds_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[float] = mapped_column(Float, index=True)
    latency_us: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobRow(Base):
    __tablename__ = "jobs"
    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    validator_hotkey: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256))
    params_b: Mapped[float] = mapped_column(Float)
    hours: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    request_kind: Mapped[str | None] = mapped_column(String(8), nullable=True)
    request_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    expected_repo_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    accepted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    received_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    termination_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    gpu_ids: Mapped[str] = mapped_column(Text, default="[]")
    box: Mapped[str] = mapped_column(String(64), default="local")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    executor_handle: Mapped[str] = mapped_column(Text, default="{}")
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    repo: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    submitted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    dev_metric: Mapped[float | None] = mapped_column(Float, nullable=True)
    base_metric: Mapped[float | None] = mapped_column(Float, nullable=True)
    plan: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)


class JobEventRow(Base):
    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(128), index=True)
    at: Mapped[float] = mapped_column(Float)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class OutcomeRow(Base):
    """What the validator made of a task we delivered: win, valid (not first) or fail."""

    __tablename__ = "outcomes"
    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    result: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    params_b: Mapped[float] = mapped_column(Float)
    hours: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)
    is_organic: Mapped[bool] = mapped_column(Boolean, default=False)


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    fired_at: Mapped[float] = mapped_column(Float)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    delivered: Mapped[int] = mapped_column(Integer, default=0)


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


_JSON_FIELDS = {"gpu_ids", "executor_handle", "plan"}
_RECORD_FIELDS = [f.name for f in fields(JobRecord)]


def _to_record(row: JobRow) -> JobRecord:
    return _record({name: getattr(row, name) for name in _RECORD_FIELDS})


def _record(values: Mapping[str, Any]) -> JobRecord:
    data: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        value = values[name]
        if name in _JSON_FIELDS:
            value = json.loads(value or ("[]" if name == "gpu_ids" else "{}"))
            if name == "gpu_ids":
                value = tuple(value)
        data[name] = value
    data["state"] = JobState(values["state"])
    return JobRecord(**data)


def _column_values(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in values.items():
        if name not in JobRow.__table__.columns:
            raise KeyError(f"jobs has no column {name!r}")
        if name in _JSON_FIELDS:
            value = json.dumps(list(value) if name == "gpu_ids" else value)
        elif name == "state":
            value = str(value)
        out[name] = value
    return out


class JobNotFound(KeyError):
    pass


class Store:
    """Thread-safe access to the database; writes are serialised by one lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        )
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        for table in Base.metadata.sorted_tables:  # indexes added after a table existed
            for index in table.indexes:
                index.create(self.engine, checkfirst=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._insert_offer = OfferRow.__table__.insert()
        jobs = JobRow.__table__
        self._select_job = select(jobs).where(jobs.c.task_id == bindparam("task_id"))
        self._offer_log: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._offer_writer = threading.Thread(target=self._write_offers, name="offer-log", daemon=True)
        self._offer_writer.start()
        self._write_lock = threading.RLock()
        self._active: dict[str, JobRecord] = {}
        with self._session() as s:
            if s.get(MetaRow, "schema_version") is None:
                s.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
        self.reload_active()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._write_lock, self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self._offer_log.put(None)
        self._offer_writer.join(timeout=10)
        self.engine.dispose()

    def _write_offers(self) -> None:
        """Group commit of offer audit rows: at most ~0.2 s of them are lost on a crash, never a job."""
        while True:
            first = self._offer_log.get()
            batch = [first]
            deadline = threading.Event()
            deadline.wait(0.2 if first is not None else 0)
            while True:
                try:
                    batch.append(self._offer_log.get_nowait())
                except queue.Empty:
                    break
            rows = [row for row in batch if row is not None]
            if rows:
                try:
                    with self._write_lock, self.engine.begin() as conn:
                        conn.execute(self._insert_offer, rows)
                except Exception:  # the audit log must never stop the writer
                    import logging

                    logging.getLogger(__name__).exception("could not write %d offer rows", len(rows))
            for _ in batch:
                self._offer_log.task_done()
            if None in batch:
                return

    # ----- offers ---------------------------------------------------------------------------
    def record_offer(self, **values: Any) -> None:
        """Queue an offer's audit row; the writer thread commits them in batches."""
        self._offer_log.put(values)

    def flush(self) -> None:
        """Wait until every queued offer row is committed."""
        self._offer_log.join()

    def offers(self, limit: int = 100, since: float | None = None) -> list[dict[str, Any]]:
        self.flush()
        with self._sessions() as s:
            query = select(OfferRow).order_by(OfferRow.id.desc()).limit(limit)
            if since is not None:
                query = query.where(OfferRow.received_at >= since)
            return [_row_dict(r) for r in s.scalars(query)]

    def offer_counts(self) -> list[tuple[str, bool, int]]:
        self.flush()
        with self._sessions() as s:
            columns = (OfferRow.task_type, OfferRow.accepted)
            rows = s.execute(select(*columns, func.count()).group_by(*columns))
            return [(t, bool(a), int(n)) for t, a, n in rows]

    # ----- jobs -----------------------------------------------------------------------------
    def create_job(self, record: JobRecord, now: float, reason: str = "") -> JobRecord:
        """Insert a new job; its first event is written in the same transaction."""
        values = {name: getattr(record, name) for name in _RECORD_FIELDS}
        values["updated_at"] = now
        values["reason"] = record.reason or reason
        with self._session() as s:
            if s.get(JobRow, record.task_id) is not None:
                raise ValueError(f"job {record.task_id} already exists")
            s.add(JobRow(**_column_values(values)))
            s.add(JobEventRow(task_id=record.task_id, at=now, to_state=str(record.state), reason=reason))
            s.flush()
            created = _to_record(s.get(JobRow, record.task_id))  # type: ignore[arg-type]
        self._cache(created)
        return created

    def transition(self, task_id: str, target: JobState, now: float, reason: str = "", **values: Any) -> JobRecord:
        """Move a job to ``target`` (checked against the state machine) and update fields, atomically."""
        with self._session() as s:
            row = s.get(JobRow, task_id, with_for_update=True)
            if row is None:
                raise JobNotFound(task_id)
            current = JobState(row.state)
            check_transition(current, target)
            for name, value in _column_values({**values, "state": target, "updated_at": now}).items():
                setattr(row, name, value)
            if target in FINISHED:
                row.finished_at = now
                row.lease_owner = None
                row.lease_expires_at = None
            if reason or target != current:
                row.reason = reason or row.reason
            s.add(JobEventRow(task_id=task_id, at=now, from_state=str(current), to_state=str(target), reason=reason))
            s.flush()
            record = _to_record(row)
        self._cache(record)
        return record

    def update(self, task_id: str, now: float, **values: Any) -> JobRecord:
        """Change fields other than the state."""
        if "state" in values:
            raise ValueError("use transition() to change a job's state")
        with self._session() as s:
            row = s.get(JobRow, task_id)
            if row is None:
                raise JobNotFound(task_id)
            for name, value in _column_values({**values, "updated_at": now}).items():
                setattr(row, name, value)
            s.flush()
            record = _to_record(row)
        self._cache(record)
        return record

    def get(self, task_id: str) -> JobRecord | None:
        # Core, not ORM: the submission route reads here (about 5x cheaper).
        with self.engine.connect() as conn:
            row = conn.execute(self._select_job, {"task_id": task_id}).mappings().first()
        return _record(row) if row is not None else None

    def require(self, task_id: str) -> JobRecord:
        record = self.get(task_id)
        if record is None:
            raise JobNotFound(task_id)
        return record

    def active(self) -> list[JobRecord]:
        """Unfinished jobs, from the cache (no database access)."""
        return list(self._active.values())

    def active_job(self, task_id: str) -> JobRecord | None:
        return self._active.get(task_id)

    def reload_active(self) -> None:
        """Re-read unfinished jobs (picks up changes made by other processes, e.g. the CLI)."""
        with self._sessions() as s:
            rows = s.scalars(select(JobRow).where(JobRow.state.not_in([str(x) for x in FINISHED])))
            fresh = {r.task_id: _to_record(r) for r in rows}
        with self._write_lock:
            self._active = fresh

    def jobs(self, limit: int = 200, states: Iterable[JobState] | None = None, offset: int = 0) -> list[JobRecord]:
        with self._sessions() as s:
            query = select(JobRow).order_by(JobRow.updated_at.desc()).limit(limit).offset(offset)
            if states is not None:
                query = query.where(JobRow.state.in_([str(x) for x in states]))
            return [_to_record(r) for r in s.scalars(query)]

    def jobs_page(self, limit: int, offset: int = 0, state: str | None = None) -> tuple[int, list[JobRecord]]:
        """One page of jobs, most recently changed first, with the total count."""
        jobs = JobRow.__table__
        condition = jobs.c.state == state if state else None
        with self.engine.connect() as conn:
            count = select(func.count()).select_from(jobs)
            query = select(jobs).order_by(jobs.c.updated_at.desc()).limit(limit).offset(offset)
            if condition is not None:
                count, query = count.where(condition), query.where(condition)
            total = int(conn.execute(count).scalar_one())
            return total, [_record(row) for row in conn.execute(query).mappings()]

    def started_since(self, since: float) -> list[JobRecord]:
        """Jobs that held GPUs at some point after ``since`` (for the GPU timeline)."""
        jobs = JobRow.__table__
        query = select(jobs).where(jobs.c.started_at.is_not(None)).where(
            (jobs.c.finished_at.is_(None)) | (jobs.c.finished_at >= since))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def finished_counts(self) -> list[tuple[str, str, str, int]]:
        """(kind, model, state, count) over finished jobs: success rates by type and model family."""
        jobs = JobRow.__table__
        query = (select(jobs.c.kind, jobs.c.model, jobs.c.state, func.count())
                 .where(jobs.c.state.in_([str(JobState.SUBMITTED), str(JobState.FAILED)]))
                 .group_by(jobs.c.kind, jobs.c.model, jobs.c.state))
        with self.engine.connect() as conn:
            return [(k, m, s, int(n)) for k, m, s, n in conn.execute(query)]

    def state_counts(self) -> dict[str, int]:
        with self._sessions() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
            return {state: int(n) for state, n in rows}

    def events(self, task_id: str) -> list[dict[str, Any]]:
        with self._sessions() as s:
            query = select(JobEventRow).where(JobEventRow.task_id == task_id).order_by(JobEventRow.id)
            return [_row_dict(r) for r in s.scalars(query)]

    # ----- leases ---------------------------------------------------------------------------
    def claim(self, task_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take the job's lease if it is free, expired or already ours (compare-and-set)."""
        with self._session() as s:
            result = s.execute(
                update(JobRow)
                .where(JobRow.task_id == task_id)
                .where(
                    (JobRow.lease_owner.is_(None)) | (JobRow.lease_owner == owner) | (JobRow.lease_expires_at < now)
                )
                .values(lease_owner=owner, lease_expires_at=now + lease_s)
            )
            claimed = result.rowcount == 1  # type: ignore[attr-defined]
            row = s.get(JobRow, task_id)
            record = _to_record(row) if row is not None else None
        if record is not None:
            self._cache(record)
        return claimed

    def heartbeat(self, owner: str, now: float, lease_s: float) -> None:
        with self._session() as s:
            s.execute(update(JobRow).where(JobRow.lease_owner == owner).values(lease_expires_at=now + lease_s))
        for task_id, record in list(self._active.items()):
            if record.lease_owner == owner:
                self._active[task_id] = _replace(record, lease_expires_at=now + lease_s)

    def release(self, task_id: str, owner: str) -> None:
        with self._session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.task_id == task_id, JobRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
        record = self._active.get(task_id)
        if record is not None and record.lease_owner == owner:
            self._active[task_id] = _replace(record, lease_owner=None, lease_expires_at=None)

    # ----- outcomes -------------------------------------------------------------------------
    def record_outcome(self, task_id: str, result: str, now: float, created_at: float | None = None) -> None:
        if result not in ("win", "valid", "fail"):
            raise ValueError("result must be win, valid or fail")
        job = self.require(task_id)
        with self._session() as s:
            s.merge(OutcomeRow(
                task_id=task_id, result=result, kind=job.kind, params_b=job.params_b, hours=job.hours,
                created_at=created_at if created_at is not None else (job.received_at or now), recorded_at=now,
            ))

    def outcomes(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._sessions() as s:
            query = select(OutcomeRow).order_by(OutcomeRow.created_at)
            if since is not None:
                query = query.where(OutcomeRow.created_at >= since)
            return [_row_dict(r) for r in s.scalars(query)]

    def recent_finished_states(self, limit: int) -> list[str]:
        """States of the most recently finished delivered-or-failed jobs, oldest first."""
        jobs = JobRow.__table__
        query = (select(jobs.c.state).where(jobs.c.state.in_([str(JobState.SUBMITTED), str(JobState.FAILED)]))
                 .order_by(jobs.c.finished_at.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)][::-1]

    def durations(self) -> list[tuple[str, float]]:
        """(task type, seconds from start-training to submission) of submitted jobs."""
        jobs = JobRow.__table__
        query = select(jobs.c.task_type, jobs.c.submitted_at - jobs.c.received_at).where(
            jobs.c.state == str(JobState.SUBMITTED), jobs.c.received_at.is_not(None), jobs.c.submitted_at.is_not(None))
        with self.engine.connect() as conn:
            return [(t, float(d)) for t, d in conn.execute(query)]

    # ----- counters ---------------------------------------------------------------------------
    def increment(self, name: str) -> None:
        with self._session() as s:
            row = s.get(MetaRow, f"counter:{name}")
            if row is None:
                s.add(MetaRow(key=f"counter:{name}", value="1"))
            else:
                row.value = str(int(row.value) + 1)

    def counter(self, name: str) -> int:
        with self._sessions() as s:
            row = s.get(MetaRow, f"counter:{name}")
            return int(row.value) if row is not None else 0

    # ----- alerts ---------------------------------------------------------------------------
    def open_alerts(self) -> list[dict[str, Any]]:
        with self._sessions() as s:
            query = select(AlertRow).where(AlertRow.state == "firing").order_by(AlertRow.id)
            return [_row_dict(r) for r in s.scalars(query)]

    def alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._sessions() as s:
            return [_row_dict(r) for r in s.scalars(select(AlertRow).order_by(AlertRow.id.desc()).limit(limit))]

    def fire_alert(self, rule: str, key: str, message: str, value: float | None, now: float) -> int:
        with self._session() as s:
            row = AlertRow(rule=rule, key=key, state="firing", message=message, value=value, fired_at=now)
            s.add(row)
            s.flush()
            return row.id

    def resolve_alert(self, alert_id: int, now: float) -> None:
        with self._session() as s:
            s.execute(update(AlertRow).where(AlertRow.id == alert_id).values(state="resolved", resolved_at=now))

    def mark_alert_delivered(self, alert_id: int) -> None:
        with self._session() as s:
            s.execute(update(AlertRow).where(AlertRow.id == alert_id).values(delivered=AlertRow.delivered + 1))

    # ----- cache ----------------------------------------------------------------------------
    def _cache(self, record: JobRecord) -> None:
        with self._write_lock:
            if record.finished:
                self._active.pop(record.task_id, None)
            else:
                self._active[record.task_id] = record


def _replace(record: JobRecord, **changes: Any) -> JobRecord:
    from dataclasses import replace

    return replace(record, **changes)


def _row_dict(row: Base) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
