"""Talking to Slack: the bot token, a ``WebClient`` with bounded retries, one line per failure.

The client retries 429s itself, for as long as ``Retry-After`` asks up to a bound; 5xx and
connection errors are left to the caller's policy (``e2etests.retry.slack_call``).
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from e2etests.redact import clip, one_line, redact

TOKEN_ENV = "E2E_SLACK_TOKEN"  # noqa: S105 (a variable name, not a token)
TOKEN_FILE_ENV = "E2E_SLACK_TOKEN_FILE"  # noqa: S105


class SlackConfigError(Exception):
    """Slack was asked for but cannot be used (no token); the message is one line."""


def resolve_token(environ: Mapping[str, str], token_file: Path | None = None) -> str:
    """The bot token: ``E2E_SLACK_TOKEN``, else ``token_file``, else ``E2E_SLACK_TOKEN_FILE``."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file or (Path(environ[TOKEN_FILE_ENV]) if environ.get(TOKEN_FILE_ENV) else None)
    if path is None:
        raise SlackConfigError(f"no Slack token: set {TOKEN_ENV} or pass --slack-token-file")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SlackConfigError(f"cannot read the Slack token file {path}: {exc.strerror}") from None
    if not token:
        raise SlackConfigError(f"the Slack token file {path} is empty")
    return token


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, which sleeps for ``Retry-After``, but not for longer than a bound.

    Slack may answer ``Retry-After: 3600`` under a workspace-wide limit; a drain hook must not
    hang for an hour on it, so beyond ``max_wait`` the 429 is left to fail (and be saved).
    """

    def __init__(self, max_retry_count: int = 3, max_wait: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        for name, values in response.headers.items():
            if name.lower() == "retry-after" and values:
                try:
                    return float(values[0]) <= self.max_wait
                except ValueError:
                    return True
        return True


def make_client(
    token: str,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
    rate_limit_retries: int = 3,
    max_retry_after: float = 30.0,
) -> WebClient:
    """A ``WebClient`` with a bounded per-request timeout and the bounded 429 handler.

    Connection errors are left to ``retry.slack_call`` (not also to slack-sdk's own handler) so
    the two retry layers do not multiply.
    """
    kwargs: dict[str, Any] = {}
    if base_url is not None:
        kwargs["base_url"] = base_url
    return WebClient(
        token=token,
        timeout=max(1, round(timeout)),
        retry_handlers=[BoundedRateLimitRetryHandler(rate_limit_retries, max_retry_after)],
        **kwargs,
    )


def describe_error(exc: BaseException) -> str:
    """One line for a failed Slack call, never echoing the request (which carries the token).

    Total over exceptions: slack-sdk lets ``json.loads`` and ``http.client`` errors through
    unwrapped, and a client bug may raise anything.
    """
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", "?")
        error = ""
        data = getattr(response, "data", None)
        if isinstance(data, Mapping):
            error = str(data.get("error") or "")
        api = str(getattr(response, "api_url", "")).rstrip("/").rsplit("/", 1)[-1] or "Slack API"
        return redact(f"HTTP {status} from {api}" + (f" ({clip(error, 120)})" if error else ""))
    if isinstance(exc, TimeoutError):
        return "no answer from Slack (timed out)"
    if isinstance(exc, ValueError | http.client.IncompleteRead):
        # A 200 cut short or garbled (often by a proxy): the post may well have gone through.
        # Only the exception's type: a decode error carries the whole body it choked on.
        return f"unreadable answer from Slack ({type(exc).__name__}); the message may be posted"
    if isinstance(exc, OSError | http.client.HTTPException):
        reason = getattr(exc, "reason", None) or exc
        # Redacted before it is clipped: a cut can leave half a URL no pattern recognises.
        return one_line(redact(f"cannot reach Slack: {reason}"), 200)
    return one_line(redact(f"the Slack client failed: {type(exc).__name__}: {exc}"), 200)
