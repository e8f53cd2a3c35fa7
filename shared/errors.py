"""The error tree: every error the service raises on purpose derives from LogAnalyzerError."""

from __future__ import annotations

from collections.abc import Callable


class LogAnalyzerError(Exception):
    """Raised for any failure the service knows how to report; `code` is machine-readable."""

    code = "internal_error"

    def __init__(self, message: str, *, job_id: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.stage = stage


class InvalidQueryError(LogAnalyzerError):
    """Raised when a request field cannot become a safe query; `field` names it (422).

    `problems` holds every invalid field found in one pass, this one first (see `check_all`),
    so a client can show each message beside its field at once.
    """

    code = "invalid_request"

    def __init__(self, field: str, message: str, *, location: str = "body"):
        super().__init__(message)
        self.field = field
        self.location = location
        self.problems: tuple[InvalidQueryError, ...] = (self,)


def check_all(*checks: Callable[[], object]) -> None:
    """Run every check; if any raised InvalidQueryError, raise one holding all their problems."""
    found: list[InvalidQueryError] = []
    for check in checks:
        try:
            check()
        except InvalidQueryError as exc:
            found.extend(exc.problems)
    if found:
        found[0].problems = tuple(found)
        raise found[0]


class NotFoundError(LogAnalyzerError):
    """Raised when what a path names does not exist (404)."""

    code = "not_found"


class JobNotFoundError(NotFoundError):
    """Raised when a job id is unknown or expired (404)."""

    code = "job_not_found"


class StageDataLostError(LogAnalyzerError):
    """Raised when a stage's input (the output of the stage before, kept in Redis) is gone,
    e.g. after a Redis restart without persistence: the job cannot resume."""

    code = "stage_data_lost"


class ServiceUnavailableError(LogAnalyzerError):
    """Raised when Redis or the queue cannot take the request right now (503)."""

    code = "service_unavailable"


class KeysUnavailableError(ServiceUnavailableError):
    """Raised when the configured key file is empty, unreadable or unparsable: no key can be
    checked, so every request is refused until an operator fixes the file (503)."""

    code = "keys_unavailable"


class ConfigurationError(LogAnalyzerError):
    """Raised at start-up when the settings would run the service unsafely (no API keys and
    no explicit no-auth mode, or no-auth mode on an address other than loopback)."""

    code = "configuration_error"


class UpstreamError(LogAnalyzerError):
    """Raised when Loki or the LLM fails in a way that may pass (5xx, 429, timeout); retryable."""

    code = "upstream_unavailable"


class UpstreamRejectedError(LogAnalyzerError):
    """Raised when Loki or the LLM rejects the request itself (4xx); not retryable."""

    code = "upstream_rejected"


class LokiError(UpstreamError):
    """Raised when Loki stays unreachable or overloaded after the retries."""

    code = "loki_unavailable"


class LokiRejectedError(UpstreamRejectedError):
    """Raised when Loki answers 400; the message is Loki's own."""

    code = "loki_rejected"


class LlmError(UpstreamError):
    """Raised when the LLM server stays unreachable, overloaded or silent after the retries."""

    code = "llm_unavailable"


class LlmTimeoutError(LlmError):
    """Raised when the first token or the next token does not come in time."""

    code = "llm_timeout"


class LlmRejectedError(UpstreamRejectedError):
    """Raised when the LLM server rejects the request (4xx other than context overflow)."""

    code = "llm_rejected"


class ContextOverflowError(LlmRejectedError):
    """Raised when the server answers 400 exceed_context_size_error."""

    code = "context_overflow"

    def __init__(self, message: str, *, n_prompt_tokens: int | None, n_ctx: int | None):
        super().__init__(message)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


class JobCancelledError(LogAnalyzerError):
    """Raised inside a stage when the job was cancelled; ends the stage quietly."""

    code = "cancelled"


class AuthenticationError(LogAnalyzerError):
    """Raised when a request carries no valid API key where one is required (401)."""

    code = "unauthorized"


class ForbiddenError(LogAnalyzerError):
    """Raised when a key may not do what it asks, e.g. analyse a namespace outside its scope
    (403); `field` names the request field."""

    code = "forbidden"

    def __init__(self, field: str, message: str, *, location: str = "body"):
        super().__init__(message)
        self.field = field
        self.location = location


class RateLimitedError(LogAnalyzerError):
    """Raised when a key is over one of its limits (429); `retry_after` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class StreamError(LogAnalyzerError):
    """Raised inside an event stream that must end early; the client resumes with
    Last-Event-ID (on this API process or another)."""


class SlowClientError(StreamError):
    """Raised when a client fell so far behind that its live buffer overflowed."""

    code = "slow_client"


class StreamStoppedError(StreamError):
    """Raised when this API process is shutting down while a stream is open."""

    code = "server_shutdown"
