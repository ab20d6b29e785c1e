"""Exceptions of the stream processor."""


class StreamAppError(Exception):
    """Base class of the processor's own errors."""


class ConfigurationError(StreamAppError):
    """A data file (catalogue, topics, schema) or a setting is wrong; the message names it."""


class ServiceUnreachableError(StreamAppError):
    """Kafka or Redis did not answer within the start-up deadline."""


class DecodeError(StreamAppError):
    """The bytes of a record could not be turned into an observation.

    ``reason`` is the dead-letter reason code.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
