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
# Each run streams into topics of its own, so a second demo never looks like a replay of
# the first (whose readings would then be refused as too late).
run="demo-$(date +%Y%m%d-%H%M%S)"
export PLANTWATCH_TOPIC_TELEMETRY="$run.telemetry" PLANTWATCH_TOPIC_TELEMETRY_DLQ="$run.telemetry.dlq"
export PLANTWATCH_TOPIC_FEATURES="$run.features" PLANTWATCH_TOPIC_EVENTS="$run.maintenance.events"
export PLANTWATCH_INGEST_GROUP="$run-ingest"
echo "[demo] topics: $run.*"
echo "[demo] simulating 40 machines that wear out and fail (20,000 readings, 1% duplicates, 1% malformed) ..."
$pw simulate --machines 40 --count 20000 --duplicate 0.01 --malformed 0.01 --out-of-order 0.02 \
  --mean-life-steps 300 --repair-steps 30
echo "[demo] ingesting: validate, dedupe, dead-letter, emit features ..."
$pw ingest --idle-exit 8 --log-every 5
