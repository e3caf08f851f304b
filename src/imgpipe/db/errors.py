"""Which database errors mean "the database is unavailable", in the project's terms.

Two places turn SQLAlchemy's errors into domain/errors.py's tree:

- db/session.py, as the error happens: a connection that cannot be made, or one lost
  mid-statement, raises ``DatabaseUnavailable`` (503, retryable) wherever the database is
  used (API, worker, CLI). A failing statement on a live connection keeps SQLAlchemy's own
  error there, so a bad query is never mistaken for an outage by a worker's retry policy.
- here, for a request: the trouble the engine did not already name (a pool checkout
  timing out, a lock or statement timeout, an operational error on a live connection)
  is still the database being unavailable to the caller, so api/problems.py answers it
  with ``as_domain_error``'s 503 (never a 500), without naming SQLAlchemy itself.

Errors a use case relies on (the idempotency key's winner, "no such table yet" for the
first key) are handled inside the db/ function that meets them, which returns a result
the service understands (db/idempotency.py ``insert_key``, db/keys.py ``any_key``).
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from imgpipe.domain.errors import DatabaseUnavailable

# The exception types a request answers with 503 ``database_unavailable``.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)


def as_domain_error(exc: Exception) -> DatabaseUnavailable:
    """The domain error for one of ``UNAVAILABLE`` (its detail is the public default: the
    driver's message, naming hosts and ports, stays in the logs)."""
    return DatabaseUnavailable()
