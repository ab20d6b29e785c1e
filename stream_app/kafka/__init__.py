"""Kafka at the edges: client configuration and security, producing outputs and dead letters, the
partitioner, topics and ACLs as data applied to the cluster."""
