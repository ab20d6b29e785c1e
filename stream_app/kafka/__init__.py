"""Kafka and its ecosystem at the edges: client configuration and security, producing outputs and dead
letters, the partitioner, topics and ACLs as data applied to the cluster, and the schema registry
(its client, the subjects, ``schemas register``, the ids a Confluent-framed output carries)."""
