"""Safe LogQL: validate request filters, parse the user's pipeline, render canonical queries.

Users never write LogQL that reaches Loki verbatim. `namespace`, `container` and `node` must be
Kubernetes names, `pod` is an RE2 regex, and `log_filter` goes through a small parser that knows
only these pipeline stages:

- line filters ``|= "s"``, ``!= "s"``, ``|~ "re"``, ``!~ "re"``; the positive ones may chain
  alternatives with ``or "s2"`` (negative ones may not: Loki versions disagree on what
  ``!= "a" or "b"`` means, so write ``!= "a" != "b"``);
- parsers ``| json`` and ``| logfmt`` (no parameters);
- label filters ``| name op "string"`` with op in ``= != =~ !~`` and ``| name op number`` with op
  in ``> >= < <= == !=`` (plain decimal numbers; no durations, byte sizes or ``and``/``or``).

Strings are double-quoted Go literals or backtick raw strings; every regex is compiled with RE2.
The parsed `LogFilter` renders itself back to LogQL, re-escaping every literal, so a query's shape
is fixed by this module and never by the user's text.

Modules: `lexer` (strings and tokens), `regex` (RE2), `pipeline` (the parsed stages and their
local evaluation), `parser` (text to pipeline), `query` (filters and the full query).
"""

from shared.logql.lexer import LogQLSyntaxError, Token, escape_logql_string, tokenize
from shared.logql.parser import parse_log_filter, parse_pipeline
from shared.logql.pipeline import LabelFilter, LineFilter, LogFilter, ParserStage
from shared.logql.query import build_query, validate_filters, validate_request_filters
from shared.logql.regex import compile_re2, re2_error_text

__all__ = [
    "LabelFilter",
    "LineFilter",
    "LogFilter",
    "LogQLSyntaxError",
    "ParserStage",
    "Token",
    "build_query",
    "compile_re2",
    "escape_logql_string",
    "parse_log_filter",
    "parse_pipeline",
    "re2_error_text",
    "tokenize",
    "validate_filters",
    "validate_request_filters",
]
