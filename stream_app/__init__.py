"""Streaming backbone of Vietnam's national reporting system.

Reporters' observations arrive on per-reporter Kafka topics; the processor validates them, keeps
rolling aggregates and alert levels in Redis, and republishes alerts and consolidated events to the
Government Information and Direction Center's topics.
"""

from stream_app.settings import Settings

__all__ = ["Settings"]
__version__ = "0.1.0"
