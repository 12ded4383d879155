"""Commune loudspeaker stations: always-on streams driven through Liquidsoap and Icecast 2."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import enum
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "MP3_BITRATE_KBPS",
    "LiquidsoapStation",
    "NowPlaying",
    "OnAir",
    "Station",
    "StationBinaries",
    "StationError",
    "StationFactory",
    "available_stations",
    "find_station_binaries",
    "make_station",
    "mount_for",
    "register_station",
]

log = logging.getLogger(__name__)

# Horns reproduce roughly 300 Hz-7 kHz and carry speech: mono MPEG-1 Layer III at 44.1 kHz
# decodes on every receiver (some IP horns lack MPEG-2's low rates), and 64 kbit/s mono keeps
# speech clean through LAME's ~11 kHz lowpass at 8 kB/s per listener on a rural uplink.
MP3_BITRATE_KBPS: Final = 64
MP3_SAMPLE_RATE: Final = 44_100

CONTROL_TIMEOUT_S: Final = 5.0  # one command on Liquidsoap's control socket
START_TIMEOUT_S: Final = 20.0  # Liquidsoap compiles its script (~2 s) before it answers
STOP_TIMEOUT_S: Final = 5.0  # SIGTERM grace before SIGKILL
_SOCKET_PATH_MAX: Final = 100  # sun_path is 108 bytes on Linux
_COMMUNE: Final = re.compile(r"^[0-9]{1,6}$")


class StationError(RuntimeError):
    """The station could not be started, reached or commanded; the message says why."""


class OnAir(enum.Enum):
    """What a commune's stream is playing."""

    URGENT = "urgent"  # an urgent bulletin interrupting everything else
    PROGRAMME = "programme"  # the daily programme, from its scheduled slot
    FILLER = "filler"  # silence or the operator's filler between programmes


@dataclass(frozen=True)
class NowPlaying:
    """A commune stream's current source and the title its metadata carries."""

    on_air: OnAir
    title: str


@runtime_checkable
class Station(Protocol):
    """Always-on loudspeaker streams, one mount per switched-on commune (``/c<code>.mp3``).

    The streams outlive the Hải Đăng process: ``ensure_running`` attaches to a station that
    is already playing, and only ``stop`` ends it.
    """

    async def ensure_running(self) -> None:
        """Start the station, or attach to the one already running with this configuration."""
        ...

    async def play_urgent(self, commune: str, audio: Path, title: str) -> None:
        """Interrupt the commune's stream with ``audio`` now; the programme resumes after it."""
        ...

    async def queue_programme(self, commune: str, audio: Path, title: str, at: dt.datetime) -> None:
        """Play ``audio`` at ``at`` (aware), after any urgent bulletin; a repeat is ignored."""
        ...

    async def now_playing(self, commune: str) -> NowPlaying:
        """What the commune's stream plays now."""
        ...

    def stream_url(self, commune: str) -> str:
        """The listeners' URL of the commune's stream."""
        ...

    async def stop(self) -> None:
        """End the streams and the processes behind them."""
        ...


# --- the binaries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StationBinaries:
    """The Debian programs a station runs (packages ``liquidsoap`` and ``icecast2``)."""

    liquidsoap: Path
    icecast: Path


def find_station_binaries() -> StationBinaries | str:
    """The installed binaries, or why there is no station (e.g. ``"liquidsoap not found"``)."""
    liquidsoap = shutil.which("liquidsoap")
    icecast = shutil.which("icecast2") or shutil.which("icecast")
    missing = [
        name for name, path in (("liquidsoap", liquidsoap), ("icecast2", icecast)) if not path
    ]
    if liquidsoap is None or icecast is None:
        return f"{' and '.join(missing)} not found"
    return StationBinaries(Path(liquidsoap), Path(icecast))


def mount_for(commune: str) -> str:
    """The Icecast mount of a commune's stream: ``/c<code>.mp3``."""
    return f"/c{_check_commune(commune)}.mp3"


def _check_commune(commune: str) -> str:
    if not _COMMUNE.match(commune):
        raise ValueError(f"a commune code is 1-6 digits, not {commune!r}")
    return commune


# --- generated configuration ----------------------------------------------------------------


