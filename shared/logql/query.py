"""Validate request filters and build the one query shape we send to Loki."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from shared.errors import InvalidQueryError, check_all
from shared.logql.lexer import escape_logql_string
from shared.logql.parser import parse_log_filter
from shared.logql.pipeline import LogFilter
from shared.logql.regex import compile_re2
from shared.schemas import AnalysisRequest, Filters

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", re.ASCII
)


def _check_name(field: str, value: str, pattern: re.Pattern[str], kind: str, size: int) -> None:
    if len(value) > size or pattern.fullmatch(value) is None:
        raise InvalidQueryError(
            f"filters.{field}",
            f"must be an RFC 1123 {kind}: lowercase letters, digits and '-'"
            + (" in dot-separated parts" if kind == "subdomain" else "")
            + f", starting and ending with a letter or digit, at most {size} characters",
        )


def _check_pod(pod: str) -> None:
    if pod == "":
        raise InvalidQueryError("filters.pod", "must not be empty; omit it to match all pods")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in pod):
        raise InvalidQueryError("filters.pod", "must be valid Unicode (lone surrogate)")
    try:
        compile_re2(pod)
    except ValueError as exc:
        raise InvalidQueryError("filters.pod", f"is not a valid RE2 regex: {exc}") from None


def validate_filters(filters: Filters) -> Filters:
    """Check every filter can be placed in a selector; returns `filters` unchanged.

    Raises InvalidQueryError naming ``filters.namespace``, ``filters.container``,
    ``filters.node`` or ``filters.pod``; its `problems` name each of them that is invalid.
    """
    checks: list[Callable[[], object]] = [
        partial(_check_name, "namespace", filters.namespace, _DNS_LABEL, "label", 63)
    ]
    if filters.container is not None:
        checks.append(partial(_check_name, "container", filters.container, _DNS_LABEL, "label", 63))
    if filters.node is not None:
        checks.append(partial(_check_name, "node", filters.node, _DNS_SUBDOMAIN, "subdomain", 253))
    if filters.pod is not None:
        checks.append(partial(_check_pod, filters.pod))
    check_all(*checks)
    return filters


def build_query(filters: Filters, log_filter: LogFilter) -> str:
    """The LogQL query for `filters` and `log_filter`; validates the filters again first."""
    validate_filters(filters)
    matchers = [f"namespace={escape_logql_string(filters.namespace)}"]
    if filters.container is not None:
        matchers.append(f"container={escape_logql_string(filters.container)}")
    if filters.node is not None:
        matchers.append(f"node={escape_logql_string(filters.node)}")
    if filters.pod is not None:
        matchers.append(f"pod=~{escape_logql_string(filters.pod)}")
    selector = "{" + ", ".join(matchers) + "}"
    pipeline = log_filter.render()
    return f"{selector} {pipeline}" if pipeline else selector


def validate_request_filters(request: AnalysisRequest) -> tuple[Filters, LogFilter]:
    """Everything the API checks before queueing: the filters and the parsed `log_filter`.

    Raises one InvalidQueryError whose `problems` name every invalid field.
    """
    parsed: list[LogFilter] = []
    check_all(
        partial(validate_filters, request.filters),
        lambda: parsed.append(parse_log_filter(request.log_filter or "")),
    )
    return request.filters, parsed[0]
