#!/usr/bin/env bash
# Installs Chromium for the real-browser e2e tests (e2e/chromium_test.go).
# Run by `make testenv`. Does nothing when /usr/bin/chromium exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
	exit 0
fi
cat >&2 <<'MSG'
install-chromium.sh: /usr/bin/chromium is missing and this is not root.
The real-browser e2e tests need Chromium. Install it with:
    sudo apt-get update && sudo apt-get install -y chromium
then run `make testenv` again.
MSG
exit 1
