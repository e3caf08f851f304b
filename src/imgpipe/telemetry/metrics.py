"""Prometheus metrics, defined once.

Under `imgpipe worker` (Celery prefork) the children write to PROMETHEUS_MULTIPROC_DIR,
which the worker command sets before anything imports this module, and the parent
serves the aggregate on --metrics-port.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPLOADS = Counter(
    "imgpipe_uploads", "Upload attempts by outcome and problem code.", ["outcome", "code"]
)
UPLOAD_BYTES = Counter("imgpipe_upload_bytes", "Bytes of originals accepted.")
JOBS = Counter("imgpipe_jobs", "Image jobs finished, by resulting image status.", ["status"])
VARIANTS = Counter(
    "imgpipe_variants",
    "Variant attempts finished, by outcome (done, failed, transient) and problem code.",
    ["profile", "outcome", "code"],
)
DEAD_LETTERS = Counter(
    "imgpipe_dead_letters", "Jobs whose variants ran out of attempts, by problem code.", ["code"]
)
HANDED_OUT = Counter(
    "imgpipe_jobs_handed_out",
    "Jobs the reconciler gave to the broker again, by reason "
    "(lease_expired, retry_due, not_enqueued, lost_by_broker).",
    ["reason"],
)
VARIANT_BYTES = Counter("imgpipe_variant_bytes", "Bytes of variants written.")
JOB_SECONDS = Histogram(
    "imgpipe_job_duration_seconds",
    "Time to make all of one image's pending variants.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
HTTP_SECONDS = Histogram(
    "imgpipe_http_request_duration_seconds",
    "HTTP request latency by route and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Durability sweeps (services/durability.py).
PURGED = Counter(
    "imgpipe_purged_images",
    "Deleted images purged after DELETE_RETENTION_S, by outcome (purged, locked: object "
    "lock kept some versions).",
    ["outcome"],
)
REPLICA_COPIES = Counter(
    "imgpipe_replica_copies", "Originals the sweep copied into the replica store it missed."
)
ORPHANS_REMOVED = Counter(
    "imgpipe_orphan_originals_removed", "Originals no record names, removed by the sweep."
)
TEMP_FILES_REMOVED = Counter(
    "imgpipe_temp_files_removed",
    "Temporary files killed processes left behind (imgpipe-s3-* downloads), removed.",
)
# On-demand render (services/render.py).
RENDERS = Counter("imgpipe_renders", "Render requests served, by cache outcome.", ["outcome"])
RENDERS_FROM = Counter(
    "imgpipe_renders_made",
    "Cold renders made, by what they decoded: the render source or the original.",
    ["source"],
)
RENDER_SOURCES_MADE = Counter(
    "imgpipe_render_sources_made",
    "Render sources stored, by copy (base: within 1920x1080, large: within 3840x2160) and "
    "by who made it (worker: the image's job; render: a render that found it missing).",
    ["copy", "by"],
)
RENDER_SECONDS = Histogram(
    "imgpipe_render_duration_seconds",
    "Cold render time: probe, decode, steps, encode and store.",
    buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 4, 8, 15, 30),
)
