#!/usr/bin/env bash
# The one test command (`make test`, also what .ci/run calls): installs plantwatch into
# .venv, starts a private real Kafka broker and InfluxDB server on loopback, runs format,
# lint, type and import-layer checks and every test (unit, integration, doctests), and
# stops the services again even when something fails. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"

# The tests get their own services, ports and state; a developer's own settings and
# running services are left alone.
for var in $(env | grep -o '^PLANTWATCH_[A-Z_]*' | grep -v '^PLANTWATCH_TEST_\|^PLANTWATCH_CACHE_DIR$'); do
  unset "$var"
done
export PLANTWATCH_STATE_DIR="$PWD/.state/test"
export PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PLANTWATCH_TEST_KAFKA_PORT:-19092}"
export PLANTWATCH_KAFKA_CONTROLLER_PORT="${PLANTWATCH_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export PLANTWATCH_INFLUX_URL="http://127.0.0.1:${PLANTWATCH_TEST_INFLUX_PORT:-18086}"
export PLANTWATCH_INFLUX_TOKEN="plantwatch-test-token-$$"

plantwatch services down --purge >/dev/null 2>&1  # leftovers of an interrupted run
trap 'echo "[test] stopping services"; plantwatch services down --purge' EXIT

failed=()
echo "[test] ruff format --check";  ruff format --check . || failed+=("ruff format")
echo "[test] ruff check";           ruff check . || failed+=("ruff check")
echo "[test] mypy";                 mypy || failed+=("mypy")
echo "[test] import layers";        lint-imports || failed+=("import layers")
echo "[test] starting Kafka and InfluxDB (first run on a machine builds them: minutes)"
if ! plantwatch services up; then
  echo "[test] FAILED: the services did not start; see the message above" >&2
  exit 1
fi
echo "[test] pytest"
pytest "$@" || failed+=("pytest")

if [ ${#failed[@]} -gt 0 ]; then
  echo "[test] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[test] all checks passed"
