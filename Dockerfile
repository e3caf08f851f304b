# imgpipe: one image for every role (api, worker, db upgrade, batch), chosen by the command.
# How it is run and why it is built this way: docs/deploy.md.
#
# No system libvips: the pyvips-binary wheel ships libvips and its codecs, so the runtime
# image is python:3.11-slim plus one virtualenv.

# ---- build: install the project and its dependencies into /opt/imgpipe -----------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/imgpipe

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The s3 extra brings boto3, for IMGPIPE_STORAGE_URL=s3://bucket/prefix.
RUN /opt/imgpipe/bin/pip install ".[s3]"

# ---- runtime: the virtualenv alone, run as an unprivileged user -------------------------
FROM python:3.11-slim

RUN groupadd --system --gid 10001 imgpipe \
    && useradd --system --uid 10001 --gid 10001 --no-log-init \
        --home-dir /var/lib/imgpipe --create-home --shell /usr/sbin/nologin imgpipe

COPY --from=build /opt/imgpipe /opt/imgpipe

# IMGPIPE_DATA_DIR holds uploads in flight (staging); it must be writable by the user.
ENV PATH=/opt/imgpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMGPIPE_DATA_DIR=/var/lib/imgpipe

USER 10001:10001
WORKDIR /var/lib/imgpipe

EXPOSE 8000
ENTRYPOINT ["imgpipe"]
CMD ["--help"]
