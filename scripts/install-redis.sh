#!/usr/bin/env bash
# Installs the Redis server the tests of shared rate budgets and question limits start
# (tests/redis_server.py): Debian's redis-server at /usr/bin/redis-server. The tests run their
# own server on a free loopback port; the system service the package may start is not used.
# Run as root on a fresh Debian machine; a no-op when redis-server is already there.
set -euo pipefail

REDIS_SERVER=/usr/bin/redis-server

if [ ! -x "$REDIS_SERVER" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "install-redis: $REDIS_SERVER is missing and installing it needs root" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        redis-server
fi

"$REDIS_SERVER" --version 2>/dev/null | grep -i "redis server" || {
    echo "install-redis: $REDIS_SERVER does not run" >&2
    exit 1
}
