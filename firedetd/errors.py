"""One exception type per kind of failure; the CLI turns each into one line on stderr and an exit code."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2          # bad config, bad model, bad arguments: the process cannot go on


class FiredetdError(Exception):
    """Base class: a failure the user can act on, with a message that says what and where."""

    exit_code = EXIT_FAILURE


class ConfigError(FiredetdError):
    """The configuration is invalid; the message starts with the key path (`cameras[1].source.uri: ...`)."""

    exit_code = EXIT_USAGE


class ModelError(FiredetdError):
    """The model spec or model file is missing, corrupt, or disagrees with the spec."""

    exit_code = EXIT_USAGE


class EngineError(FiredetdError):
    """An inference backend cannot be loaded or run."""

    exit_code = EXIT_USAGE


class SourceError(FiredetdError):
    """A frame source cannot be opened or has failed; sources reconnect unless the error is permanent."""

    def __init__(self, message, permanent=False):
        super(SourceError, self).__init__(message)
        self.permanent = permanent


class SinkError(FiredetdError):
    """An alert could not be delivered to one sink; the outbox keeps it and retries.

    `reason`: a short word for the failures metric (`timeout`, `http_5xx`; None counts as `sink_error`);
    `retry_after_s`: how long the receiver asked us to wait (HTTP Retry-After), or None.
    """

    def __init__(self, message, retryable=True, reason=None, retry_after_s=None):
        super(SinkError, self).__init__(message)
        self.retryable = retryable
        self.reason = reason
        self.retry_after_s = retry_after_s


class OutboxError(FiredetdError):
    """The durable alert outbox cannot be written (disk full, read-only, corrupt)."""
