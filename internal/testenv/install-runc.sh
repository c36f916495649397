#!/usr/bin/env bash
# Installs runc and umoci, which run Portcullis's container image in the
# e2e tests (e2e/container_test.go) without Docker: umoci unpacks the OCI
# image layout into a bundle, runc runs it. Run by `make testenv`. Does
# nothing when both are installed.
set -euo pipefail

if command -v runc >/dev/null && command -v umoci >/dev/null; then
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc umoci
	exit 0
fi
cat >&2 <<'MSG'
install-runc.sh: runc or umoci is missing and this is not root.
The container e2e test needs both (and root, to run a container). Install them with:
    sudo apt-get update && sudo apt-get install -y runc umoci
then run `make testenv` again.
MSG
exit 1
