package example;

import java.nio.ByteBuffer;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Reads Confluent's wire format: magic byte {@code 0}, the writer schema's 4-byte big-endian id in
 * the registry, then Avro binary. The record is decoded with its writer schema, fetched from the
 * registry once per id. A tombstone (null value) stays null.
 */
public final class ConfluentAvroDeserializer implements Deserializer<GenericRecord> {
  private SchemaRegistry registry;

  @Override
  public void configure(Map<String, ?> configs, boolean isKey) {
    registry = new SchemaRegistry(configs);
  }

  @Override
  public GenericRecord deserialize(String topic, byte[] data) {
    if (data == null) {
      return null;
    }
    ByteBuffer buffer = ByteBuffer.wrap(data);
    if (data.length < 5 || buffer.get() != 0) {
      throw new SerializationException(
          topic + ": not Confluent-framed Avro (expected magic byte 0 and a 4-byte schema id)");
    }
    int id = buffer.getInt();
    Schema writer = registry.byId(id);
    try {
      return new GenericDatumReader<GenericRecord>(writer)
          .read(null, DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, null));
    } catch (Exception e) {
      throw new SerializationException(topic + ": cannot decode with schema id " + id, e);
    }
  }
}
