"""The key file's two formats and what a principal may do (api.access)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import api.auth
from api.access import LOCAL, Role, parse_key_file
from api.auth import KeyRing
from shared.settings import Settings


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def scoped_file(**entry: object) -> str:
    base = {"name": "payments", "sha256": sha("k"), "namespaces": ["payments-[a-z]+"]}
    return json.dumps({"keys": [{**base, **entry}]})


def test_the_original_format_gives_unscoped_analysts() -> None:
    keys = parse_key_file(f"# ops\n{sha('a').upper()}\n\nnot-a-digest\n")
    (principal,) = keys.values()
    assert list(keys) == [sha("a")]
    assert principal.role is Role.ANALYST and principal.allows("anything")
    assert principal.id == sha("a")[:16] and principal.tenant is None


def test_a_scoped_entry_allows_whole_names_only() -> None:
    (principal,) = parse_key_file(scoped_file(tenant="team-payments")).values()
    assert principal.name == "payments" and principal.tenant == "team-payments"
    assert principal.allows("payments-eu")
    assert not principal.allows("payments-eu2") and not principal.allows("xpayments-eu")


def test_analysts_see_their_own_jobs_and_admins_every_job() -> None:
    (analyst,) = parse_key_file(scoped_file()).values()
    (admin,) = parse_key_file(scoped_file(role="admin")).values()
    assert analyst.may_see(analyst.id) and not analyst.may_see("someone-else")
    assert not analyst.may_see(None) and not analyst.may_see("")
    assert admin.may_see("someone-else") and LOCAL.may_see("anyone")


def test_a_metrics_key_may_read_the_metrics_and_nothing_else() -> None:
    entry = {"name": "prometheus", "sha256": sha("scrape"), "role": "metrics"}
    (scraper,) = parse_key_file(json.dumps({"keys": [entry]})).values()
    (analyst,) = parse_key_file(scoped_file()).values()
    (admin,) = parse_key_file(scoped_file(role="admin")).values()
    assert scraper.may_read_metrics and not scraper.may_use_data
    assert not scraper.allows("anything") and not scraper.may_see(scraper.id + "x")
    assert admin.may_read_metrics and admin.may_use_data and LOCAL.may_read_metrics
    assert not analyst.may_read_metrics and analyst.may_use_data


def test_limits_override_the_global_settings_one_by_one() -> None:
    (principal,) = parse_key_file(scoped_file(limits={"max_streams": 3})).values()
    limits = principal.effective_limits(Settings(max_active_jobs_per_key=7))
    assert (limits.max_streams, limits.max_active_jobs) == (3, 7)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"namespaces": ["payments-(?P<x"]}, "named capture"),
        ({"namespaces": []}, "at least 1"),
        ({"namespaces": None}, "namespaces"),
        ({"role": "metrics"}, "metrics key reads /metrics only"),
        ({"role": "metrics", "namespaces": [], "tenant": "team-a"}, "no tenant"),
        ({"role": "root"}, "role"),
        ({"sha256": "abc"}, "sha256"),
        ({"limits": {"max_jobs": 1}}, "max_jobs"),
        ({"key": "the key itself"}, "key"),
    ],
)
def test_a_bad_entry_is_refused_saying_why(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_key_file(scoped_file(**entry))


def test_two_keys_may_not_share_a_name() -> None:
    entry = {"name": "a", "sha256": sha("x"), "namespaces": ["a"]}
    text = json.dumps({"keys": [entry, {**entry, "sha256": sha("y")}]})
    with pytest.raises(ValueError, match="share a name"):
        parse_key_file(text)


def test_the_key_ring_fails_closed_while_its_file_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.auth, "FILE_RECHECK_S", 0.0)
    path = tmp_path / "keys"
    path.write_text(f"{sha('a')}\n")
    ring = KeyRing([], str(path))
    (principal,) = parse_key_file(path.read_text()).values()
    assert ring.problem() is None and ring.principal("a") == principal
    for broken, problem in (("", "holds no keys"), ('{"keys": [', "invalid key file")):
        path.write_text(broken)
        assert problem in (ring.problem() or "")
        assert ring.principal("a") is None and not ring.still_valid(principal)
    path.unlink()
    assert "cannot be read" in (ring.problem() or "")
    path.write_text(f"{sha('a')}\n")
    assert ring.problem() is None and ring.still_valid(principal)
