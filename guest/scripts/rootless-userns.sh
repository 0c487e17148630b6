#!/bin/bash
#
# Makes sure rootless podman's user namespace (its pause process) exists
# before the socket-activated `podman run` of container-httpd.service. Seen
# in a guest: when that `podman run` and another podman (the boot's pre-pull)
# both had to create the namespace at once, the container's fd 3 was not the
# socket systemd passed, and the VIP's connections queued unanswered. Cheap
# when the namespace exists (one kill -0); otherwise `podman unshare true`
# creates it or waits for the podman creating it.
#
# Usage: rootless-userns.sh RUNTIME_DIR (the unit's %t)
set -euo pipefail

pid_file="$1/libpod/tmp/pause.pid"
if [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    exit 0
fi
exec /usr/bin/podman unshare true
