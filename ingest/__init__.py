"""Telemetry in: the contract, validation, dead letters, producers and the ingest consumer.

The producers are the plant simulator and the C-MAPSS replay; the consumer reads the
``telemetry`` topic.
"""
