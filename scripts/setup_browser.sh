#!/bin/sh
# Installs what the browser test needs: Debian's Chromium, Node.js and npm
# when missing, and puppeteer-core from the committed lockfile (it drives the
# installed Chromium and downloads no browser).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi
dir="$root/tests/browser"
if [ ! -d "$dir/node_modules/puppeteer-core" ]; then
  echo "setup: npm ci in tests/browser (puppeteer-core)" >&2
  (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
