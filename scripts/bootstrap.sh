#!/usr/bin/env bash
# Create .venv with Python >= 3.11 and install plantwatch with its dev tools into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "plantwatch needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "[bootstrap] creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
stamp=.venv/.plantwatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[bootstrap] installing plantwatch and its dependencies into .venv (first time: a few minutes, TensorFlow is large)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --progress-bar off -e '.[dev]' | grep -E '^(Successfully|ERROR)' || true
  .venv/bin/python -c 'import plantwatch, kafka, influxdb_client, pandas, numpy' # fail loudly if broken
  touch "$stamp"
fi
