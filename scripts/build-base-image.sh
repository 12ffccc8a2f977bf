#!/usr/bin/env bash
# Build a local Debian bookworm image with debootstrap + docker import, with the current
# bookworm-updates and bookworm-security fixes applied.
# Usage: build-base-image.sh [RECIPE]   (RECIPE = a folder under docker/ with packages.txt;
# default "base"). The image is tagged isletnet-<RECIPE>:<recipe-hash>-<index-date> and :latest,
# where <index-date> (UTC, YYYYMMDDHHMM) is the newer of the Date: fields of the bookworm-updates
# and bookworm-security indexes the build saw. It is rebuilt when this script, the recipe's
# packages.txt or one of those indexes changes, so next month's build picks up new fixes. The
# image carries the labels org.isletnet.base.security-index (that date), .recipe (the hash) and
# org.opencontainers.image.created. Offline, the newest local build of the same recipe is kept
# (with a warning). Production builds pass a public image as BASE_IMAGE instead and never run this.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
recipe="${1:-base}"
packages_file="$here/docker/$recipe/packages.txt"
[ -f "$packages_file" ] || { echo "no recipe docker/$recipe/packages.txt" >&2; exit 2; }
recipe_hash=$(cat "$0" "$packages_file" | sha256sum | cut -c1-12)
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# The Date: of a suite's InRelease as YYYYMMDDHHMM (UTC), or nothing when it cannot be read.
index_date() {
  local date
  date=$(curl -fsS --max-time 30 "$1/dists/$2/InRelease" 2>/dev/null | sed -n 's/^Date: //p' | head -n 1) || true
  [ -n "$date" ] && date -u -d "$date" +%Y%m%d%H%M
}
updates_date=$(index_date "$mirror" bookworm-updates || true)
security_date=$(index_date "$security_mirror" bookworm-security || true)
if [ -z "$updates_date" ] || [ -z "$security_date" ]; then
  newest=$(docker images --format '{{.Tag}}' "isletnet-$recipe" | grep "^$recipe_hash-" | sort | tail -n 1 || true)
  if [ -n "$newest" ]; then
    echo "warning: cannot read the bookworm-updates/-security indexes; keeping isletnet-$recipe:$newest" >&2
    docker tag "isletnet-$recipe:$newest" "isletnet-$recipe:latest"
    exit 0
  fi
  echo "cannot read the Debian indexes at $mirror and $security_mirror; the base image needs them" >&2
  exit 2
fi
stamp=$(printf '%s\n%s\n' "$updates_date" "$security_date" | sort | tail -n 1)
image="isletnet-$recipe:$recipe_hash-$stamp"

if docker image inspect "$image" >/dev/null 2>&1; then
  docker tag "$image" "isletnet-$recipe:latest"
  echo "image $image is up to date"
  exit 0
fi

include=$(grep -v '^\s*#' "$packages_file" | grep -v '^\s*$' | paste -sd, -)
rootfs=$(mktemp -d /var/tmp/isletnet-rootfs.XXXXXX)
chmod 755 "$rootfs"  # mktemp makes it 0700: the image's / and the chroot's must be readable by every user
cleanup() {
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$rootfs"
}
trap cleanup EXIT
echo "debootstrap bookworm into $rootfs (a few minutes, once)"
debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" >/dev/null
# Security and stable updates: debootstrap knows one suite of one mirror, so the upgrade runs
# inside the new root. No service may start there (policy-rc.d), and the host's resolver is lent.
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
SOURCES
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
echo "applying bookworm-updates and bookworm-security (index $stamp)"
chroot "$rootfs" apt-get -qq -o APT::Sandbox::User=root update
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get -y -qq -o APT::Sandbox::User=root -o Dpkg::Options::=--force-confold upgrade >/dev/null
umount "$rootfs/proc"
rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"
# Keep the image small: package lists and caches are of no use inside it.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# Services start their own daemons; the distribution's init scripts must not.
rm -f "$rootfs"/etc/nginx/sites-enabled/default
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.isletnet.base.security-index=$stamp org.isletnet.base.recipe=$recipe_hash org.opencontainers.image.created=$created org.opencontainers.image.base.name=debian:bookworm" \
  - "$image" >/dev/null
docker tag "$image" "isletnet-$recipe:latest"
echo "built $image"
