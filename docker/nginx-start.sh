#!/bin/sh
# Start nginx in the edge and frontend images: the config ($1) has the instance's settings put
# in from the environment (compose passes them from the instance's .env), is written where the
# non-root user may write, and nginx then replaces this shell (tini stays PID 1).
#   PROXY_TIMEOUT_S  seconds a proxied request may take to send its body or get its answer
#                    (instance setting proxy_timeout_s; default 600)
set -eu
template=$1
config=/var/lib/isletnet/nginx/nginx.conf
PROXY_TIMEOUT_S=${PROXY_TIMEOUT_S:-600}
case $PROXY_TIMEOUT_S in
  '' | *[!0-9]* | 0 | 0*)
    echo "PROXY_TIMEOUT_S must be a whole number of seconds above 0, not '$PROXY_TIMEOUT_S'; fix proxy_timeout_s in the instance's settings." >&2
    exit 78 ;;
esac
sed "s/\${PROXY_TIMEOUT_S}/$PROXY_TIMEOUT_S/g" "$template" > "$config"
exec nginx -c "$config" -e stderr -g "daemon off;"
