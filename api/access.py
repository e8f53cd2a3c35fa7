"""Who a key is and what it may do: its role, its namespaces, its limits, its Loki tenant.

The key file is either the original format, one sha256 digest per line (each an unscoped
`analyst`), or a JSON document of scoped keys:

    {"keys": [{"name": "payments", "sha256": "<hex digest of the key>", "role": "analyst",
               "namespaces": ["payments", "payments-.*"], "tenant": "team-payments",
               "limits": {"max_active_jobs": 5}}]}

`namespaces` are RE2 patterns matched against the whole namespace name (a plain name matches
only itself: RFC 1123 names have no metacharacters). An `analyst` sees only the jobs its own
key created; an `admin` sees every job of its tenant and may analyse any namespace its entry
allows. A `metrics` key (a Prometheus scraper) has neither namespaces nor tenant and may read
`/metrics` only, which names the namespaces of every tenant: an `analyst` may not read it.

A key's tenant is its entry's `tenant`, else LOKI_TENANT, else `default` (`shared.tenancy`);
no role reads the data of another tenant.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.logql.regex import compile_re2
from shared.settings import Settings
from shared.tenancy import data_tenant

DIGEST_HEX = 64


class Role(enum.StrEnum):
    ANALYST = "analyst"
    ADMIN = "admin"
    METRICS = "metrics"  # reads /metrics only (a Prometheus scraper): no job, no data


class KeyLimits(BaseModel):
    """Per-key overrides of the global limits (None: the global setting)."""

    model_config = ConfigDict(extra="forbid")

    max_active_jobs: int | None = Field(default=None, ge=1)
    max_streams: int | None = Field(default=None, ge=1)
    jobs_per_minute: int | None = Field(default=None, ge=1)


class KeyEntry(BaseModel):
    """One key of the JSON key file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    role: Role = Role.ANALYST
    namespaces: list[str] = Field(default_factory=list)  # an analyst's or admin's: at least 1
    tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,150}$")
    limits: KeyLimits = Field(default_factory=KeyLimits)

    @field_validator("namespaces")
    @classmethod
    def _valid_re2(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            compile_re2(pattern)  # ValueError names what RE2 refused
        return patterns

    @model_validator(mode="after")
    def _namespaces_fit_the_role(self) -> KeyEntry:
        if self.role is Role.METRICS:
            if self.namespaces or self.tenant:
                raise ValueError("a metrics key reads /metrics only: no namespaces, no tenant")
        elif not self.namespaces:
            raise ValueError(f"namespaces: an {self.role.value} key needs at least 1 pattern")
        return self


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry]


@dataclass(frozen=True)
class Limits:
    """The limits a principal's requests are held to."""

    max_active_jobs: int
    max_streams: int
    jobs_per_minute: int


@dataclass(frozen=True)
class Principal:
    """The caller: `id` is a prefix of its key's digest (safe to log and store), never the key."""

    id: str
    name: str
    role: Role
    namespaces: tuple[str, ...] | None  # RE2 patterns; None: every namespace
    tenant: str | None  # the entry's own; None: the default tenant (`data_tenant`)
    limits: KeyLimits

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def may_read_metrics(self) -> bool:
        """`/metrics` names the namespaces of every tenant: admins and metrics keys only."""
        return self.role in (Role.ADMIN, Role.METRICS)

    @property
    def may_use_data(self) -> bool:
        """Whether this caller may call the job, backfill, findings and namespace routes."""
        return self.role is not Role.METRICS

    def data_tenant(self, settings: Settings) -> str:
        """The tenant whose data this caller writes and reads (`shared.tenancy`)."""
        return data_tenant(self.tenant, settings)

    def may_see(self, owner: str | None) -> bool:
        """Whether this caller may read, follow or cancel a job of its own tenant created by
        `owner`."""
        return self.is_admin or owner == self.id

    def allows(self, namespace: str) -> bool:
        """Whether this caller may analyse `namespace`."""
        if self.namespaces is None:
            return True
        return any(compile_re2(p).fullmatch(namespace) for p in self.namespaces)

    def effective_limits(self, settings: Settings) -> Limits:
        own = self.limits
        return Limits(
            max_active_jobs=own.max_active_jobs or settings.max_active_jobs_per_key,
            max_streams=own.max_streams or settings.max_streams_per_key,
            jobs_per_minute=own.jobs_per_minute or settings.rate_limit_per_minute,
        )


LOCAL = Principal(
    id="local", name="local", role=Role.ADMIN, namespaces=None, tenant=None, limits=KeyLimits()
)
"""The caller when no key is configured: only loopback requests are served, as one user."""


def unscoped(digest: str) -> Principal:
    """A key of the original format (or API_KEYS): an analyst of every namespace."""
    return Principal(
        id=digest[:16], name=digest[:16], role=Role.ANALYST, namespaces=None, tenant=None,
        limits=KeyLimits(),
    )  # fmt: skip


def scoped(entry: KeyEntry) -> Principal:
    digest = entry.sha256.lower()
    return Principal(
        id=digest[:16],
        name=entry.name,
        role=entry.role,
        namespaces=tuple(entry.namespaces),
        tenant=entry.tenant,
        limits=entry.limits,
    )


def parse_key_file(text: str) -> dict[str, Principal]:
    """Digest → principal; raises ValueError saying what is wrong with the file."""
    if text.lstrip().startswith("{"):
        try:
            document: Any = json.loads(text)
            entries = KeyFile.model_validate(document).keys
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"invalid key file: {exc}") from None
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("invalid key file: two keys share a name")
        return {e.sha256.lower(): scoped(e) for e in entries}
    digests = {
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    return {d: unscoped(d) for d in digests if len(d) == DIGEST_HEX}
