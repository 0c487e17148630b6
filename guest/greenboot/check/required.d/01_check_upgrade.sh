#!/bin/bash
#
# This check fails when the booted commit differs from the commit the guest
# was installed with, so every upgrade fails its health check and greenboot
# rolls it back after three boots (the demo's rollback scenario). Remove
# /etc/greenboot/orig.txt to accept the booted commit as the new original.
#
set -euo pipefail

booted_commit() {
    if command -v rpm-ostree >/dev/null; then
        rpm-ostree status -b --jsonpath ..checksum | jq -r '.[0]'
    else
        ostree admin status | sed -n 's/^\* [^ ]* \([0-9a-f]*\)\..*/\1/p'
    fi
}

if [ ! -f /etc/greenboot/orig.txt ]; then
    booted_commit > /etc/greenboot/orig.txt
fi

booted_commit > /etc/greenboot/current.txt

diff -s /etc/greenboot/orig.txt /etc/greenboot/current.txt
