"""Dependency audit without a vulnerability service: a hash-pinned lock and reviewed advisories.

No vulnerability database is reachable from the build machines: pip-audit's services (OSV,
PyPI's per-version JSON) do not answer there, and pip-audit then reports "No known
vulnerabilities found" with every package skipped, which is a green check that checked
nothing. No package on PyPI, npm or Debian ships a current PyPI advisory database. So:

  check   (CI, offline) the installed distributions are exactly those in the lock; the lock
          covers what pyproject.toml asks for; no installed version falls in an advisory
          recorded in .ci/vulns/advisories.json unless .ci/vulns/allowed.json excuses it
          (with a reason and an expiry); and warns when the monthly review is overdue.
  lock    (needs the package index) write .ci/requirements.lock from this environment: exact
          versions and the sha256 of every file of each version, refusing yanked releases.
  review  (needs the internet and pip-audit) audit the lock against OSV, record what it finds
          in advisories.json and the date of the review.

Run with the project's virtualenv: `.venv/bin/python .ci/audit.py check`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / ".ci" / "requirements.lock"
ADVISORIES = ROOT / ".ci" / "vulns" / "advisories.json"
ALLOWED = ROOT / ".ci" / "vulns" / "allowed.json"
PYPROJECT = ROOT / "pyproject.toml"
# The project itself is installed editable from the work tree; pip is the installer, upgraded
# by `make` to the newest release. Both are audited against the advisories, neither locked.
UNLOCKED = {"haidang", "pip"}
EXTRAS = ("dev",)  # the lock holds the dev extra too: CI installs it
REVIEW_EVERY_DAYS = 45  # "monthly", with two weeks' grace
ALLOW_AT_MOST_DAYS = 183  # an exception is looked at again within half a year
INDEX = os.environ.get("AUDIT_INDEX_URL", "https://pypi.org/simple").rstrip("/")
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ reading


def read_lock(path: Path = LOCK) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a pip requirements file with --hash options."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", requirement)
        if match is None:
            raise SystemExit(f"{path.name}: not an exact pin: {requirement}")
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        pins[canonicalize_name(match[1])] = (match[2], hashes)
    return pins


def installed() -> dict[str, str]:
    """name -> version of every distribution in the running interpreter's environment."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    return found


def project_requirements() -> list[Requirement]:
    """What pyproject.toml asks for: the dependencies and the extras CI installs."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    wanted = list(project.get("dependencies", []))
    for extra in EXTRAS:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(r) for r in wanted]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def parse_date(value: object, where: str) -> dt.date:
    if not isinstance(value, str):
        raise SystemExit(f"{where}: a date YYYY-MM-DD is needed, not {value!r}")
    return dt.date.fromisoformat(value)


# ------------------------------------------------------------------------------ check


def check_lock(findings: Findings, pins: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """Installed == locked, every pin hashed, pyproject's requirements met by the lock."""
    present = installed()
    for name, (version, hashes) in sorted(pins.items()):
        if not hashes:
            findings.errors.append(f"lock: {name}=={version} has no --hash")
        have = present.get(name)
        if have is None:
            findings.errors.append(f"lock: {name}=={version} is locked but not installed")
        elif have != version:
            findings.errors.append(f"lock: {name} is {have} here, {version} in the lock")
    for name, version in sorted(present.items()):
        if name not in pins and name not in UNLOCKED:
            findings.errors.append(f"lock: {name}=={version} is installed but not in the lock")
    for requirement in project_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        pinned = pins.get(name)
        if pinned is None:
            findings.errors.append(f"lock: pyproject.toml needs {requirement}, not in the lock")
        elif not requirement.specifier.contains(pinned[0], prereleases=True):
            findings.errors.append(
                f"lock: pyproject.toml needs {requirement}, lock has {pinned[0]}"
            )
    return present


