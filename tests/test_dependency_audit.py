"""The offline dependency audit (.ci/audit.py): lock parsing, advisories, exceptions, reviews."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_audit"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


audit = _load()
TODAY = dt.date(2026, 12, 6)


def _database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **content: Any) -> None:
    database = {"first_review_due": "2027-01-15", "reviews": [], "advisories": []} | content
    advisories = tmp_path / "advisories.json"
    advisories.write_text(json.dumps(database))
    monkeypatch.setattr(audit, "ADVISORIES", advisories)
    monkeypatch.setattr(audit, "ALLOWED", tmp_path / "allowed.json")


def _allow(tmp_path: Path, *entries: dict[str, str]) -> None:
    (tmp_path / "allowed.json").write_text(json.dumps(list(entries)))


ADVISORY = {"id": "GHSA-x", "package": "Demo_Pkg", "affected": "<2.0", "fixed_in": ["2.0"]}


def test_the_committed_lock_covers_pyproject_and_is_hashed() -> None:
    """pyproject.toml's requirements (dev extra included) are all met by the lock."""
    pins = audit.read_lock()
    for requirement in audit.project_requirements():
        name = audit.canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in .ci/requirements.lock: re-lock"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), requirement
    assert all(hashes for _, hashes in pins.values())


def test_read_lock_takes_continued_lines_and_comments(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# a comment\n"
        "Demo_Pkg==1.2 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
        "other==3.0 --hash=sha256:cc\n"
    )
    assert audit.read_lock(lock) == {
        "demo-pkg": ("1.2", ["sha256:aa", "sha256:bb"]),
        "other": ("3.0", ["sha256:cc"]),
    }
    lock.write_text("loose>=1\n")
    with pytest.raises(SystemExit, match="not an exact pin"):
        audit.read_lock(lock)


def test_an_installed_version_in_an_advisory_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _database(tmp_path, monkeypatch, advisories=[ADVISORY])
    findings = audit.Findings()
    audit.check_advisories(findings, {"demo-pkg": "1.5"}, TODAY)
    assert len(findings.errors) == 1 and "demo-pkg 1.5 has GHSA-x" in findings.errors[0]
    fixed = audit.Findings()
    audit.check_advisories(fixed, {"demo-pkg": "2.0"}, TODAY)
    assert not fixed.errors


def test_an_allowed_exception_passes_until_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _database(tmp_path, monkeypatch, advisories=[ADVISORY])
    _allow(tmp_path, {
        "id": "GHSA-x", "package": "demo-pkg", "reason": "the affected function is unused",
        "date": "2026-12-01", "expires": "2027-03-01",
    })  # fmt: skip
    findings = audit.Findings()
    audit.check_advisories(findings, {"demo-pkg": "1.5"}, TODAY)
    assert not findings.errors and "allowed until 2027-03-01" in " ".join(findings.notes)
    later = audit.Findings()
    audit.check_advisories(later, {"demo-pkg": "1.5"}, dt.date(2027, 3, 2))
    assert any("expired on 2027-03-01" in e for e in later.errors)


def test_an_exception_needs_a_reason_and_a_near_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _database(tmp_path, monkeypatch, advisories=[ADVISORY])
    _allow(
        tmp_path,
        {"id": "GHSA-x", "package": "demo-pkg", "reason": " ", "date": "2026-12-01",
         "expires": "2027-01-01"},
        {"id": "GHSA-x", "package": "demo-pkg", "reason": "later", "date": "2026-12-01",
         "expires": "2028-01-01"},
    )  # fmt: skip
    findings = audit.Findings()
    audit.check_advisories(findings, {"demo-pkg": "1.5"}, TODAY)
    assert any("says no reason" in e for e in findings.errors)
    assert any("more than 183 days" in e for e in findings.errors)
    assert any("demo-pkg 1.5 has GHSA-x" in e for e in findings.errors)  # not excused


def test_an_overdue_review_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _database(tmp_path, monkeypatch, reviews=[{"date": "2026-10-01"}])
    findings = audit.Findings()
    audit.check_advisories(findings, {}, TODAY)  # due 2026-11-15
    assert not findings.errors
    assert any("WARNING" in n and "was due on 2026-11-15" in n for n in findings.notes)
    _database(tmp_path, monkeypatch, reviews=[{"date": "2026-11-30"}])
    recent = audit.Findings()
    audit.check_advisories(recent, {}, TODAY)
    assert not recent.errors and "due by 2027-01-14" in " ".join(recent.notes)


def test_release_of_reads_wheel_and_sdist_names() -> None:
    name, version = audit._release_of("python_telegram_bot-22.8-py3-none-any.whl")
    assert (name, str(version)) == ("python-telegram-bot", "22.8")
    name, version = audit._release_of("Jinja2-3.1.6.tar.gz")
    assert (name, str(version)) == ("jinja2", "3.1.6")
    assert audit._release_of("setuptools-0.6c11-py2.4.egg") is None
