#!/usr/bin/env bash
# Debian's chromium, for the browser tests (test/e2e/dashboard.test.ts and the packed client's
# worker-pool check in test/e2e/packages.test.ts drive /usr/bin/chromium with playwright-core).
# Installs it only when it is missing; uses sudo only when not root. `npm run setup:browser`.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
$SUDO apt-get install -y chromium
