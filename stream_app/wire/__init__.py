"""The contracts on the wire: Avro schemas (``avro_schemas/``), the codecs that read reporters' records
(single-object, Confluent framing, JSON) and write the processor's, the schema registry's edge, and
the compatibility check of every schema version against the others."""
