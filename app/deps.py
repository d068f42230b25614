"""Request-scoped dependencies shared by every router: the database session and the request's principal.

The session commits when the route returns, before the response is sent (scope="function"), and rolls back if
anything raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.db import Database
from app.errors import AppError
from app.logs import log

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


def read_only_session(endpoint: F) -> F:
    """Mark an unsafe-method route whose request session only reads (put it under the @router decorator): no write
    transaction and no write lock (on SQLite, the one writer of the process) while it works. For a route that
    parses an upload (which can take seconds): it ends the session's reads (`end_reads`) before parsing and writes
    what it keeps in a short transaction of its own (`write_txn`) after. For a POST that only computes or compares
    (a simulation, checking a file against a notice): nothing else to do."""
    endpoint.zf_read_only_session = True  # type: ignore[attr-defined]
    return endpoint


def _read_only(request: Request) -> bool:
    """Does this request's session only read? Safe methods, and the routes marked `read_only_session`."""
    if request.method in SAFE_METHODS:
        return True
    return bool(getattr(request.scope.get("endpoint"), "zf_read_only_session", False))


def write_txn(request: Request) -> AbstractContextManager[Session]:
    """A write transaction of its own for a `read_only_session` route: committed when the block ends normally."""
    db: Database = request.app.state.db
    return db.write_txn()


def end_reads(session: Session) -> None:
    """End the read transaction a read-only request session has open (authorising the request began one) and give
    its connection back: nothing of the database is held while the route parses, and none is held while it takes
    a second connection for its write (waiting for one while holding one can wait for ever under load)."""
    session.commit()


class Wait(Protocol):
    @property
    def seconds(self) -> int: ...


W = TypeVar("W", bound=Wait)


def db_session(request: Request) -> Iterator[Session]:
    db: Database = request.app.state.db
    read_only = _read_only(request)
    ctx = nullcontext(db.read_session()) if read_only else db.write_session()
    with ctx as session:
        try:
            yield session
            session.commit()
        except AppError as exc:
            session.commit() if exc.keep_writes else session.rollback()
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            if read_only:
                session.close()
    queued = getattr(request.state, "after_read", None)
    if queued:  # the writes a read request asked for, once its own connection is back in the pool
        try:
            with db.write_txn() as ws:
                for work in queued:
                    work(ws)
        except Exception:
            log.exception("after_read_failed", path=request.url.path)


def write_after_read(request: Request, session: Session, work: Callable[[Session], None]) -> None:
    """A small write a request needs besides its own work (the session's last-seen time, an audit event of what it
    showed). In a write request: now, in its transaction. In a read request: after its read-only session is closed,
    in one write transaction of its own. Not while holding the read session's connection: a second pooled connection
    taken then can wait for ever when every connection is held the same way (the month-end rush found it)."""
    if not _read_only(request):
        work(session)
        return
    if not hasattr(request.state, "after_read"):
        request.state.after_read = []
    request.state.after_read.append(work)


DbSession = Annotated[Session, Depends(db_session, scope="function")]


async def pause_before_write(request: Request, ask: Callable[[Session], W]) -> W:
    """Wait as long as `ask` says (its answer's `seconds`), holding no database connection, transaction or thread:
    `ask` runs in a read session of its own, closed before the wait, and the wait is on the event loop. A route
    declares the dependency that calls this before its `DbSession`, so that the request's write session (on SQLite
    the one writer's turn) is only taken afterwards. For a login slowed down by failures elsewhere."""
    db: Database = request.app.state.db

    def asking() -> W:
        with db.read_txn() as session:
            return ask(session)

    answer = await run_in_threadpool(asking)
    if answer.seconds > 0:
        await asyncio.sleep(answer.seconds)
    return answer


# A route that touches the database is a plain `def`: FastAPI runs it in a worker thread. Run on the event loop (an
# `async def` route), a query that waits (for a row lock, the audit chain's lock, a pooled connection) stops every
# other request of the worker, and the transactions those requests hold stay open with their locks, so the wait
# may never end. A route that needs the raw body or the form takes it from one of these (read on the event loop,
# before the route runs).


async def _raw_body(request: Request) -> bytes:
    return await request.body()


async def _form(request: Request) -> FormData:
    return await request.form()


RawBody = Annotated[bytes, Depends(_raw_body)]
PostedForm = Annotated[FormData, Depends(_form)]
