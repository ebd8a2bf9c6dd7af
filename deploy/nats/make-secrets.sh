#!/bin/sh
# Creates one random NATS password per user in deploy/secrets/ (git-ignored),
# the files compose.yaml hands out as secrets: each service sees only its own,
# the nats container all of them. Existing files are kept (delete one and
# restart the stack to rotate it).
set -eu
dir="$(cd "$(dirname "$0")/.." && pwd)/secrets"
mkdir -p "$dir"
# The folder keeps other host users out; the files stay readable because compose
# bind-mounts each one into a container that runs as a non-root user (uid 10001).
chmod 700 "$dir"
umask 022
for user in ingest router drafter sender scheduler operator; do
  file="$dir/nats_${user}_password"
  if [ -s "$file" ]; then
    echo "kept    $file"
    continue
  fi
  # Letters first: the server config reads the value as a string, never a number.
  printf 'rl%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$file"
  echo "created $file"
done
