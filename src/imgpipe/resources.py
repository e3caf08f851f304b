"""The container's small factories: the database, its migration and the profiles.

``container.build`` wires every process from these, and the CLI commands that need only
one of them (`imgpipe keys`, `db upgrade`, `process`) call them without building the whole
container (importing it costs about a second: Celery, the API, every backend). So a
database is opened, migrated and checked the same way everywhere.
"""

from __future__ import annotations

from imgpipe.config import Settings
from imgpipe.db.migrate import current_revision, pending_migrations, upgrade
from imgpipe.db.session import Engine, make_engine
from imgpipe.domain.profiles import ProfileSet


def open_database(settings: Settings) -> Engine:
    """The configured database (DATABASE_URL, DATABASE_TIMEOUT_S)."""
    return make_engine(settings.database_url, settings.database_timeout_s or None)


def migrate(engine: Engine) -> str | None:
    """Apply every pending migration; the revision the schema is now at."""
    upgrade(engine)
    return current_revision(engine)


def schema_is_current(engine: Engine) -> bool:
    return not pending_migrations(engine)


def load_profiles(settings: Settings) -> ProfileSet:
    """PROFILES_FILE (or the built-in profiles), validated."""
    return ProfileSet.load(settings.profiles_file)
