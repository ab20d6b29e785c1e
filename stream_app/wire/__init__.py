"""The contracts on the wire, pure: Avro schemas (``avro_schemas/``), the codecs that read reporters'
records (single-object, Confluent framing, JSON) and write the processor's, output framing, the intake's
check (size, decoding, validation), and the compatibility check of every schema version against the
others. Talking to a schema registry is the kafka layer's (``stream_app.kafka.registry``)."""
