#!/bin/sh
# Starts nats-server in compose with deploy/nats/nats-server.conf: each user's
# password comes from its compose secret (deploy/secrets/nats_<user>_password,
# made by deploy/nats/make-secrets.sh) into the variable the config names.
# A missing or empty secret stops the container: NATS never runs without auth.
set -eu
for user in ingest router drafter sender scheduler operator; do
  file="/run/secrets/nats_${user}_password"
  if [ ! -s "$file" ]; then
    echo "nats: missing secret $file (run deploy/nats/make-secrets.sh)" >&2
    exit 1
  fi
  var="REPLYLINE_NATS_$(echo "$user" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  export "$var=$(cat "$file")"
done
exec nats-server -c /etc/nats/nats-server.conf -sd /data "$@"
