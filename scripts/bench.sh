#!/usr/bin/env bash
# `make bench`: the benchmarks (separate from the tests), against private real services.
# Each bench/bench_*.py writes bench/results/<name>.json; the printed lines are collected
# in bench/results/latest.md. Extra arguments go to every benchmark (e.g. --runs 3).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"
for var in $(env | grep -o '^PLANTWATCH_[A-Z_]*' | grep -v '^PLANTWATCH_CACHE_DIR$'); do unset "$var"; done
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
echo "[bench] results: $out"
exit $status
