"""What a worker loads once at start from the repository's data files: the topic declarations and the
blueprint (settings, catalogue, schemas, topics, rules), cross-checked."""
