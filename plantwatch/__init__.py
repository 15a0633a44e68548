"""plantwatch: streaming predictive maintenance on Kafka, Keras and InfluxDB.

This package is the application shell: the command line, settings, wiring and the
local development services. The stages live in the top-level packages ``ingest``,
``features``, ``models`` and ``alerting``.
"""

__version__ = "0.1.0"
