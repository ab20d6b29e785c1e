package example;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Prints the records of a topic as JSON lines: {@code {"topic", "partition", "offset", "key", "value"}},
 * the value decoded through the schema registry ({@code null} for a tombstone).
 *
 * <pre>java -cp 'target/classes:target/lib/*' example.Subscribe client.properties TOPIC [MAX [TIMEOUT_S]]</pre>
 *
 * <p>With a {@code group.id} in the properties it joins that consumer group (committing its offsets);
 * without one it reads every partition from the beginning by assignment, which needs no group ACL.
 * Exits after MAX records (0: no limit), or after TIMEOUT_S seconds (status 2 if fewer than MAX came).
 */
public final class Subscribe {
  private Subscribe() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: Subscribe CLIENT_PROPERTIES TOPIC [MAX [TIMEOUT_S]]");
      System.exit(64);
    }
    Properties props = ClientConfig.load(args[0]);
    String topic = args[1];
    long max = args.length > 2 ? Long.parseLong(args[2]) : 0;
    Instant deadline =
        args.length > 3 ? Instant.now().plusSeconds(Long.parseLong(args[3])) : Instant.MAX;
    props.putIfAbsent(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.putIfAbsent(
        ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ConfluentAvroDeserializer.class.getName());
    props.putIfAbsent(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    boolean grouped = props.containsKey(ConsumerConfig.GROUP_ID_CONFIG);
    if (!grouped) {
      props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    }

    ObjectMapper json = new ObjectMapper();
    long seen = 0;
    try (KafkaConsumer<String, GenericRecord> consumer = new KafkaConsumer<>(props)) {
      if (grouped) {
        consumer.subscribe(List.of(topic));
      } else {
        List<TopicPartition> partitions =
            consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                .map(p -> new TopicPartition(p.topic(), p.partition()))
                .toList();
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
      }
      while (Instant.now().isBefore(deadline) && (max == 0 || seen < max)) {
        for (ConsumerRecord<String, GenericRecord> record : consumer.poll(Duration.ofMillis(500))) {
          String value = record.value() == null ? "null" : GenericData.get().toString(record.value());
          System.out.println(
              "{\"topic\":" + json.writeValueAsString(record.topic())
                  + ",\"partition\":" + record.partition()
                  + ",\"offset\":" + record.offset()
                  + ",\"key\":" + json.writeValueAsString(record.key())
                  + ",\"value\":" + value + "}");
          if (max != 0 && ++seen >= max) {
            break;
          }
        }
        System.out.flush();
      }
    }
    System.exit(max != 0 && seen < max ? 2 : 0);
  }
}
