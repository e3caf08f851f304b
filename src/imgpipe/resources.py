"""The container's small factories: the database, its migration and the profiles.

``container.build`` wires every process from these, and the CLI commands that need only
one of them (`imgpipe keys`, `db upgrade`, `process`) call them without building the whole
container (importing it costs about a second: Celery, the API, every backend). So a
database is opened, migrated and checked the same way everywhere.

SQLAlchemy and Alembic are imported where used: Alembic alone costs 0.3 s of start-up,
which `imgpipe process` (profiles only) must not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgpipe.config import Settings
from imgpipe.domain.profiles import ProfileSet

if TYPE_CHECKING:
    from imgpipe.db.session import Engine


def open_database(settings: Settings) -> Engine:
    """The configured database (DATABASE_URL, DATABASE_TIMEOUT_S)."""
    from imgpipe.db.session import make_engine

    return make_engine(settings.database_url, settings.database_timeout_s or None)


def migrate(engine: Engine) -> str | None:
    """Apply every pending migration; the revision the schema is now at."""
    from imgpipe.db.migrate import current_revision, upgrade

    upgrade(engine)
    return current_revision(engine)


def schema_is_current(engine: Engine) -> bool:
    from imgpipe.db.migrate import pending_migrations

    return not pending_migrations(engine)


def load_profiles(settings: Settings) -> ProfileSet:
    """PROFILES_FILE (or the built-in profiles), validated."""
    return ProfileSet.load(settings.profiles_file)
