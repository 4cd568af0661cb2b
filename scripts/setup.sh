#!/bin/sh
# Installs the Debian 12 packages bg_jobs builds and tests with; a no-op when
# they are all present. Runs apt-get as root, or through sudo otherwise.
set -eu
pkgs="build-essential cmake pkg-config libcaf-dev libpqxx-dev libpq-dev \
libsqlite3-dev nlohmann-json3-dev doctest-dev postgresql-15 jq libcctz-dev \
tzdata libcli11-dev libcpp-httplib-dev prometheus-cpp-dev curl faketime libboost-dev python3 libsodium-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
