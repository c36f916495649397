#!/usr/bin/env bash
# Installs nginx for the benchmark's nginx contender
# (internal/contender/nginx.go). Does nothing when nginx is on PATH or at
# /usr/sbin/nginx, where Debian puts it outside a non-root PATH.
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq
	# nginx-light is enough (TLS, HTTP/2, proxy); newer Debian releases
	# dropped it in favour of plain nginx.
	if apt-cache show nginx-light >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
	else
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
	fi
	# The package starts a system nginx on port 80; the bench runs its own.
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now nginx >/dev/null 2>&1 || true
	fi
	exit 0
fi
cat >&2 <<'MSG'
install-nginx.sh: nginx is missing and this is not root.
The benchmark's nginx contender needs it (any nginx with TLS and HTTP/2).
Install it with:
    sudo apt-get update && sudo apt-get install -y nginx-light
(or `nginx` where nginx-light does not exist), then run the bench again.
MSG
exit 1
