#!/usr/bin/env bash
# `make bench`: the benchmarks (separate from the tests), against private real services.
# Each bench/bench_*.py writes bench/results/<name>.json; the printed lines are collected
# in bench/results/latest.md, followed by a table of every result file (median/min/max,
# core count; bench/_report.py). Extra arguments go to every benchmark (e.g. --runs 3).
# bench_peer.py compares with Quix Streams, run from its own virtualenv (.venv-bench, made
# here when missing) because Quix pins older pydantic releases than plantwatch uses.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"
if ! .venv-bench/bin/python -c 'import quixstreams' 2>/dev/null; then
  echo "[bench] making .venv-bench with the Quix Streams peer (pyproject's bench extra)"
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q 'quixstreams>=3.13,<4' || exit 1
fi
for var in $(env | grep -o '^PLANTWATCH_[A-Z_]*' | grep -v '^PLANTWATCH_CACHE_DIR$'); do unset "$var"; done
export PLANTWATCH_BENCH_QUIX_PYTHON="$PWD/.venv-bench/bin/python"
export PLANTWATCH_STATE_DIR="$PWD/.state/bench"
export PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092 PLANTWATCH_KAFKA_CONTROLLER_PORT=29093
export PLANTWATCH_INFLUX_URL=http://127.0.0.1:28086 PLANTWATCH_INFLUX_TOKEN=plantwatch-bench-token
plantwatch services down --purge >/dev/null 2>&1
trap 'plantwatch services down --purge >/dev/null' EXIT
plantwatch services up || exit 1
out=bench/results/latest.md
{
  echo "# plantwatch benchmarks"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(python -c 'import platform; print(platform.processor() or platform.machine())'); medians of several runs (min/max in the JSON files)."
  echo
  echo '```'
} > "$out"
status=0
for bench in bench/bench_*.py; do
  name=$(basename "$bench" .py)
  echo "[bench] $name"
  python "$bench" --out "bench/results/${name#bench_}.json" "$@" 2> >(grep -v '^WARNING' >&2) | tee -a "$out" || status=1
done
echo '```' >> "$out"
{
  echo
  echo "## Every result file"
  echo
  python bench/_report.py bench/results
} >> "$out" || status=1
echo "[bench] results: $out"
exit $status
