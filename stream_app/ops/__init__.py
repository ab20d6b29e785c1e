"""Operating concerns every layer above uses: Prometheus metrics, the failure policy (transient,
blocking, permanent) and retrying, the Alertmanager client."""