def _liq(value: str) -> str:
    """A Liquidsoap string literal (its strings interpolate ``#{...}``, so that is refused)."""
    if "\n" in value or "\r" in value or "#{" in value:
        raise StationError(f"cannot put {value!r} in the Liquidsoap script")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _xml(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


ICECAST_TEMPLATE: Final = """\
<!-- Generated by Hải Đăng (audio/station.py); rewritten on every start. -->
<icecast>
  <location>{location}</location>
  <admin>root@localhost</admin>
  <limits>
    <clients>{clients}</clients>
    <sources>{sources}</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <!-- A new listener gets ~2 s at once, so its receiver starts playing at once. -->
    <burst-on-connect>1</burst-on-connect>
    <burst-size>16384</burst-size>
  </limits>
  <authentication>
    <source-password>{source_password}</source-password>
    <admin-user>admin</admin-user>
    <admin-password>{admin_password}</admin-password>
  </authentication>
  <hostname>{host}</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>{host}</bind-address>
  </listen-socket>
  <fileserve>0</fileserve>
  <paths>
    <basedir>{work_dir}</basedir>
    <logdir>{work_dir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    <pidfile>{work_dir}/icecast.pid</pidfile>
  </paths>
  <logging>
    <!-- "-" is stderr, which the driver sends to icecast.log: the file is opened before
         Icecast drops root, so the unprivileged user needs no access to the work dir. -->
    <accesslog>-</accesslog>
    <errorlog>-</errorlog>
    <loglevel>3</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>{changeowner}
  </security>
</icecast>
"""

# Icecast refuses to run as root; as root it binds its port, then becomes this user (created
# by the Debian package).
ICECAST_CHANGEOWNER: Final = """
    <changeowner>
      <user>icecast2</user>
      <group>icecast</group>
    </changeowner>"""

LIQUIDSOAP_TEMPLATE: Final = """\
# Generated by Hải Đăng (audio/station.py); rewritten on every start.
# Configuration {digest}
settings.init.allow_root.set(true)  # CI and small servers run the service as root
settings.log.stdout.set(false)
settings.log.file.set(true)
settings.log.file.path.set({log_path})
settings.server.socket.set(true)
settings.server.socket.path.set({socket_path})
settings.server.socket.permissions.set(384)  # 0600: only our user commands the station

server.register(namespace="station", "ping", fun (_) -> {digest_literal})

# One commune's stream: urgent > programme > filler, switched mid-track so an urgent
# bulletin cuts in at once; the interrupted programme resumes where it stopped.
def station(code) =
  urgent = request.queue(id="urgent_#{{code}}", interactive=false)
  programme = request.queue(id="programme_#{{code}}", interactive=false)
  filler = insert_metadata({filler})
  title = ref("")

  # Programmes wait here for their slot: (unix time, request URI) pairs.
  slots = ref([])
  def push_due() =
    now = time()
    due = list.filter(fun (s) -> fst(s) <= now, !slots)
    slots := list.filter(fun (s) -> fst(s) > now, !slots)
    list.iter(fun (s) -> programme.push(request.create(snd(s))), due)
  end
  thread.run(every=0.25, push_due)

  def on_filler(_, b) =
    filler.insert_metadata([("title", {filler_title})])
    b
  end
  radio = fallback(
    id="radio_#{{code}}", track_sensitive=false,
    transitions=[fun (_, b) -> b, fun (_, b) -> b, on_filler],
    [urgent, programme, filler]
  )
  radio.on_metadata(fun (m) -> title := list.assoc(default="", "title", m))

  # Arguments: "<base64 title> <path>", and for programmes "<unix time> " before them.
  def uri(args) =
    t = string.base64.decode(list.nth(default="", args, 0))
    path = string.concat(separator=" ", list.tl(args))
    "annotate:title=#{{string.quote(t)}}:#{{path}}"
  end
  server.register(namespace="c#{{code}}", "urgent", fun (arg) -> begin
    r = request.create(uri(string.split(separator=" ", arg)))
    urgent.push(r)
    "OK #{{request.id(r)}}"
  end)
  server.register(namespace="c#{{code}}", "schedule", fun (arg) -> begin
    args = string.split(separator=" ", arg)
    at = float_of_string(default=0., list.hd(default="0", args))
    slot = (at, uri(list.tl(args)))
    if list.exists(fun (s) -> s == slot, !slots) then "OK repeat" else
      slots := list.append(!slots, [slot])
      "OK"
    end
  end)
  server.register(namespace="c#{{code}}", "now_playing", fun (_) -> begin
    on_air = if urgent.is_ready() then "urgent"
      elsif programme.is_ready() then "programme" else "filler" end
    "#{{on_air}} #{{!title}}"
  end)

  output.icecast(
    %mp3(mono, bitrate={bitrate}, samplerate={sample_rate}),
    host={icecast_host}, port={icecast_port}, password={source_password},
    mount="/c#{{code}}.mp3", name="Loa truyền thanh #{{code}}",
    description="Hải Đăng", encoding="UTF-8", radio
  )
end

list.iter(station, [{communes}])
"""


# --- process handling -----------------------------------------------------------------------


def _spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start ``argv`` in its own session, not as our child, so it outlives this process.

    A shell backgrounds the program and exits at once: the program is orphaned to init
    (as a supervisor's service would be) and never becomes a zombie of ours.
    """
    script = '"$@" </dev/null >>"$HAIDANG_STATION_LOG" 2>&1 & echo $!'
    result = subprocess.run(  # noqa: S603 - fixed argv from find_station_binaries
        ["/bin/sh", "-c", script, "sh", *argv],
        env={**os.environ, "HAIDANG_STATION_LOG": str(log_path)},
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    return int(result.stdout.strip())


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and its command line holds ``marker`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


async def _terminate(pid: int, marker: str) -> None:
    if not _alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid, marker):
            return
        await asyncio.sleep(0.05)
    log.warning("station: pid %s ignored SIGTERM for %.0f s; killing it", pid, STOP_TIMEOUT_S)
    os.kill(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- the Liquidsoap + Icecast station -------------------------------------------------------


class LiquidsoapStation:
    """A Station on one Liquidsoap process (all communes) and one Icecast 2 server.

    One process for all communes, not one each: Liquidsoap 2.1 holds ~100 MB of resident
    memory before its first stream and ~0.5 MB per further stream (measured), and each
    stream costs ~0.3 % of a core for its MP3 encoder. Switching a commune on or off changes
    the script and restarts Liquidsoap (a few seconds of silence on every mount).

    Everything lives in ``work_dir``: generated passwords (``station.json``, 0600), the
    generated ``icecast.xml`` and ``station.liq``, pid files, logs and the control socket.
    Both programs run detached from our process, so the streams keep playing while Hải
    Đăng restarts; a new driver finds them through the pid files and the control socket and
    takes over. Programmes wait for their slot inside Liquidsoap, so they play on time
    even while we are down.
    """

    def __init__(
        self,
        work_dir: Path,
        communes: Collection[str],
        *,
        port: int = 8010,
        host: str = "127.0.0.1",
        filler: Path | None = None,
        filler_title: str = "Chương trình tạm nghỉ",
        binaries: StationBinaries | None = None,
    ) -> None:
        found = binaries or find_station_binaries()
        if isinstance(found, str):
            raise StationError(f"no station: {found}")
        self.binaries = found
        self.work_dir = Path(work_dir).resolve()
        self.communes = sorted({_check_commune(code) for code in communes})
        if not self.communes:
            raise StationError("a station needs at least one commune")
        self.port = port
        self.host = host
        self.filler = filler
        self.filler_title = filler_title
        self.socket_path = self.work_dir / "station.sock"
        if len(str(self.socket_path)) > _SOCKET_PATH_MAX:
            raise StationError(f"work dir path too long for a control socket: {self.work_dir}")
        self.script_path = self.work_dir / "station.liq"
        self.icecast_config = self.work_dir / "icecast.xml"
        self._liquidsoap_pid = self.work_dir / "liquidsoap.pid"
        self._icecast_pid = self.work_dir / "icecast.pid"
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"LiquidsoapStation({str(self.work_dir)!r}, communes={self.communes})"

    def stream_url(self, commune: str) -> str:
        """``http://<host>:<port>/c<code>.mp3`` on this station's Icecast."""
        return f"http://{self.host}:{self.port}{mount_for(commune)}"

    # -- lifecycle --

    async def ensure_running(self) -> None:
        """Attach to the running Icecast and Liquidsoap, or start what is missing.

        A Liquidsoap whose configuration differs (communes, filler, port) is replaced.
        Raises StationError when a program does not come up (with its log's last lines).
        """
        async with self._lock:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            secrets_ = self._secrets()
            await self._ensure_icecast(secrets_)
            await self._ensure_liquidsoap(secrets_)
            await self._await_mounts()

    async def stop(self) -> None:
        """Stop Liquidsoap, then Icecast (SIGTERM, then SIGKILL after a grace period)."""
        async with self._lock:
            for pid_file, marker in (
                (self._liquidsoap_pid, str(self.script_path)),
                (self._icecast_pid, str(self.icecast_config)),
            ):
                pid = _read_pid(pid_file)
                if pid is not None:
                    await _terminate(pid, marker)
                pid_file.unlink(missing_ok=True)
            self.socket_path.unlink(missing_ok=True)

    def _secrets(self) -> dict[str, str]:
        path = self.work_dir / "station.json"
        try:
            stored = json.loads(path.read_text())
            if isinstance(stored, dict) and {"source", "admin"} <= stored.keys():
                return {str(k): str(v) for k, v in stored.items()}
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        fresh = {"source": secrets.token_urlsafe(18), "admin": secrets.token_urlsafe(18)}
        _write_private(path, json.dumps(fresh))
        return fresh

    async def _ensure_icecast(self, secrets_: dict[str, str]) -> None:
        marker = str(self.icecast_config)
        pid = _read_pid(self._icecast_pid)
        if pid is not None and _alive(pid, marker) and await self._icecast_answers():
            return
        _write_private(self.icecast_config, self.icecast_xml(secrets_))
        log_path = self.work_dir / "icecast.log"
        pid = _spawn_detached([str(self.binaries.icecast), "-c", marker], log_path)
        # Icecast writes its own pid file only while still root; ours is always right.
        self._icecast_pid.write_text(str(pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await self._icecast_answers():
            if not _alive(pid, marker) or time.monotonic() > deadline:
                raise StationError(f"icecast2 did not start: {_tail(log_path)}")
            await asyncio.sleep(0.1)
        log.info("station: icecast2 on %s:%s (pid %s)", self.host, self.port, pid)

    async def _ensure_liquidsoap(self, secrets_: dict[str, str]) -> None:
        marker = str(self.script_path)
        script, digest = self._script(secrets_)
        pid = _read_pid(self._liquidsoap_pid)
        if pid is not None and _alive(pid, marker):
            try:
                running = await self.command("station.ping")
            except StationError:
                running = ""
            if running == digest:
                log.info("station: attached to liquidsoap (pid %s)", pid)
                return
            log.info("station: liquidsoap runs another configuration; restarting it")
            await _terminate(pid, marker)
        _write_private(self.script_path, script)
        self.socket_path.unlink(missing_ok=True)
        log_path = self.work_dir / "liquidsoap.out"
        pid = _spawn_detached([str(self.binaries.liquidsoap), marker], log_path)
        self._liquidsoap_pid.write_text(str(pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if await self.command("station.ping") == digest:
                    break
            except StationError:
                pass
            if not _alive(pid, marker) or time.monotonic() > deadline:
                await _terminate(pid, marker)
                raise StationError(f"liquidsoap did not start: {_tail(log_path)}")
            await asyncio.sleep(0.1)
        log.info("station: liquidsoap on %d communes (pid %s)", len(self.communes), pid)

    async def _await_mounts(self) -> None:
        # Liquidsoap answers its socket before its outputs have connected to Icecast; a
        # listener (or a loudspeaker) arriving in between would get 404 for the mount.
        wanted = {mount_for(code) for code in self.communes}
        deadline = time.monotonic() + START_TIMEOUT_S
        while not wanted <= (live := await self._live_mounts()):
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(wanted - live))
                raise StationError(f"icecast2 has no stream on {missing}")
            await asyncio.sleep(0.1)

    async def _live_mounts(self) -> set[str]:
        """The mounts Icecast has a source for (empty when it does not answer)."""
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(b"GET /status-json.xsl HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    await writer.drain()
                    answer = await reader.read()  # HTTP/1.0: Icecast closes after the body
                finally:
                    writer.close()
                    await _closed(writer)
            status = json.loads(answer.partition(b"\r\n\r\n")[2])
        except (OSError, TimeoutError, ValueError):
            return set()
        sources = status.get("icestats", {}).get("source", [])
        if isinstance(sources, dict):  # Icecast writes one source as an object
            sources = [sources]
        return {
            "/" + str(source.get("listenurl", "")).rsplit("/", 1)[-1]
            for source in sources
            if isinstance(source, dict)
        }

    async def _icecast_answers(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONTROL_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /status-json.xsl HTTP/1.0\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), CONTROL_TIMEOUT_S)
            return answer.startswith(b"HTTP/1.") and b"icestats" in answer
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            await _closed(writer)

    # -- generated configuration --

    def icecast_xml(self, secrets_: dict[str, str]) -> str:
        """The Icecast configuration (contains the passwords)."""
        return ICECAST_TEMPLATE.format(
            location="Hải Đăng",
            clients=100 * len(self.communes) + 10,
            sources=len(self.communes) + 2,
            source_password=_xml(secrets_["source"]),
            admin_password=_xml(secrets_["admin"]),
            host=_xml(self.host),
            port=self.port,
            work_dir=_xml(str(self.work_dir)),
            changeowner=ICECAST_CHANGEOWNER if os.geteuid() == 0 else "",
        )

    def liquidsoap_script(self, secrets_: dict[str, str]) -> str:
        """The Liquidsoap script; it answers ``station.ping`` with a digest of itself."""
        return self._script(secrets_)[0]

    def _script(self, secrets_: dict[str, str]) -> tuple[str, str]:
        filler = f"single({_liq(str(self.filler))})" if self.filler else "blank()"
        fields: dict[str, Any] = {
            "log_path": _liq(str(self.work_dir / "liquidsoap.log")),
            "socket_path": _liq(str(self.socket_path)),
            "filler": filler,
            "filler_title": _liq(self.filler_title),
            "bitrate": MP3_BITRATE_KBPS,
            "sample_rate": MP3_SAMPLE_RATE,
            "icecast_host": _liq(self.host),
            "icecast_port": self.port,
            "source_password": _liq(secrets_["source"]),
            "communes": ", ".join(_liq(code) for code in self.communes),
        }
        body = LIQUIDSOAP_TEMPLATE.format(digest="", digest_literal='""', **fields)
        digest = _digest_of(body)
        script = LIQUIDSOAP_TEMPLATE.format(digest=digest, digest_literal=_liq(digest), **fields)
        return script, digest

    # -- commands --

    async def play_urgent(self, commune: str, audio: Path, title: str) -> None:
        """Push ``audio`` (a local file Liquidsoap can read) on the commune's urgent queue."""
        await self._expect_ok(f"c{_check_commune(commune)}.urgent {_request_args(audio, title)}")

    async def queue_programme(self, commune: str, audio: Path, title: str, at: dt.datetime) -> None:
        """Hand the slot to Liquidsoap, which plays it at ``at`` even if we are down then."""
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        args = f"{at.timestamp():.3f} {_request_args(audio, title)}"
        await self._expect_ok(f"c{_check_commune(commune)}.schedule {args}")

    async def now_playing(self, commune: str) -> NowPlaying:
        """The stream's current source and title, as Liquidsoap sees it."""
        answer = await self.command(f"c{_check_commune(commune)}.now_playing")
        on_air, _, title = answer.partition(" ")
        try:
            return NowPlaying(OnAir(on_air), title)
        except ValueError:
            raise StationError(f"unexpected answer from liquidsoap: {answer!r}") from None

    async def _expect_ok(self, line: str) -> None:
        answer = await self.command(line)
        if not answer.startswith("OK"):
            raise StationError(f"liquidsoap refused {line.split(' ', 1)[0]}: {answer!r}")

    async def command(self, line: str) -> str:
        """Send one line to Liquidsoap's control socket and return its answer (without END).

        Raises StationError when the socket does not answer within CONTROL_TIMEOUT_S.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("a control command is one line")
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    answer: list[str] = []
                    while (got := await reader.readline()) and got.rstrip(b"\r\n") != b"END":
                        answer.append(got.decode(errors="replace").rstrip("\r\n"))
                    writer.write(b"quit\n")
                    await writer.drain()
                finally:
                    writer.close()
                    await _closed(writer)
        except (OSError, TimeoutError) as exc:
            raise StationError(f"liquidsoap's control socket: {exc or 'timed out'}") from exc
        return "\n".join(answer).strip()


def _request_args(audio: Path, title: str) -> str:
    path = str(Path(audio).resolve())
    if "\n" in path or "\r" in path:
        raise ValueError("audio path must be one line")
    encoded = base64.b64encode(" ".join(title.split()).encode()).decode()
    return f"{encoded} {path}"


def _digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


async def _closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await writer.wait_closed()


# --- registry -------------------------------------------------------------------------------

StationFactory = Callable[..., Station]

_factories: dict[str, StationFactory] = {"liquidsoap": LiquidsoapStation}
_factories_lock = threading.Lock()


def register_station(kind: str, factory: StationFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``make_station(kind, ...)``.

    Raises ValueError if ``kind`` is taken, unless ``replace`` is true.
    """
    with _factories_lock:
        if kind in _factories and not replace:
            raise ValueError(f"station {kind!r} is already registered")
        _factories[kind] = factory


def make_station(kind: str, **options: Any) -> Station:
    """Build the station registered as ``kind``; "liquidsoap" takes LiquidsoapStation's
    arguments (``work_dir=``, ``communes=``, ``port=`` …).

    Raises LookupError for an unknown kind; the factory's own errors pass through.
    """
    with _factories_lock:
        factory = _factories.get(kind)
    if factory is None:
        raise LookupError(f"unknown station {kind!r}; available: {available_stations()}")
    return factory(**options)


def available_stations() -> list[str]:
    """Names of the registered station kinds, sorted."""
    with _factories_lock:
        return sorted(_factories)
