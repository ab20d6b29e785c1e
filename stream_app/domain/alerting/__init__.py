"""The alert engine's pure core: rules as data (``catalogue/rules.toml``), evaluated per entity.

No I/O besides reading the rules file at load: no Kafka, no Redis, no clock. The caller keeps each
rule's ``RuleState`` in the entity's Redis hash (fields ``r:<rule_id>:<name>``, encoded by
``stream_app.state.entity_hash``), committed with the input offset, and publishes the verdicts
whose ``transition`` is set.
"""

from stream_app.domain.alerting import model
from stream_app.domain.alerting.book import RuleBook
from stream_app.domain.alerting.engine import on_observation, on_tick
from stream_app.domain.alerting.history import BucketHistory
from stream_app.domain.alerting.loader import load_rules
from stream_app.domain.alerting.model import *  # noqa: F403 - the plain data, listed once in model.__all__

__all__ = ["BucketHistory", "RuleBook", "load_rules", "on_observation", "on_tick"]
__all__ += model.__all__
