#!/usr/bin/env bash
# The main job (`make demo`): install, start the local Kafka and InfluxDB, check both with a
# real round trip, then stream a simulated fleet (with faults) through the ingest stage:
# validation, dead letters, duplicates, windowed features to the `features` topic.
# The services keep running afterwards; stop them with `.venv/bin/plantwatch services down`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
pw=.venv/bin/plantwatch
$pw services up
$pw smoke
echo "[demo] simulating 40 machines that wear out and fail (20,000 readings, 1% duplicates, 1% malformed) ..."
$pw simulate --machines 40 --count 20000 --duplicate 0.01 --malformed 0.01 --out-of-order 0.02 \
  --mean-life-steps 300 --repair-steps 30
echo "[demo] ingesting: validate, dedupe, dead-letter, emit features ..."
$pw ingest --idle-exit 8 --log-every 5
