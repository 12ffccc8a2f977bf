#!/usr/bin/env bash
# Install everything the two README commands need, idempotently: Debian packages, the Python
# virtual environment with the project, the locally built base image and the wheelhouse the
# service images install from. Each step is skipped when its inputs have not changed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mkdir -p build
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. Debian packages (host side): debootstrap for the base image, the real registry, nginx and
#    chromium for tests, PostgreSQL for the service tests that run without Docker, openssl for
#    test certificates, pebble (a real ACME server) for the provisioning tests' certbot run,
#    nagios4-core and prometheus (promtool too) that run `isletops probe` and scrape the monitor.
apt_packages=(debootstrap docker-registry nginx chromium postgresql openssl openssh-client ca-certificates pebble
              nagios4-core prometheus golang-go golang-github-masterminds-sprig-dev)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages install services we start ourselves, on loopback, only in tests.
for unit in docker-registry nginx postgresql nagios4 prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" || true
  fi
done

# 2. Python virtual environment with the project and its dev tools.
venv_stamp=build/.venv-stamp
venv_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$venv_stamp" 2>/dev/null)" != "$venv_hash" ]; then
  say "creating the Python environment (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  echo "$venv_hash" > "$venv_stamp"
fi

# 3. Base images (debootstrap + docker import, cached by recipe hash): the one every service
#    image builds FROM, and the stand-in provisioning target host the ansible tests run against.
say "base images"
bash scripts/build-base-image.sh base
bash scripts/build-base-image.sh target

# 4. Wheelhouse for the service images (pip install --no-index inside Dockerfiles).
if [ -x scripts/build-wheelhouse.sh ]; then
  bash scripts/build-wheelhouse.sh
fi