def check_consistent(findings: Findings) -> None:
    """Every installed distribution's own requirements are met (the lock is installed
    with --no-deps, so nothing else would notice a missing or clashing one)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        problems = (done.stdout + done.stderr).strip().splitlines()
        findings.errors += [f"pip check: {line}" for line in problems]


def _allowed(today: dt.date, findings: Findings) -> dict[tuple[str, str], dict[str, Any]]:
    entries = load_json(ALLOWED) if ALLOWED.exists() else []
    valid: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        where = f"allowed.json {entry.get('id')}"
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            findings.errors.append(f"{where}: says no reason")
            continue
        granted = parse_date(entry.get("date"), where)
        expires = parse_date(entry.get("expires"), where)
        if (expires - granted).days > ALLOW_AT_MOST_DAYS:
            findings.errors.append(f"{where}: allowed for more than {ALLOW_AT_MOST_DAYS} days")
        elif today > expires:
            findings.errors.append(f"{where}: expired on {expires}; review it again")
        else:
            valid[(str(entry["id"]), canonicalize_name(str(entry["package"])))] = entry
    return valid


def check_advisories(findings: Findings, present: dict[str, str], today: dt.date) -> None:
    database = load_json(ADVISORIES)
    allowed = _allowed(today, findings)
    used: set[tuple[str, str]] = set()
    for advisory in database.get("advisories", []):
        name = canonicalize_name(str(advisory["package"]))
        key: tuple[str, str] = (str(advisory["id"]), name)
        try:
            affected = SpecifierSet(str(advisory["affected"]))
        except InvalidSpecifier:
            findings.errors.append(f"advisories.json {key[0]}: bad 'affected' specifier")
            continue
        version = present.get(name)
        if version is None:
            continue
        try:
            hit = affected.contains(Version(version), prereleases=True)
        except InvalidVersion:
            hit = False
            findings.notes.append(f"{name} {version}: not a PEP 440 version, not compared")
        if not hit:
            continue
        fixed = ", ".join(advisory.get("fixed_in", [])) or "no fixed release known"
        if key in allowed:
            used.add(key)
            findings.notes.append(
                f"{name} {version}: {key[0]} allowed until {allowed[key]['expires']}"
                f" ({allowed[key]['reason']})"
            )
        else:
            findings.errors.append(
                f"{name} {version} has {key[0]} ({advisory.get('summary', '')}); fixed: {fixed}"
            )
    for stale_id, package in sorted(set(allowed) - used):
        findings.notes.append(f"allowed.json {stale_id} ({package}) no longer applies: remove it")
    due = review_due(database)
    if today > due:
        # A warning, not a failure: the review needs internet access, which CI machines
        # may lack, and a missed review must not block every fix in the meantime.
        findings.notes.append(
            f"WARNING review: the dependency review was due on {due}; run `.ci/audit.py"
            " review` on a machine with internet access (see the README) and commit what it"
            " records"
        )
    else:
        findings.notes.append(f"review: next dependency review due by {due}")


def review_due(database: dict[str, Any]) -> dt.date:
    reviews = database.get("reviews", [])
    if reviews:
        last = max(parse_date(r.get("date"), "advisories.json review") for r in reviews)
        return last + dt.timedelta(days=REVIEW_EVERY_DAYS)
    return parse_date(database.get("first_review_due"), "advisories.json first_review_due")


def check(today: dt.date) -> int:
    findings = Findings()
    pins = read_lock()
    present = check_lock(findings, pins)
    check_consistent(findings)
    check_advisories(findings, present, today)
    for note in findings.notes:
        print(f"audit: {note}")
    for error in findings.errors:
        print(f"audit: ERROR {error}", file=sys.stderr)
    if findings.errors:
        print(
            f"audit: {len(findings.errors)} problem(s). After changing dependencies:"
            " `.venv/bin/python .ci/audit.py lock`.",
            file=sys.stderr,
        )
        return 1
    print(
        f"audit: {len(pins)} distributions installed as locked; no installed version"
        f" falls in any of the {len(load_json(ADVISORIES)['advisories'])} recorded advisories"
    )
    return 0


# ------------------------------------------------------------------------------ lock


def _files(name: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": SIMPLE_JSON})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - the index URL
        files: list[dict[str, Any]] = json.load(answer)["files"]
    return files


def _release_of(filename: str) -> tuple[str, Version] | None:
    """(name, version) of a wheel or sdist file name; None for other kinds of file."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None  # old uploads with names no tool would install
    return name, version


