#!/bin/sh
# Render the template with this container's values, then run nginx in the foreground.
set -eu
: "${LISTEN:=0.0.0.0:8080}" "${UPSTREAM:=api:8000}" "${CACHE_DIR:=/var/cache/imgpipe-cdn}"
: "${RUN_DIR:=/run/imgpipe-cdn}"
export LISTEN UPSTREAM CACHE_DIR RUN_DIR
mkdir -p "$CACHE_DIR" "$RUN_DIR"
envsubst '${LISTEN} ${UPSTREAM} ${CACHE_DIR} ${RUN_DIR}' \
    < /etc/imgpipe-cdn/nginx.conf.template > "$RUN_DIR/nginx.conf"
exec nginx -c "$RUN_DIR/nginx.conf"
