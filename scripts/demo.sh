#!/usr/bin/env bash
# The main job (`make demo`): install, start the local Kafka and InfluxDB, and push a
# real telemetry record and a real InfluxDB point through them. The services keep
# running afterwards; stop them with `.venv/bin/plantwatch services down`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/plantwatch services up
.venv/bin/plantwatch smoke
