"""Readiness: whether the database, storage, replica and broker all answer now."""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.db.session import ping
from imgpipe.domain.errors import ImgpipeError
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage.base import Protection

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: dict[str, str]  # component -> "ok" or "error: <what>"
    details: dict[str, str]  # "<store>_protection" -> what it keeps beyond one copy

    @property
    def ready(self) -> bool:
        return all(value == OK for value in self.checks.values())


def database_check(deps: ServiceDeps) -> str:
    """``ok`` when the database answers a round trip now; else the error's type."""
    try:
        with deps.read_sessions() as session:
            ping(session)
    except Exception as exc:  # any driver error means "not ready"
        return f"error: {type(exc).__name__}"
    return OK


def readiness(deps: ServiceDeps) -> Readiness:
    """Each dependency asked once; the first that does not answer is named, not raised."""
    checks = {"database": database_check(deps)}
    try:
        deps.store.check()
        checks["storage"] = OK
    except ImgpipeError as exc:
        checks["storage"] = f"error: {exc.code}"
    replica = deps.durability.replica
    if replica is not None:
        try:
            replica.check()
            checks["replica"] = OK
        except ImgpipeError as exc:
            checks["replica"] = f"error: {exc.code}"
    try:
        deps.queue.check()
        checks["broker"] = OK
    except Exception as exc:  # kombu raises many kinds of connection error
        checks["broker"] = f"error: {type(exc).__name__}"
    details = {
        f"{name}_protection": value.describe() if isinstance(value, Protection) else value
        for name, value in deps.durability.protection.items()
    }
    return Readiness(checks, details)
