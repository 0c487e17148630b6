#!/bin/bash
#
# Reboots into a staged OS update, when there is one. rpm-ostreed-automatic
# stages updates (AutomaticUpdatePolicy=stage); staging alone changes
# nothing until the next boot, which this makes happen.
#
set -euo pipefail

if command -v rpm-ostree >/dev/null; then
    n_staged=$(rpm-ostree status --json | jq '[.deployments[] | select(.staged == true)] | length')
else
    n_staged=$(ostree admin status | grep -c '(staged)' || true)
fi

if [ "$n_staged" -gt 0 ]; then
    logger -t edgelab "a staged OS update is ready: rebooting to apply it"
    systemctl reboot
fi
