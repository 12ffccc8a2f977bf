#!/bin/sh
# Start SeaweedFS with S3 on 8333. The S3 identity file is written at every start from the
# environment (S3_ACCESS_KEY/S3_SECRET_KEY, generated into the instance's .env), so changing the
# keys needs only a restart. Master, volume and filer talk to each other over loopback; only S3
# is reachable from the other containers.
set -eu
# Swarm hands secrets over as files (`NAME_FILE=/run/secrets/...`); compose as values.
for name in S3_ACCESS_KEY S3_SECRET_KEY; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ] && eval "[ -z \"\${$name:-}\" ]"; then
    export "$name=$(cat "$file")"
  fi
done
: "${S3_ACCESS_KEY:?S3_ACCESS_KEY is required}"
: "${S3_SECRET_KEY:?S3_SECRET_KEY is required}"
config=/etc/seaweedfs/s3.json
umask 077
python3 - "$config" <<'PY'
import json, os, sys
identity = {"name": "isletnet", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": os.environ["S3_ACCESS_KEY"], "secretKey": os.environ["S3_SECRET_KEY"]}]}
with open(sys.argv[1], "w") as handle:
    json.dump({"identities": [identity]}, handle)
PY
# Memory: a burst of uploads (30 images of 5 MB at once, plus their results) ran weed past the
# container's 512m and the kernel killed it (measured, bench/run_burst_on_test_stack.py). So the
# Go runtime gets a soft limit of 3/4 of the container's (GOMEMLIMIT: it collects garbage harder
# near it), and the bytes of uploads in flight are bounded; more uploads wait their turn.
limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo max)
case "$limit" in
  ''|max|*[!0-9]*) ;;
  *) if [ "$limit" -lt 68719476736 ] && [ -z "${GOMEMLIMIT:-}" ]; then export GOMEMLIMIT="$((limit / 4 * 3))"; fi ;;
esac
inflight="${SEAWEEDFS_UPLOAD_INFLIGHT_MB:-64}"
exec weed server -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 \
  -master.volumeSizeLimitMB="${SEAWEEDFS_VOLUME_SIZE_MB:-1024}" -volume.max=0 \
  -volume.concurrentUploadLimitMB="$inflight" -volume.concurrentDownloadLimitMB="$inflight" \
  -filer.concurrentUploadLimitMB="$inflight" -s3.concurrentUploadLimitMB="$inflight" \
  -s3 -s3.port=8333 -s3.config="$config" "$@"
