package example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Sends one record, given as a JSON document, to a topic: written with the newest schema of the
 * subject {@code <topic>-value} in the registry, Confluent-framed. Fields the document leaves out take
 * their schema defaults; times are epoch milliseconds.
 *
 * <pre>java -cp 'target/classes:target/lib/*' example.Produce client.properties TOPIC KEY JSON</pre>
 *
 * <p>Prints {@code topic partition offset} of the record once the broker has it ({@code acks=all}).
 */
public final class Produce {
  private Produce() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: Produce CLIENT_PROPERTIES TOPIC KEY JSON");
      System.exit(64);
    }
    Properties props = ClientConfig.load(args[0]);
    String topic = args[1];
    props.putIfAbsent(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.putIfAbsent(
        ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ConfluentAvroSerializer.class.getName());
    props.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");

    Map<String, Object> registryConfig = new HashMap<>();
    props.forEach((k, v) -> registryConfig.put(k.toString(), v));
    Schema schema = new SchemaRegistry(registryConfig).latest(topic + "-value").schema();
    GenericRecord value = (GenericRecord) fromJson(schema, new ObjectMapper().readTree(args[3]));

    try (KafkaProducer<String, GenericRecord> producer = new KafkaProducer<>(props)) {
      RecordMetadata sent = producer.send(new ProducerRecord<>(topic, args[2], value)).get();
      System.out.println(sent.topic() + " " + sent.partition() + " " + sent.offset());
    }
  }

  /** A JSON value as the Avro datum of {@code schema} (a union takes its first branch that fits). */
  static Object fromJson(Schema schema, JsonNode node) {
    switch (schema.getType()) {
      case RECORD:
        GenericRecordBuilder builder = new GenericRecordBuilder(schema);
        for (Schema.Field field : schema.getFields()) {
          if (node.has(field.name())) {
            builder.set(field, fromJson(field.schema(), node.get(field.name())));
          }
        }
        return builder.build();
      case UNION:
        for (Schema branch : schema.getTypes()) {
          if (fits(branch, node)) {
            return fromJson(branch, node);
          }
        }
        throw new IllegalArgumentException("no branch of " + schema + " fits " + node);
      case NULL:
        return null;
      case STRING:
        return node.asText();
      case ENUM:
        return new GenericData.EnumSymbol(schema, node.asText());
      case INT:
        return node.asInt();
      case LONG:
        return node.asLong();
      case FLOAT:
        return (float) node.asDouble();
      case DOUBLE:
        return node.asDouble();
      case BOOLEAN:
        return node.asBoolean();
      case MAP:
        Map<String, Object> map = new HashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
          Map.Entry<String, JsonNode> entry = it.next();
          map.put(entry.getKey(), fromJson(schema.getValueType(), entry.getValue()));
        }
        return map;
      case ARRAY:
        List<Object> items = new ArrayList<>();
        node.forEach(item -> items.add(fromJson(schema.getElementType(), item)));
        return items;
      default:
        throw new IllegalArgumentException("unsupported Avro type " + schema.getType());
    }
  }

  private static boolean fits(Schema schema, JsonNode node) {
    return switch (schema.getType()) {
      case NULL -> node.isNull();
      case STRING, ENUM -> node.isTextual();
      case INT, LONG -> node.isIntegralNumber();
      case FLOAT, DOUBLE -> node.isNumber();
      case BOOLEAN -> node.isBoolean();
      case RECORD, MAP -> node.isObject();
      case ARRAY -> node.isArray();
      default -> false;
    };
  }
}
