"""Originals beyond one copy: the replica store, the sweeps, verification and repairs.

- ``store_original``: an upload's original goes to the primary store and, when
  STORAGE_REPLICA_URL is set, to the replica at the same time; the upload is accepted
  (202) only once both hold it, verified against its sha256.
- ``purge_deleted``: bytes of images DELETE hid more than DELETE_RETENTION_S ago, every
  version of them where the bucket keeps versions; what object lock keeps is reported.
- ``heal_replica``: originals the replica does not hold yet (recorded before the replica
  was configured, or found missing by ``verify``) are copied from the primary.
- ``sweep_orphans``: originals no record names (an upload whose answer was lost), once
  older than ORPHAN_GRACE_S; ``sweep_temp_files``: downloads killed workers left.
- ``verify``: every recorded original, in every store, hashed against its sha256.
- ``fix_metadata``: objects written before they carried Content-Type and Cache-Control.

The sweeps run where the job reconciler runs (``Container.housekeeping``) and once on
demand with ``imgpipe storage sweep``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from imgpipe.db import repo
from imgpipe.db.schema import utcnow
from imgpipe.domain.errors import ImgpipeError, NotFound, StorageUnavailable
from imgpipe.domain.media import ImageFormat
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage import keys
from imgpipe.storage.base import ObjectMeta, ObjectStore, Protection
from imgpipe.storage.tempfiles import remove_stale_temp_files
from imgpipe.telemetry import metrics

log = logging.getLogger(__name__)

_PAGE = 500


# --- the write path ---------------------------------------------------------------------


def store_original(deps: ServiceDeps, source: Path, sha256: str, media_type: str) -> bool:
    """Make the original durable in every store; True when a replica holds it too.

    ``source`` is consumed. Each store is asked and written on its own thread of control
    (the replica's on a thread of its own), so a replica costs the slower of the two, not
    their sum. StorageUnavailable (503) if either fails: the upload is refused, and a
    retry finds whatever did land (content-addressed, so nothing is stored twice).
    """
    key = keys.original(sha256)
    meta = ObjectMeta.original(media_type)
    replica = deps.durability.replica
    failure: list[BaseException] = []
    thread = None
    if replica is not None:
        # Opened here, copied on the replica's thread: the primary may rename the staged
        # file into its store meanwhile, and an open file outlives a rename.
        original = source.open("rb")

        def to_replica() -> None:
            copy: Path | None = None
            try:
                with original:
                    copy = _copy_from(original, source.parent)
                _replica_call(_ensure, replica, key, copy, sha256, meta)
            except BaseException as exc:  # re-raised in the caller's thread below
                failure.append(exc)
            finally:
                if copy is not None:
                    copy.unlink(missing_ok=True)

        thread = threading.Thread(target=to_replica, name="imgpipe-replica-put", daemon=True)
        thread.start()
    try:
        _ensure(deps.store, key, source, sha256, meta)
    finally:
        if thread is not None:
            thread.join()
    if failure:
        raise failure[0]
    return replica is not None


def _ensure(store: ObjectStore, key: str, source: Path, sha256: str, meta: ObjectMeta) -> None:
    """Store ``source`` under ``key`` unless the same bytes are there (content-addressed)."""
    if store.exists(key):
        source.unlink(missing_ok=True)
    else:
        store.put_file(key, source, sha256, meta)


def _replica_call(function: object, *args: object) -> object:
    """Call a replica store method; its trouble is named as the replica's in the 503."""
    assert callable(function)
    try:
        return function(*args)
    except StorageUnavailable as exc:
        raise StorageUnavailable(f"The replica store is unavailable: {exc.detail}") from exc


def _copy_beside(source: Path, directory: Path | None = None) -> Path:
    """A copy the target store may consume (a local store moves it into place)."""
    with source.open("rb") as src:
        return _copy_from(src, directory or source.parent)


def _copy_from(src: BinaryIO, directory: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix="upload-replica-", dir=directory)
    try:
        with open(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


# --- sweeps -----------------------------------------------------------------------------


@dataclass
class SweepReport:
    purged: int = 0
    locked: list[str] = field(default_factory=list)
    replicated: int = 0
    orphans: int = 0
    temp_files: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "purged": self.purged,
            "locked": self.locked,
            "replicated": self.replicated,
            "orphans": self.orphans,
            "temp_files": self.temp_files,
        }


def sweep(deps: ServiceDeps) -> SweepReport:
    """Every storage sweep once, in the order that frees space first."""
    report = SweepReport()
    report.purged, report.locked = purge_deleted(deps)
    report.replicated = heal_replica(deps)
    report.orphans = sweep_orphans(deps)
    report.temp_files = sweep_temp_files(deps)
    return report


def _stores(deps: ServiceDeps) -> list[ObjectStore]:
    replica = deps.durability.replica
    return [deps.store] if replica is None else [deps.store, replica]


def purge_deleted(deps: ServiceDeps) -> tuple[int, list[str]]:
    """Purge images deleted more than DELETE_RETENTION_S ago: (images purged, locked)."""
    before = utcnow() - timedelta(seconds=deps.durability.retention_s)
    purged, locked = 0, []
    while True:
        with deps.read_sessions() as session:
            batch = [
                (image.id, image.sha256) for image in repo.images_to_purge(session, before, _PAGE)
            ]
        for image_id, sha256 in batch:
            kept = _purge_one(deps, image_id, sha256)
            locked += kept
            metrics.PURGED.labels("locked" if kept else "purged").inc()
            purged += 1
        if len(batch) < _PAGE:
            return purged, locked


def _purge_one(deps: ServiceDeps, image_id: str, sha256: str) -> list[str]:
    """Bytes first, then the record: a failure half-way leaves the record, so the next
    round tries again. Bytes another record shares stay."""
    with deps.read_sessions() as session:
        shared = len(repo.image_ids_with_sha(session, sha256)) > 1
    locked: list[str] = []
    if not shared:
        for store in _stores(deps):
            for key in (
                keys.variants_prefix(sha256),
                keys.renders_prefix(sha256),
                keys.original(sha256),
            ):
                locked += store.purge(key).locked
    if locked:
        log.warning(
            "object lock keeps %d version(s) of image %s past its purge: %s",
            len(locked),
            image_id,
            "; ".join(locked[:5]),
            extra={"image_id": image_id},
        )
    with deps.sessions.begin() as session:
        image = repo.get_deleted_image(session, image_id)
        if image is not None:
            repo.purge_image(session, image)
    log.info("deleted image purged", extra={"image_id": image_id})
    return locked


def heal_replica(deps: ServiceDeps) -> int:
    """Copy into the replica every recorded original it does not hold yet; how many."""
    replica = deps.durability.replica
    if replica is None:
        return 0
    copied = 0
    while True:
        with deps.read_sessions() as session:
            batch = repo.unreplicated(session, _PAGE)
        shas = list(dict.fromkeys(sha for _, sha in batch))
        with deps.read_sessions() as session:
            formats = repo.image_formats(session, shas) if shas else {}
        for sha256 in shas:
            key = keys.original(sha256)
            if not replica.exists(key):
                _copy_between(deps.store, replica, key, sha256, formats.get(sha256))
                metrics.REPLICA_COPIES.inc()
                copied += 1
            with deps.sessions.begin() as session:
                repo.mark_replicated(session, sha256, utcnow())
        if len(batch) < _PAGE:
            return copied


def _copy_between(
    source: ObjectStore, target: ObjectStore, key: str, sha256: str, fmt: str | None = None
) -> None:
    """Copy ``key`` through a local file; the target verifies the sha256 as it stores."""
    media_type = ImageFormat(fmt).media_type if fmt else _head_type(source, key)
    with source.local_file(key) as path:
        # Never the source's own file: a local store's local_file is the stored object.
        staged = _copy_beside(path, Path(tempfile.gettempdir()))
    try:
        target.put_file(key, staged, sha256, ObjectMeta.original(media_type))
    finally:
        staged.unlink(missing_ok=True)


def sweep_orphans(deps: ServiceDeps) -> int:
    """Remove originals no record names, once older than ORPHAN_GRACE_S; how many."""
    cutoff = utcnow().timestamp() - deps.durability.orphan_grace_s
    removed = 0
    for store in _stores(deps):
        page: list[tuple[str, float]] = []
        for item in store.list_keys("originals/"):
            page.append(item)
            if len(page) == _PAGE:
                removed += _remove_orphans(deps, store, page, cutoff)
                page = []
        removed += _remove_orphans(deps, store, page, cutoff)
    return removed


def _remove_orphans(
    deps: ServiceDeps, store: ObjectStore, page: list[tuple[str, float]], cutoff: float
) -> int:
    old = {key.rsplit("/", 1)[-1]: key for key, mtime in page if mtime < cutoff}
    if not old:
        return 0
    with deps.read_sessions() as session:
        recorded = repo.shas_recorded(session, list(old))
    removed = 0
    for sha256, key in old.items():
        if sha256 in recorded:
            continue
        # Checked again just before: an upload may have recorded it since the page was read.
        with deps.read_sessions() as session:
            if repo.sha_in_use(session, sha256):
                continue
        store.purge(key)
        metrics.ORPHANS_REMOVED.inc()
        log.info("orphan original removed", extra={"key": key})
        removed += 1
    return removed


def sweep_temp_files(deps: ServiceDeps) -> int:
    removed = remove_stale_temp_files(deps.durability.temp_grace_s)
    if removed:
        metrics.TEMP_FILES_REMOVED.inc(removed)
    return removed


# --- verification and repairs -----------------------------------------------------------


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: int = 0


def verify(deps: ServiceDeps, repair: bool = False) -> VerifyReport:
    """Hash every recorded original in every store against its sha256.

    With ``repair``, a missing or damaged copy is replaced from a good one.
    """
    report = VerifyReport()
    stores = _stores(deps)
    names = ["primary", "replica"]
    after = ""
    while True:
        with deps.read_sessions() as session:
            shas = repo.recorded_originals(session, after, _PAGE)
        for sha256 in shas:
            key = keys.original(sha256)
            states = [_hash_state(store, key, sha256) for store in stores]
            report.checked += 1
            for name, state in zip(names, states, strict=False):
                if state != "ok":
                    report.problems.append(f"{name} {key}: {state}")
            good = next(
                (s for s, state in zip(stores, states, strict=False) if state == "ok"), None
            )
            if repair and good is not None:
                for store, state in zip(stores, states, strict=False):
                    if state != "ok":
                        _copy_between(good, store, key, sha256)
                        report.repaired += 1
        if len(shas) < _PAGE:
            return report
        after = shas[-1]


def _hash_state(store: ObjectStore, key: str, sha256: str) -> str:
    digest = hashlib.sha256()
    try:
        for chunk in store.iter_bytes(key):
            digest.update(chunk)
    except NotFound:
        return "missing"
    except ImgpipeError as exc:  # a checksum refusal on read is a damaged copy too
        return f"unreadable ({exc.code})"
    return "ok" if digest.hexdigest() == sha256 else "sha256 mismatch"


def fix_metadata(deps: ServiceDeps) -> int:
    """Give every stored object its Content-Type, Cache-Control and Content-Disposition;
    how many had to change (S3 copies an object onto itself to change its headers)."""
    changed = 0
    for store in _stores(deps):
        for prefix in ("originals/", "variants/", "renders/"):
            page: list[str] = []
            for key, _ in store.list_keys(prefix):
                page.append(key)
                if len(page) == _PAGE:
                    changed += _fix_page(deps, store, page)
                    page = []
            changed += _fix_page(deps, store, page)
    return changed


def _fix_page(deps: ServiceDeps, store: ObjectStore, page: list[str]) -> int:
    originals = [k.rsplit("/", 1)[-1] for k in page if k.startswith("originals/")]
    formats: dict[str, str] = {}
    if originals:
        with deps.read_sessions() as session:
            formats = repo.image_formats(session, originals)
    changed = 0
    for key in page:
        meta = _meta_for(store, key, formats)
        if meta is not None and store.set_meta(key, meta):
            changed += 1
    return changed


def _meta_for(store: ObjectStore, key: str, formats: dict[str, str]) -> ObjectMeta | None:
    name = key.rsplit("/", 1)[-1]
    if key.startswith("originals/"):
        fmt = formats.get(name)
        return ObjectMeta.original(ImageFormat(fmt).media_type if fmt else _head_type(store, key))
    if name.startswith("source-v"):  # either render source: the original's pixels, private
        return ObjectMeta.render_source()
    ext = name.rsplit(".", 1)[-1]
    by_ext = {f.extension: f for f in ImageFormat}
    if ext in by_ext:
        return ObjectMeta.public(by_ext[ext].media_type)
    return ObjectMeta.public(_head_type(store, key))  # "legacy": JPEG or PNG, by its bytes


def _head_type(store: ObjectStore, key: str) -> str:
    """The media type of a stored object, from its first bytes."""
    chunks = store.iter_bytes(key, 64)
    head = next(iter(chunks), b"")
    with contextlib.suppress(Exception):
        chunks.close()  # type: ignore[attr-defined]
    return _sniff(head) or "application/octet-stream"


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG"):
        return ImageFormat.PNG.media_type
    if head.startswith(b"\xff\xd8"):
        return ImageFormat.JPEG.media_type
    if head[8:12] == b"WEBP":
        return ImageFormat.WEBP.media_type
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return ImageFormat.AVIF.media_type
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF.media_type
    return None


# --- protection (versioning, object lock) ----------------------------------------------


def check_protection(deps: ServiceDeps) -> dict[str, Protection | str]:
    """What each store keeps beyond one copy, asked once at start (an error is kept as
    its text: a store that does not answer now is the readiness check's to report)."""
    found: dict[str, Protection | str] = {}
    for name, store in zip(("primary", "replica"), _stores(deps), strict=False):
        try:
            found[name] = store.protection()
        except ImgpipeError as exc:
            found[name] = f"unknown ({exc.code})"
    deps.durability.protection.clear()
    deps.durability.protection.update(found)
    for name, value in found.items():
        text = value.describe() if isinstance(value, Protection) else value
        log.info("storage %s: %s", name, text)
    return found
