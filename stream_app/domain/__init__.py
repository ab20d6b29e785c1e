"""The domain, pure: what an observation is, the indicator catalogue, the Decree 09 reporting calendar,
validation, exact aggregates and reporting periods, the stateful step of one entity, consolidated
records, roll-ups and the alert rules. Plain functions over plain data: nothing here imports Faust,
Kafka or Redis (``tests/unit/test_layout.py`` checks it)."""
