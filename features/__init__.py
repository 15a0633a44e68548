"""Pure windowing and feature code: event time in, arrays out; no Kafka, no clock."""
