package example;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;

/** A client properties file: the broker's client settings and the schema registry's. */
final class ClientConfig {
  private ClientConfig() {}

  static Properties load(String path) throws IOException {
    Properties props = new Properties();
    try (Reader in = Files.newBufferedReader(Path.of(path), StandardCharsets.UTF_8)) {
      props.load(in);
    }
    return props;
  }
}
