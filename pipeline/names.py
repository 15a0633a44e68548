"""What a machine's and a sensor's name may be, and how far event times reach.

Every record that crosses a stage boundary (telemetry, feature records, predictions,
tickets) names machines and sensors by these rules, so that each sink (Kafka keys,
InfluxDB tags, file names, URLs) can carry them and give them back unchanged.

>>> bool(ID_RE.fullmatch("pump-0001")), bool(ID_RE.fullmatch("pump 1"))
(True, False)
>>> bool(SENSOR_RE.fullmatch("bearing_temp")), bool(SENSOR_RE.fullmatch("1st"))
(True, False)
"""

from __future__ import annotations

import re

# Matched with fullmatch: `$` would also match before a final newline, which InfluxDB's
# line protocol then refuses.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")
"""An equipment_id (at most :data:`MAX_EQUIPMENT_ID` characters)."""
SENSOR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
"""A sensor name (at most 64 characters)."""
MAX_EQUIPMENT_ID = 128
"""The longest equipment_id by default."""
MAX_SENSORS = 256
"""The most readings of one sample by default."""
#: Event times are bounded before any arithmetic: epoch 0 to 2262-04-11, the end of
#: InfluxDB's nanosecond time range.
MAX_TS_MS = 9_223_372_036_854
