#!/bin/bash
#
# Waits until something accepts TCP connections on HOST PORT (up to 30 s).
# The container unit uses it so the proxy never connects before httpd listens.
#
set -euo pipefail

host=$1
port=$2
for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
        exit 0
    fi
    sleep 0.2
done
echo "nothing listens on $host:$port after 30 s" >&2
exit 1
