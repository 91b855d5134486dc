#!/usr/bin/env bash
# Installs Debian's clamav-daemon when clamd is missing, without starting the package's own
# service (the gateway's scripts and tests start their own clamd with their own config).
set -euo pipefail
if command -v clamd >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "clamd is not installed and apt-get is not available: install ClamAV's clamd with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing clamav-daemon (Debian package)..." >&2
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q clamav-daemon >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q clamav-daemon >/dev/null; }
$SUDO rm -f /usr/sbin/policy-rc.d
command -v clamd >/dev/null 2>&1 || PATH="/usr/sbin:$PATH" command -v clamd >/dev/null
