"""Exceptions of the stream processor."""


class StreamAppError(Exception):
    """Base class of the processor's own errors."""


class ConfigurationError(StreamAppError):
    """A data file (catalogue, topics, schema) or a setting is wrong; the message names it."""


class ServiceUnreachableError(StreamAppError):
    """Kafka or Redis did not answer within the start-up deadline."""


class RefusedError(StreamAppError):
    """The command was understood and the services answered, but what it asks cannot be done as things
    stand (rotating a user that does not exist, resetting a group that has members): nothing changed."""


class UsageError(ConfigurationError):
    """A command-line argument is wrong (an unknown reporter code or domain, a time without its offset,
    options that do not go together): the command line is to fix, not a setting or a data file."""
