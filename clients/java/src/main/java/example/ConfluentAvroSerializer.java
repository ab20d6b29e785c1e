package example;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Writes Confluent's wire format: magic byte {@code 0}, the 4-byte schema id, then Avro binary. The
 * id is that of the newest version of the subject {@code <topic>-value} (TopicNameStrategy), looked up
 * once per topic; the record must be of that schema (Confluent's serializer with
 * {@code use.latest.version=true, auto.register.schemas=false}). Registers nothing: a producer writes
 * the contract the registry holds. (Looking up the id of one's own copy of a schema, Confluent's
 * default, depends on how the registry compares schema texts: Apicurio's compares them as written.)
 */
public final class ConfluentAvroSerializer implements Serializer<GenericRecord> {
  private SchemaRegistry registry;
  private final Map<String, SchemaRegistry.Latest> latest = new ConcurrentHashMap<>();

  @Override
  public void configure(Map<String, ?> configs, boolean isKey) {
    registry = new SchemaRegistry(configs);
  }

  @Override
  public byte[] serialize(String topic, GenericRecord record) {
    if (record == null) {
      return null;
    }
    Schema schema = record.getSchema();
    SchemaRegistry.Latest newest = latest.computeIfAbsent(topic, t -> registry.latest(t + "-value"));
    if (!newest.schema().equals(schema)) {
      throw new SerializationException(
          topic + ": the record is not of the newest schema of " + topic + "-value (id " + newest.id()
              + ")");
    }
    int id = newest.id();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(0);
    out.writeBytes(ByteBuffer.allocate(4).putInt(id).array());
    BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
    try {
      new GenericDatumWriter<GenericRecord>(schema).write(record, encoder);
      encoder.flush();
    } catch (IOException e) {
      throw new SerializationException(topic + ": cannot encode", e);
    }
    return out.toByteArray();
  }
}
