package example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.apache.avro.Schema;

/**
 * A schema registry reached through Confluent's REST API, which Confluent Schema Registry, Apicurio
 * Registry ({@code /apis/ccompat/v7}), Karapace and Redpanda all serve. Schemas are cached by id (an id
 * never changes its schema), so a consumer asks once per schema, not per record.
 *
 * <p>Configured with the property names of Confluent's own serdes, so one client properties file
 * serves both: {@code schema.registry.url}, {@code schema.registry.ssl.truststore.location} and
 * {@code .type} ({@code PEM}, {@code PKCS12} or {@code JKS}, with {@code .password}), and
 * {@code basic.auth.user.info} ({@code user:password}) when the registry asks for it.
 */
final class SchemaRegistry {
  static final String URL = "schema.registry.url";
  static final String TRUSTSTORE_LOCATION = "schema.registry.ssl.truststore.location";
  static final String TRUSTSTORE_TYPE = "schema.registry.ssl.truststore.type";
  static final String TRUSTSTORE_PASSWORD = "schema.registry.ssl.truststore.password";
  static final String BASIC_AUTH = "basic.auth.user.info";

  private static final ObjectMapper JSON = new ObjectMapper();
  private final String base;
  private final String authorization;
  private final HttpClient http;
  private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();

  /** The latest version of a subject: its id and its schema. */
  record Latest(int id, Schema schema) {}

  SchemaRegistry(Map<String, ?> configs) {
    Object url = configs.get(URL);
    if (url == null) {
      throw new IllegalArgumentException(URL + " is required");
    }
    this.base = url.toString().replaceAll("/+$", "");
    Object userInfo = configs.get(BASIC_AUTH);
    this.authorization =
        userInfo == null
            ? null
            : "Basic "
                + Base64.getEncoder()
                    .encodeToString(userInfo.toString().getBytes(StandardCharsets.UTF_8));
    HttpClient.Builder builder = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10));
    Object location = configs.get(TRUSTSTORE_LOCATION);
    if (location != null) {
      builder.sslContext(
          sslContext(
              Path.of(location.toString()),
              configs.containsKey(TRUSTSTORE_TYPE) ? configs.get(TRUSTSTORE_TYPE).toString() : "PEM",
              configs.containsKey(TRUSTSTORE_PASSWORD)
                  ? configs.get(TRUSTSTORE_PASSWORD).toString()
                  : null));
    }
    this.http = builder.build();
  }

  /** The writer schema of a Confluent schema id: {@code GET /schemas/ids/{id}}. */
  Schema byId(int id) {
    return byId.computeIfAbsent(id, key -> parse(get("/schemas/ids/" + key).get("schema").asText()));
  }

  /** The newest version of {@code subject}: {@code GET /subjects/{subject}/versions/latest}. */
  Latest latest(String subject) {
    JsonNode answer = get("/subjects/" + encode(subject) + "/versions/latest");
    return new Latest(answer.get("id").asInt(), parse(answer.get("schema").asText()));
  }

  private JsonNode get(String path) {
    return send(request(path).GET().build());
  }

  private HttpRequest.Builder request(String path) {
    HttpRequest.Builder builder =
        HttpRequest.newBuilder(URI.create(base + path))
            .timeout(Duration.ofSeconds(30))
            .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
    if (authorization != null) {
      builder.header("Authorization", authorization);
    }
    return builder;
  }

  private JsonNode send(HttpRequest request) {
    try {
      HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
      if (response.statusCode() / 100 != 2) {
        throw new IllegalStateException(
            request.method() + " " + request.uri() + ": HTTP " + response.statusCode() + " "
                + response.body());
      }
      return JSON.readTree(response.body());
    } catch (IOException e) {
      throw new IllegalStateException(request.method() + " " + request.uri() + ": " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }

  private static Schema parse(String text) {
    return new Schema.Parser().parse(text);
  }

  private static String encode(String subject) {
    return URLEncoder.encode(subject, StandardCharsets.UTF_8).replace("+", "%20");
  }

  /** TLS trusting the certificates of a PEM file (e.g. a private CA's) or of a keystore. */
  private static SSLContext sslContext(Path location, String type, String password) {
    try {
      KeyStore trust;
      if ("PEM".equalsIgnoreCase(type)) {
        trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (InputStream in = Files.newInputStream(location)) {
          int n = 0;
          for (Certificate cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
            trust.setCertificateEntry("ca-" + n++, cert);
          }
        }
      } else {
        trust = KeyStore.getInstance(type);
        try (InputStream in = Files.newInputStream(location)) {
          trust.load(in, password == null ? null : password.toCharArray());
        }
      }
      TrustManagerFactory factory =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      factory.init(trust);
      SSLContext context = SSLContext.getInstance("TLS");
      context.init(null, factory.getTrustManagers(), null);
      return context;
    } catch (IOException | GeneralSecurityException e) {
      throw new IllegalArgumentException("cannot load the registry's truststore " + location, e);
    }
  }
}