def lock() -> int:
    lines = [
        "# Every distribution CI installs (pyproject.toml's dependencies and dev extra), pinned,",
        "# with the sha256 of each file of that release: pip installs nothing else.",
        f"# Written by `.ci/audit.py lock` on {_today().isoformat()}; do not edit by hand.",
    ]
    failed = []
    for name, version in sorted(installed().items()):
        if name in UNLOCKED:
            continue
        release = (name, Version(version))
        files = [f for f in _files(name) if _release_of(f["filename"]) == release]
        if not files:
            failed.append(f"{name}=={version}: no files on the index")
            continue
        if any(f.get("yanked") for f in files):
            reason = next((f["yanked"] for f in files if f.get("yanked")), "")
            failed.append(f"{name}=={version} is yanked ({reason}): upgrade it first")
        hashes = sorted({f["hashes"]["sha256"] for f in files if "sha256" in f.get("hashes", {})})
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in hashes[:-1]]
        lines.append(f"    --hash=sha256:{hashes[-1]}")
    if failed:
        print("\n".join(f"lock: {f}" for f in failed), file=sys.stderr)
        return 1
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"lock: wrote {LOCK.relative_to(ROOT)}")
    return 0


# ------------------------------------------------------------------------------ review


def review(today: dt.date, reviewer: str) -> int:
    """pip-audit over the lock (OSV); refuse a result where anything went unaudited."""
    tool = shutil.which("pip-audit")
    if tool is None:
        print("review: needs pip-audit on PATH (pip install pip-audit)", file=sys.stderr)
        return 2
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [tool, "-r", str(LOCK), "--require-hashes", "--disable-pip", "--no-deps",
         "-s", "osv", "-f", "json", "--progress-spinner", "off"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(f"review: pip-audit gave no report:\n{done.stderr[-2000:]}", file=sys.stderr)
        return 2
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if "skip_reason" in d]
    if skipped or len(dependencies) < len(read_lock()):
        # What pip-audit prints as "No known vulnerabilities found" when it reached nothing.
        for d in skipped:
            print(f"review: {d['name']} not audited: {d['skip_reason']}", file=sys.stderr)
        print("review: incomplete; nothing recorded", file=sys.stderr)
        return 2
    database = load_json(ADVISORIES)
    known = {(a["id"], canonicalize_name(a["package"])) for a in database["advisories"]}
    added = 0
    for dependency in dependencies:
        version = Version(dependency["version"])
        for vuln in dependency.get("vulns", []):
            key = (vuln["id"], canonicalize_name(dependency["name"]))
            if key in known:
                continue
            fixes = sorted(Version(v) for v in vuln.get("fix_versions", []))
            later = [v for v in fixes if v > version]
            # Up to the first fix above the audited version: a downgrade stays caught too.
            affected = f"<{later[0]}" if later else f"=={version}"
            database["advisories"].append({
                "id": vuln["id"], "aliases": vuln.get("aliases", []),
                "package": dependency["name"], "affected": affected,
                "fixed_in": [str(v) for v in fixes],
                "summary": " ".join(str(vuln.get("description", "")).split())[:160],
                "recorded": today.isoformat(),
            })  # fmt: skip
            added += 1
    database["reviews"].append({
        "date": today.isoformat(), "by": reviewer,
        "how": f"pip-audit -s osv over {LOCK.name} ({len(dependencies)} distributions)",
        "new_advisories": added,
    })  # fmt: skip
    ADVISORIES.write_text(json.dumps(database, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"review: {len(dependencies)} audited, {added} new advisories recorded")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["check", "lock", "review"])
    parser.add_argument("--today", type=dt.date.fromisoformat, default=_today())
    parser.add_argument("--by", default=os.environ.get("USER", "unknown"), help="reviewer")
    options = parser.parse_args()
    if options.command == "check":
        return check(options.today)
    if options.command == "lock":
        return lock()
    return review(options.today, options.by)


if __name__ == "__main__":
    sys.exit(main())
