"""Change events are recognised by general words of change, not by product phrases."""

from __future__ import annotations

import pytest

from workers.evidence.changes import change_kind


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ("Starting api (version=<*>, commit=<*>)", "start"),
        ("Starting nginx version 1.25.3", "start"),
        ("Deployment rolled out revision <*>", "deploy"),
        ("Running upgrade <*> -> <*>, drop unused indexes", "deploy"),
        ("feature flag new-checkout enabled for <*>% of users", "feature flag"),
        ("configuration reloaded from <*>", "config"),
        ('Migrating schema "public" to version "<*> - add risk score"', "migration"),
        ("<*> LOG: statement: ALTER TABLE payments ADD COLUMN risk int", "migration"),
        ("Scaled up replica set api-<*> to <*>", "scaling"),
        ("<*> # +switch-master mymaster <*> <*>", "failover"),
        ("Elected as leader for term <*>", "failover"),
    ],
)
def test_changes_are_recognised(template: str, kind: str) -> None:
    assert change_kind(template) == kind


@pytest.mark.parametrize(
    "template",
    [
        "INFO [alembic.runtime.migration] Context impl PostgresqlImpl.",  # a logger's name
        "reading rules from /etc/rollout.d/<*>",  # a path
        "dial tcp <*>: connect: connection refused",
        "request failed after <*> retries",
        "GET /healthz 200",
    ],
)
def test_other_lines_announce_no_change(template: str) -> None:
    assert change_kind(template) is None
