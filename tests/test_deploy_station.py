"""The deployment recipe's commune stations (deploy/): one Compose service on an image target
with Liquidsoap and Icecast, the proxies' /loa/ route to Icecast, the systemd unit.

These read the files as a province's IT staff get them: no Docker, Caddy or nginx is run
here. The station service's supervising shell script is run, with a stand-in `haidang`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from audio.station import mount_for
from haidang.settings import Settings

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SYSTEMD = DEPLOY / "systemd"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _haidang_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile (every Hải Đăng process)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def _stages(dockerfile: str) -> list[tuple[str, str | None, str]]:
    """(base, name, body) of each stage of a Dockerfile, in order (comments dropped)."""
    stages: list[tuple[str, str | None, str]] = []
    lines: list[str] = []
    head: tuple[str, str | None] | None = None
    for line in dockerfile.splitlines():
        match = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE)
        if match:
            if head is not None:
                stages.append((*head, "\n".join(lines)))
            head, lines = (match[1], match[2]), []
        elif not line.lstrip().startswith("#"):
            lines.append(line)
    assert head is not None
    stages.append((*head, "\n".join(lines)))
    return stages


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _unit(name: str) -> dict[str, list[str]]:
    """A systemd unit's settings, each key with all its values (comments dropped)."""
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if line.startswith(("#", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


# --- Compose and the image -------------------------------------------------------------------


def test_compose_has_exactly_one_station_service_on_the_station_target() -> None:
    compose = _compose()
    services = _haidang_services(compose)
    on_station = [name for name, s in services.items() if s["build"].get("target") == "station"]
    assert on_station == ["station"]
    station = services["station"]
    assert station.get("deploy", {}).get("replicas", 1) == 1
    assert station["image"] != services["worker1"]["image"]  # its own tag
    # Every other Hải Đăng process runs the plain image, so none takes the station lease.
    for name, service in services.items():
        if name != "station":
            assert service["build"].get("target") == "app", name
    # It runs the worker role (inside its supervising shell).
    assert station["entrypoint"] == ["/bin/sh", "-c"]
    assert "haidang serve --role worker" in station["command"][0]
    assert station["stop_grace_period"] == "60s"


def test_station_keeps_its_data_in_a_volume_and_icecast_reaches_only_caddy() -> None:
    compose = _compose()
    station = compose["services"]["station"]
    caddy = compose["services"]["caddy"]
    env = station["environment"]
    assert env["DATA_DIR"] == "/var/lib/haidang"
    assert env["STATION_HOST"] == "0.0.0.0"  # noqa: S104 - in the container, for Caddy
    assert str(env["STATION_PORT"]) == "8010"
    (data,) = [v for v in station["volumes"] if v.endswith(":/var/lib/haidang")]
    assert data.split(":")[0] in compose["volumes"]  # a named volume
    assert "ports" not in station  # listeners come through Caddy
    shared = set(station["networks"]) & set(caddy["networks"])
    assert shared == {"stream"}
    # The public address, for every process (`haidang station list` runs in web1).
    for service in _haidang_services(compose).values():
        url = service["environment"]["STATION_PUBLIC_URL"]
        assert url == "${STATION_PUBLIC_URL:-https://${HAIDANG_DOMAIN}/loa}"


def test_dockerfile_adds_liquidsoap_and_icecast_only_to_the_station_target() -> None:
    stages = _stages((DEPLOY / "Dockerfile").read_text())
    by_name = {name: (base, body) for base, name, body in stages if name}
    assert by_name["station"][0] == "app"
    app_body, station_body = by_name["app"][1], by_name["station"][1]
    install = re.search(r"apt-get install[^\n]*", station_body)
    assert install and "liquidsoap" in install[0] and "icecast2" in install[0]
    assert "liquidsoap" not in app_body and "icecast" not in app_body
    # Icecast refuses root: the stage goes back to the image's user after installing.
    users = re.findall(r"^USER\s+(\S+)", station_body, re.MULTILINE)
    assert users[-1] == "haidang:haidang"
    # A build without --target is the plain image (the last stage).
    base, _, body = stages[-1]
    assert base == "app" and "apt-get" not in body


def test_public_url_of_the_examples_matches_the_proxy_routes() -> None:
    env = _env_file(DEPLOY / "compose.env.example")
    assert env["STATION_PUBLIC_URL"] == f"https://{env['HAIDANG_DOMAIN']}/loa"
    assert env["HAIDANG_STATION_IMAGE"]
    service_env = _env_file(DEPLOY / "env.example")
    assert service_env["STATION_PUBLIC_URL"] == service_env["PUBLIC_BASE_URL"] + "/loa"
    settings = Settings(_env_file=None, station_public_url=env["STATION_PUBLIC_URL"])
    url = str(settings.station_public_url).rstrip("/") + mount_for("11914")
    assert url == "https://bantin.example.gov.vn/loa/c11914.mp3"


# --- the proxies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caddyfile", "upstream"),
    [(DEPLOY / "Caddyfile", "station:8010"), (SYSTEMD / "Caddyfile", "127.0.0.1:8010")],
)
def test_caddy_serves_only_the_mounts_unbuffered(caddyfile: Path, upstream: str) -> None:
    text = caddyfile.read_text()
    matcher = re.search(r"^\s*@loa path_regexp (\S+)$", text, re.MULTILINE)
    assert matcher
    pattern = re.compile(matcher[1])  # RE2 and Python agree on this one
    assert pattern.match("/loa/c11914.mp3") and pattern.match("/loa/c1.mp3")
    for private in ("/loa/admin/", "/loa/status-json.xsl", "/loa/c11914.mp3.m3u", "/c11914.mp3"):
        assert not pattern.match(private), private
    block = text[text.index("handle @loa {") :]
    block = block[: block.index("\n\t}\n")]
    assert "uri strip_prefix /loa" in block
    assert f"reverse_proxy {upstream} {{" in block
    assert "flush_interval -1" in block
    # The web replicas are the fallback, not reached for a mount.
    assert "\thandle {\n\t\treverse_proxy" in text
    assert text.count("{") == text.count("}")


def test_nginx_serves_only_the_mounts_unbuffered_with_long_timeouts() -> None:
    text = (SYSTEMD / "nginx-haidang.conf").read_text()
    match = re.search(r"location ~ (\S+) \{(.*?)\n    \}", text, re.DOTALL)
    assert match
    pattern, body = re.compile(match[1]), match[2]
    found = pattern.match("/loa/c11914.mp3")
    assert found and found[1] == "c11914.mp3"
    assert not pattern.match("/loa/admin/stats")
    assert "proxy_pass http://127.0.0.1:8010/$1;" in body
    assert "proxy_buffering off;" in body
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", body)
    assert timeout and int(timeout[1]) * {"s": 1, "m": 60, "h": 3600}[timeout[2]] >= 3600
    assert text.count("{") == text.count("}")


# --- systemd ---------------------------------------------------------------------------------


def test_station_unit_is_a_worker_that_leaves_the_streams_playing() -> None:
    unit = _unit("haidang-station.service")
    (exec_start,) = unit["ExecStart"]
    assert exec_start.endswith("/opt/haidang/bin/haidang serve --role worker")
    assert "DATA_DIR=/var/lib/haidang/station" in exec_start
    assert unit["StateDirectory"] == ["haidang/station"]
    assert unit["KillMode"] == ["process"]  # Liquidsoap and Icecast outlive a restart
    assert unit["User"] == ["haidang"]  # Icecast refuses root
    assert unit["PartOf"] == ["haidang.target"]
    assert unit["WantedBy"] == ["haidang.target"]
    ports = {
        name: re.search(r"HTTP_PORT=(\d+)", _unit(name)["ExecStart"][0])
        for name in ("haidang-station.service", "haidang-worker.service")
    }
    assert len({m[1] for m in ports.values() if m}) == 2  # both fit on one host


def test_plain_worker_unit_never_drives_the_station() -> None:
    assert "-/usr/bin/liquidsoap" in _unit("haidang-worker.service")["InaccessiblePaths"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_units_verify(tmp_path: Path) -> None:
    names = ["haidang-station.service", "haidang-worker.service", "haidang.target"]
    for name in names:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    # systemd-analyze names a problem in a file as <file>:<line>: <what>.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if re.search(r"haidang[\w@.-]*\.(service|target):\d+:", line)
    ]
    assert not problems, result.stdout + result.stderr


# --- the station container's supervising script ----------------------------------------------

FAKE_HAIDANG = """#!/bin/sh
echo "$$ $*" >> "$FAKE_LOG"
trap 'echo "term $$" >> "$FAKE_LOG"; exit 0' TERM
while :; do sleep 0.05; done
"""


def _station_script() -> str:
    # Compose turns $$ into $ before the container's shell sees it.
    return str(_compose()["services"]["station"]["command"][0]).replace("$$", "$")


def test_station_script_passes_sigterm_on_to_haidang(tmp_path: Path) -> None:
    script = _station_script()
    subprocess.run(["/bin/sh", "-n", "-c", script], check=True)
    fake = tmp_path / "haidang"
    fake.write_text(FAKE_HAIDANG)
    fake.chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    shell = subprocess.Popen(["/bin/sh", "-c", script], env=env)
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text()):
            assert time.monotonic() < deadline, "haidang was not started"
            time.sleep(0.05)
        pid, args = log.read_text().split(" ", 1)
        assert args.strip() == "serve --role worker"
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=10) == 0
        assert f"term {pid}" in log.read_text()  # haidang got it and stopped first
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_station_script_starts_haidang_again_after_it_exits(tmp_path: Path) -> None:
    script = _station_script()
    fake = tmp_path / "haidang"
    # Exits at once the first time (a crash), then runs until stopped.
    fake.write_text(
        '#!/bin/sh\necho "$$ $*" >> "$FAKE_LOG"\n'
        '[ -f "$FAKE_LOG.crashed" ] || { touch "$FAKE_LOG.crashed"; exit 3; }\n'
        "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n"
    )
    fake.chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    shell = subprocess.Popen(["/bin/sh", "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and len(log.read_text().splitlines()) == 2):
            assert time.monotonic() < deadline, "haidang was not started again"
            time.sleep(0.1)
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=10) == 0
        assert shell.stderr is not None
        assert "haidang exited (3); the streams play on" in shell.stderr.read().decode()
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
