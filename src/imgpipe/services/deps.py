"""What the use cases need, handed in by the container (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import ProfileSet
from imgpipe.jobs.queue import JobQueue
from imgpipe.storage.base import ObjectStore


@dataclass(frozen=True)
class ServiceDeps:
    sessions: sessionmaker[Session]
    store: ObjectStore
    queue: JobQueue
    profiles: ProfileSet
    limits: Limits
    process_timeout_s: float
    staging_dir: Path
    signing_key: bytes
