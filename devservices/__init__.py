"""Local development services: a real Kafka broker and a real InfluxDB server on loopback.

No Docker engine is needed: Kafka runs from its Maven Central jars on the machine's
Java, and influxd is built from the Go module proxy. Both are cached per user and
version, started on loopback ports and stopped by pid file.
"""

from devservices.manager import down, status, up

__all__ = ["down", "status", "up"]
