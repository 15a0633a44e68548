#!/usr/bin/env bash
# The main job (`make demo`): install, start the local Kafka and InfluxDB, check both with a
# real round trip, train a failure model on simulated history if there is none yet, then
# stream a simulated fleet (wear, failures, repairs, bad messages) through the whole
# pipeline (`plantwatch run`: ingest -> features -> scorer -> alerting -> InfluxDB + tickets)
# for a bounded time with live status lines, and end with a summary next to the
# simulator's ground truth plus a PNG report.
#
# Each run gets topics, consumer groups, an InfluxDB bucket and a ticket store of its own
# (so a second run never mixes with the first) and saves them as the current profile
# (`plantwatch profile show`): the README tour's commands (`plantwatch status`, `tickets`,
# `history`, `report`, `dead-letters`) then show the newest run with no settings;
# `plantwatch profile clear` goes back to the defaults.
#
# Knobs (environment): DEMO_MACHINES (40), DEMO_STEPS (480 one-minute steps per machine),
# DEMO_RATE (messages/s, 600), PLANTWATCH_MODELS_DIR (default .state/demo/models).
# The services keep running afterwards; stop them with `.venv/bin/plantwatch services down`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
pw=.venv/bin/plantwatch
started=$(date +%s)

demo_dir="$PWD/.state/demo"
export PLANTWATCH_MODELS_DIR="${PLANTWATCH_MODELS_DIR:-$demo_dir/models}"
machines="${DEMO_MACHINES:-40}" steps="${DEMO_STEPS:-480}" rate="${DEMO_RATE:-600}"
run="demo-$(date +%Y%m%d-%H%M%S)"
for t in telemetry telemetry.dlq features features.dlq predictions predictions.dlq \
  maintenance.events maintenance.tickets maintenance.feedback; do
  var="PLANTWATCH_TOPIC_$(echo "$t" | sed 's/^maintenance\.//; s/\./_/g' | tr a-z A-Z)"
  export "$var=$run.$t"
done
export PLANTWATCH_INGEST_GROUP="$run-ingest" PLANTWATCH_SCORER_GROUP="$run-scorer"
export PLANTWATCH_ALERT_GROUP="$run-alerting" PLANTWATCH_ALERT_DB="$demo_dir/$run/alerts.db"
export PLANTWATCH_INFLUX_BUCKET="$run" PLANTWATCH_INGEST_WRITE_INFLUX=true  # sensors for `history`
mkdir -p "$demo_dir/$run"
$pw profile clear >/dev/null  # the previous run's profile must not fill in this run's settings
$pw services up               # also creates this run's bucket and topics
$pw smoke
$pw profile save "$run"
# Simulated plant: one reading per machine per minute (= one feature step), a mean life of
# 300 steps between repairs, 30 steps of repair without telemetry.
sim=(--interval-ms 60000 --mean-life-steps 300 --repair-steps 30)

if ! compgen -G "$PLANTWATCH_MODELS_DIR/*/spec.json" >/dev/null; then
  echo "[demo] no model in $PLANTWATCH_MODELS_DIR yet: simulating 30 machines x 1,200 steps of" \
    "history (another seed than the stream) and training one (about a minute) ..."
  $pw simulate --history-out "$demo_dir/history/telemetry.parquet" --machines 30 --steps 1200 \
    --seed 101 "${sim[@]}"
  $pw train --data "history:$demo_dir/history/telemetry.parquet" --horizon 30 --epochs 15 \
    --out "$PLANTWATCH_MODELS_DIR/sim-$(date +%Y%m%d-%H%M%S)"
fi

echo "[demo] run $run: topics $run.*, bucket $run, stage logs in $demo_dir/$run/logs"

$pw run --no-services --idle-exit 20 --status-every 5 --log-dir "$demo_dir/$run/logs" &
pipeline=$!
trap 'kill -TERM $pipeline 2>/dev/null || true; wait $pipeline || true' INT TERM
echo "[demo] streaming $machines machines x $steps steps at $rate messages/s" \
  "(1% duplicates, 1% malformed, 2% out of order) ..."
$pw simulate --machines "$machines" --count $((machines * steps)) --seed 7 "${sim[@]}" \
  --duplicate 0.01 --malformed 0.01 --out-of-order 0.02 --rate "$rate"
echo "[demo] stream sent; the pipeline stops 20 s after its last record ..."
wait $pipeline
trap - INT TERM

hours=$(((steps + 120) / 60 + 1))
echo "[demo] summary (event time of the last ${hours}h, against the simulator's failures):"
$pw report --since "${hours}h" --png "$demo_dir/$run/report.png" \
  --json-out "$demo_dir/$run/summary.json"
echo "[demo] done in $(($(date +%s) - started)) s. The tour's commands now show this run" \
  "(profile $run), e.g.: $pw status; $pw tickets list; $pw history pump-0000 --since ${hours}h"
