"""The alert state machine, the InfluxDB writer, ticket sinks and maintenance feedback."""
