"""The ``neonize`` driver against neonize 0.5.2 itself, offline.

No WhatsApp here: events are neonize's own protobuf objects, serialised and pushed through
the very C callbacks the Go core calls (from another thread, as Go does); the proxy cases
run the real Go core through a real SOCKS5 server (Debian's ``microsocks``).
neonize must be importable: this module fails, it does not skip, without it.
"""
# ruff: noqa: E402

from __future__ import annotations

import gc
import subprocess
import warnings

with warnings.catch_warnings():
    # neonize's import runs ``uname -a`` through os.popen and never closes the pipe; the
    # abandoned Popen waits in subprocess's reaper list and would warn at the next Popen.
    warnings.simplefilter("ignore", ResourceWarning)
    import neonize.client

    reaper: list[subprocess.Popen[bytes]] = getattr(subprocess, "_active", None) or []
    for orphan in list(reaper):
        orphan.wait()
    reaper.clear()
    gc.collect()

import asyncio
import ctypes
import json
import shutil
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import neonize
import pytest
from neonize._binder import gocode
from neonize.events import (
    EVENT_TO_INT,
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    HistorySyncEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    QREv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import DownloadError
from neonize.proto.Neonize_pb2 import (
    JID,
    ConnectFailureReason,
    Device,
    MessageInfo,
    MessageSource,
    PairPhoneReturnFunction,
    SendMessageReturnFunction,
    SendResponse,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    VideoMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.utils.enum import ChatPresence, ClientName, ClientType, Presence

from core.proxy_probe import probe
from core.proxy_url import ProxyUrl
from worker.config import WorkerConfig
from worker.drivers import make_driver
from worker.drivers import neonize_slim as slim
from worker.drivers.base import (
    ConnectionLost,
    Disconnect,
    LoggedOut,
    NoAutoReconnect,
    ProxyFailure,
    QrTimeout,
    SendFailed,
)
from worker.drivers.neonize import client as nc
from worker.drivers.neonize import driver as nd
from worker.drivers.neonize import events as ne
from worker.media_inbox import IncomingFile
from worker.message_ids import wa_id
from worker.send_journal import SendJournal

USER, PASSWORD = "fleet", "s3cret"
ME = "972501234567"


def test_pinned_neonize() -> None:
    # The driver calls the Go core's Neonize() itself: its ABI is the one of 0.5.2.
    assert neonize.__version__ == slim.NEONIZE_VERSION == "0.5.2"
    assert len(gocode.Neonize.argtypes) == 17


# the light loader (worker/drivers/neonize_slim.py) -------------------------------------------

_IN_A_FRESH_WORKER = """
import json, sys, types
from worker.drivers import neonize_driver, neonize_slim
names = {}
for name in neonize_slim.__all__:
    obj = getattr(neonize_slim, name)
    if isinstance(obj, type) or isinstance(obj, types.FunctionType):
        names[name] = obj.__module__ + "." + obj.__qualname__
print(json.dumps({
    "modules": sorted(sys.modules),
    "names": names,
    "go": neonize_slim.gocode.GetVersion().decode(),
    "argtypes": len(neonize_slim.gocode.Neonize.argtypes),
    "client": type(neonize_driver.NeonizeDriver("w", __import__("pathlib").Path("/nonexistent"),
        "socks5h://127.0.0.1:1", None).build_client()).__name__,
}))
"""


def _fresh_worker(code: str) -> subprocess.CompletedProcess[str]:
    """A new interpreter: what a worker process loads, untouched by this test's imports."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_driver_loads_none_of_neonizes_heavy_imports() -> None:
    done = _fresh_worker(_IN_A_FRESH_WORKER)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    tops = {name.split(".")[0] for name in loaded["modules"]}
    for heavy in ("bs4", "requests", "httpx", "PIL", "phonenumbers", "linkpreview", "tqdm"):
        assert heavy not in tops, f"{heavy} is loaded by the neonize driver"
    assert "neonize.client" not in loaded["modules"]  # the module that pulls them all in
    # the Go library loaded through the light path is the pinned one, with the same ABI
    assert loaded["go"] == "0.5.2"
    assert loaded["argtypes"] == len(gocode.Neonize.argtypes) == 17
    assert loaded["client"] == "SlimClient"


def test_the_light_loader_yields_neonizes_own_classes() -> None:
    """Every name the driver takes from neonize is the very class/function the full package
    has (same module, same name): only the package ``__init__`` is skipped."""
    done = _fresh_worker(_IN_A_FRESH_WORKER)
    assert done.returncode == 0, done.stderr
    light = json.loads(done.stdout)["names"]
    full = {}
    for name in slim.__all__:
        obj = getattr(slim, name)  # here neonize was imported whole, so these are its own
        if isinstance(obj, type | types.FunctionType):
            full[name] = f"{obj.__module__}.{obj.__qualname__}"
    assert light == full
    assert light["ConnectedEv"] == "Neonize_pb2.Connected"  # protoc names the module so
    assert light["Event"] == "neonize.events.Event"
    assert light["log_whatsmeow"] == "neonize.utils.log.log_whatsmeow"


_GO_PAGES = """
import json, pathlib, re
from worker.drivers import neonize_driver, neonize_slim

def library_kb():
    rss = dirty = 0
    current = False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            current = line.rstrip().endswith(str(neonize_slim.GO_LIBRARY))
        elif current and line.startswith("Rss:"):
            rss += int(line.split()[1])
        elif current and line.startswith("Private_Dirty:"):
            dirty += int(line.split()[1])
    return rss, dirty

before = library_kb()
neonize_driver.NeonizeDriver("w", pathlib.Path("/nonexistent"), "socks5h://127.0.0.1:1", None)
after = library_kb()
print(json.dumps({"before": before, "after": after,
                  "go": neonize_slim.gocode.GetVersion().decode()}))
"""


def test_an_idle_driver_keeps_few_of_the_go_librarys_pages() -> None:
    done = _fresh_worker(_GO_PAGES)
    assert done.returncode == 0, done.stderr
    pages = json.loads(done.stdout)
    (rss_before, dirty_before), (rss_after, dirty_after) = pages["before"], pages["after"]
    assert rss_before > 10_000  # the Go runtime's start-up read most of the library...
    assert rss_after < 4_000  # ...and the driver let go of those pages
    assert dirty_after == dirty_before  # the relocated, written pages are kept as they were
    assert pages["go"] == "0.5.2"  # and the library still answers


def test_the_light_loader_refuses_another_neonize_version(tmp_path: Path) -> None:
    """An upgraded neonize (here a package that declares 0.6.0, found first on the path)
    stops the worker at import with a clear message, before any of it runs."""
    fake = tmp_path / "neonize"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise SystemExit("ran")\n__version__ = "0.6.0"\n')
    done = _fresh_worker(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
        "import worker.drivers.neonize_driver\n"
    )
    assert done.returncode != 0
    assert "NeonizeVersionError: neonize 0.6.0 is installed, the driver needs 0.5.2" in (
        done.stderr
    )


class RecordingCore:
    """Stands in for the Go library: records each call and answers what Go would."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return self._answer(name)

        return call

    def _answer(self, name: str) -> Any:
        error = "refused" if self.fail else ""
        if name == "GetMe":
            return Device(JID=_jid()).SerializePartialToString()
        if name == "PairPhone":
            return PairPhoneReturnFunction(Code="ABCD-1234", Error=error).SerializeToString()
        if name == "SendPresence":
            return error.encode()
        if name == "SendMessage":
            return SendMessageReturnFunction(Error=error).SerializeToString()
        return None


def _jid() -> JID:
    return JID(User=ME, Server="s.whatsapp.net", RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def _drive(client: Any) -> list[Any]:
    """The four calls the driver makes, as it makes them; what each returns or raises."""
    results: list[Any] = []
    calls: list[Callable[[], Any]] = [
        client.get_me,
        lambda: client.PairPhone(ME, True, ClientName.LINUX, ClientType.CHROME),
        lambda: client.send_presence(Presence.AVAILABLE),
        lambda: client.send_message(_jid(), nd.self_message("hi", 60)),
    ]
    for call in calls:
        try:
            results.append(call())
        except Exception as exc:
            results.append((type(exc), str(exc)))
    return results


@pytest.mark.parametrize("fail", [False, True], ids=["answers", "errors"])
def test_slim_client_makes_the_go_calls_of_neonizes_newclient(fail: bool) -> None:
    props = nc.DEVICE_PROPS
    theirs, ours = RecordingCore(fail), RecordingCore(fail)
    full = neonize.client.NewClient("/x/neonize.db", props=props, uuid="worker_1#1")
    full._stop_finalizer.detach()
    full._NewClient__client = theirs  # NewClient's private handle on the Go library
    light = slim.SlimClient("/x/neonize.db", props=props, uuid="worker_1#1", core=ours)
    light._stop_finalizer.detach()
    assert _drive(light) == _drive(full)
    assert ours.calls == theirs.calls
    assert [name for name, _ in ours.calls] == [
        "GetMe",
        "PairPhone",
        "SendPresence",
        "SendMessage",
    ]
    assert light.uuid == full.uuid == b"worker_1#1"
    assert light.name == full.name


# fixtures -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def socks_port() -> Iterator[int]:
    exe = shutil.which("microsocks")
    assert exe, "microsocks (Debian package) is needed for the proxy tests"
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "-i", "127.0.0.1", "-p", str(port), "-u", USER, "-P", PASSWORD, "-b", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "microsocks did not start"
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(5)


def _proxy(port: int, password: str = PASSWORD) -> str:
    return f"socks5h://{USER}:{password}@127.0.0.1:{port}"


class Recorder:
    """A listener that records; messages and receipts come from Go's thread, so it wakes
    the loop thread-safely, and it can play a full outbox (``refuse``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.refuse = 0  # how many message events to refuse before taking them
        self.threads: set[str] = set()

    async def on_qr(self, qr: str, ttl_ms: int) -> None:
        self._add(("qr", (qr, ttl_ms)))

    async def on_pairing_code(self, code: str) -> None:
        self._add(("pairing_code", code))

    async def on_connected(self, phone: str) -> None:
        self._add(("connected", phone))

    def on_message_in(
        self,
        message_id: str,
        sender: str,
        text: str,
        timestamp: int,
        media: IncomingFile | None = None,
    ) -> bool:
        if media is not None:
            return self._take(("media_in", (message_id, sender, text, timestamp, media)))
        return self._take(("message_in", (message_id, sender, text, timestamp)))

    def on_receipt(self, wa_message_id: str, status: str) -> bool:
        return self._take(("receipt", (wa_message_id, status)))

    def _take(self, call: tuple[str, Any]) -> bool:
        self.threads.add(threading.current_thread().name)
        if self.refuse > 0:
            self.refuse -= 1
            self._add(("refused", call))
            return False
        self._add(call)
        return True

    def _add(self, call: tuple[str, Any]) -> None:
        self.calls.append(call)
        self.loop.call_soon_threadsafe(self.changed.set)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()


class Core:
    """Stands in for the Go ``Neonize`` call: the test speaks through its C callbacks."""

    def __init__(self, driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch) -> None:
        self.driver = driver
        self.attempt: nc.Attempt | None = None
        self.started = asyncio.Event()
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        monkeypatch.setattr(driver, "_start_core", self._start)
        monkeypatch.setattr(driver, "build_client", self._build(driver.build_client))

    def _build(self, real: Callable[[], Any]) -> Callable[[], Any]:
        def build() -> Any:
            client = real()
            # the calls that would reach WhatsApp; Go would crash on a client it never started
            client.get_me = lambda: Device(JID=JID(User=ME, Server="s.whatsapp.net"))
            client.PairPhone = lambda *a: self._record("PairPhone", a, "ABCD-1234")
            client.send_presence = lambda *a: self._record("send_presence", a, None)
            client.send_message = lambda *a: self._record("send_message", a, None)
            return client

        return build

    def _record(self, name: str, args: tuple[Any, ...], result: Any) -> Any:
        self.sent.append((name, args))
        return result

    def _start(self, attempt: nc.Attempt) -> None:
        self.attempt = attempt
        self.started.set()

    # what Go does, from a thread of its own
    async def qr(self, code: str) -> None:
        await asyncio.to_thread(self._call_string, "qr_cb", code)

    async def status(self, status: str) -> None:
        await asyncio.to_thread(self._call_string, "status_cb", status)

    async def event(self, event: Any) -> None:
        await asyncio.to_thread(self._call_event, event)

    def _call_string(self, which: str, text: str) -> None:
        assert self.attempt is not None
        buf = ctypes.create_string_buffer(text.encode())
        getattr(self.attempt, which)(None, ctypes.addressof(buf))

    def _call_event(self, event: Any) -> None:
        assert self.attempt is not None
        data = _complete(event).SerializeToString()
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        self.attempt.event_cb(
            self.attempt.uuid.encode(), ctypes.addressof(buf), len(data), EVENT_TO_INT[type(event)]
        )


def _complete(message: Any) -> Any:
    """Fill the proto2 ``required`` fields the Go side always sets (zero values)."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.message_type is not None:
            if field.is_required or message.HasField(field.name):
                _complete(getattr(message, field.name))
        elif field.is_required and not message.HasField(field.name):
            setattr(message, field.name, field.default_value)
    return message


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "worker_1"
    folder.mkdir()
    (folder / "session.json").write_text('{"id": "worker_1"}')
    (folder / "worker.log").write_text("log\n")
    return folder


async def _start(driver: nd.NeonizeDriver, core: Core, listener: Recorder) -> asyncio.Task[None]:
    task = asyncio.create_task(driver.run(listener))
    async with asyncio.timeout(5):
        await core.started.wait()
    return task


async def _outcome(task: asyncio.Task[None]) -> Disconnect:
    with pytest.raises(Disconnect) as caught:
        async with asyncio.timeout(5):
            await task
    return caught.value


# building the client offline ----------------------------------------------------------------


def test_make_driver_builds_neonize(session_dir: Path) -> None:
    config = WorkerConfig.from_env(
        {
            "SESSION_ID": "worker_1",
            "PROXY_URL": _proxy(1080),
            "WEBHOOK_URL": "http://127.0.0.1:1/webhook",
            "WEBHOOK_SECRET": "x",
            "SESSION_DIR": str(session_dir),
            "WA_DRIVER": "neonize",
            "SESSION_PHONE": ME,
        }
    )
    driver = make_driver(config)
    assert isinstance(driver, nd.NeonizeDriver)
    assert driver.db_path == session_dir / "neonize.db"
    assert driver.phone == ME


def test_builds_client_offline_in_an_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    driver = nd.NeonizeDriver("worker_1", folder, _proxy(1080), None)
    client = driver.build_client()
    assert client.name == str(folder / "neonize.db")
    assert not folder.exists()  # nothing on disk until the Go core opens the store
    attempt = nc.Attempt(asyncio.new_event_loop(), client)
    subscribed = set(client.event.list_func)
    assert EVENT_TO_INT[ConnectedEv] in subscribed and EVENT_TO_INT[LoggedOutEv] in subscribed
    # messages and receipts do; history sync and the stale QR event never do
    assert EVENT_TO_INT[MessageEv] in subscribed and EVENT_TO_INT[ReceiptEv] in subscribed
    for event in (HistorySyncEv, QREv):
        assert EVENT_TO_INT[event] not in subscribed
    assert attempt.uuid == "worker_1#1"
    assert driver.build_client().uuid == b"worker_1#2"  # one Go client per attempt
    attempt.loop.close()


async def test_real_core_opens_and_reopens_the_database(
    session_dir: Path, socks_port: int
) -> None:
    """The Go core creates neonize.db next to session.json, then reopens it; the proxy works
    but WhatsApp is unreachable here, which is a lost connection, not a proxy fault."""
    driver = nd.NeonizeDriver("worker_1", session_dir, _proxy(socks_port), None)
    driver._preflight = _probe_only(driver)  # type: ignore[method-assign]
    for _ in range(2):  # an empty folder, then one with an existing database
        with pytest.raises(ConnectionLost) as caught:
            async with asyncio.timeout(20):
                await driver.run(Recorder())
        assert "socks" in caught.value.reason and PASSWORD not in caught.value.reason
        assert driver.db_path.stat().st_size > 0
    await driver.close()


def _probe_only(driver: nd.NeonizeDriver) -> Callable[[], Any]:
    """The pre-flight without its TCP connect: let the Go core meet the failure itself."""

    async def preflight() -> None:
        assert await probe(driver.proxy) is None

    return preflight


# proxy classification, with a real SOCKS5 server ---------------------------------------------


@pytest.mark.parametrize("through_core", [False, True], ids=["preflight", "go-core"])
async def test_proxy_down_is_a_proxy_failure(session_dir: Path, through_core: bool) -> None:
    driver = nd.NeonizeDriver("worker_1", session_dir, _proxy(_free_port()), None)
    if through_core:
        driver._preflight = _noop  # type: ignore[method-assign]
    with pytest.raises(ProxyFailure):
        async with asyncio.timeout(20):
            await driver.run(Recorder())


@pytest.mark.parametrize("through_core", [False, True], ids=["preflight", "go-core"])
async def test_wrong_password_is_a_proxy_failure(
    session_dir: Path, socks_port: int, through_core: bool
) -> None:
    driver = nd.NeonizeDriver("worker_1", session_dir, _proxy(socks_port, "wrong"), None)
    if through_core:
        driver._preflight = _noop  # type: ignore[method-assign]
    with pytest.raises(ProxyFailure) as caught:
        async with asyncio.timeout(20):
            await driver.run(Recorder())
    assert "credentials" in caught.value.reason or "auth" in caught.value.reason


async def test_unreachable_whatsapp_through_a_working_proxy_is_connection_lost(
    session_dir: Path, socks_port: int
) -> None:
    driver = nd.NeonizeDriver("worker_1", session_dir, _proxy(socks_port), None)
    with pytest.raises(ConnectionLost) as caught:
        async with asyncio.timeout(20):
            await driver.run(Recorder())
    assert not isinstance(caught.value, ProxyFailure)
    assert not driver.db_path.exists()  # the pre-flight spared the Go core (and its leak)


async def _noop() -> None:
    return None


def test_core_gets_a_socks5_url() -> None:
    proxy = ProxyUrl.parse("socks5h://us%40er:p%3Ass@proxy.example:1080")
    assert nc.core_address(proxy) == "socks5://us%40er:p%3Ass@proxy.example:1080"


# events -> listener calls / Disconnects --------------------------------------------------------


@pytest.fixture
def driver(
    session_dir: Path, socks_port: int, monkeypatch: pytest.MonkeyPatch
) -> nd.NeonizeDriver:
    d = nd.NeonizeDriver("worker_1", session_dir, _proxy(socks_port), None)
    monkeypatch.setattr(d, "_preflight", _noop)
    return d


async def test_qr_round_then_timeout(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(nd, "_now", lambda: clock[0])
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    for i in range(6):
        await core.qr(f"2@code{i}")
    await listener.wait_for(6)
    assert listener.calls[0] == ("qr", ("2@code0", 60_000))
    assert listener.calls[1:] == [("qr", (f"2@code{i}", 20_000)) for i in range(1, 6)]
    clock[0] += 60 + 5 * 20  # every code expired
    await core.status("timeout")
    assert isinstance(await _outcome(task), QrTimeout)
    assert core.sent == []  # no phone: no pairing code asked


async def test_qr_channel_timeout_before_the_codes_expire_is_a_drop(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.qr("2@code0")
    await listener.wait_for(1)
    await core.status("timeout")  # whatsmeow reports a socket drop during the QR wait so
    outcome = await _outcome(task)
    assert type(outcome) is ConnectionLost


async def test_pairing_code_when_provisioned_with_a_phone(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver.phone = ME
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.qr("2@code0")
    await listener.wait_for(2)
    assert ("pairing_code", "ABCD-1234") in listener.calls
    assert core.sent[0][0] == "PairPhone" and core.sent[0][1][:2] == (ME, True)
    await core.qr("2@code1")  # asked once per attempt, not per code
    await listener.wait_for(3)
    assert [name for name, _ in core.sent] == ["PairPhone"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_connected_then_keepalive_then_drop(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.status("success")
    await core.event(PairStatusEv(Status=PairStatusEv.SUCCESS, ID=JID(User=ME)))
    await core.event(ConnectedEv(status=True))
    await listener.wait_for(1)
    assert listener.calls == [("connected", ME)]

    await driver.send_presence()
    await driver.send_self_message("🔄", 86_400)
    assert core.sent[0] == ("send_presence", (Presence.AVAILABLE,))
    name, (to, message) = core.sent[1]
    assert name == "send_message" and (to.User, to.Server) == (ME, "s.whatsapp.net")
    assert message.extendedTextMessage.text == "🔄"
    assert message.extendedTextMessage.contextInfo.expiration == 86_400

    await core.event(KeepAliveTimeoutEv(ErrorCount=1))  # one miss is not a drop:
    await core.event(DisconnectedEv(status=True))  # the attempt ends on the disconnect only
    lost = await _outcome(task)
    assert type(lost) is ConnectionLost and "connection to WhatsApp was lost" in str(lost)
    await driver.send_presence()  # not connected any more: nothing reaches the Go core
    assert len(core.sent) == 2


async def test_self_message_reaches_the_go_core_as_a_whole_jid(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JID is proto2 with required fields: a JID of User and Server alone cannot be
    serialised, so every self-message failed before reaching Go (EncodeError)."""
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.status("success")
    await core.event(ConnectedEv(status=True))
    await listener.wait_for(1)
    go = RecordingCore()
    assert driver._attempt is not None
    driver._attempt.client = slim.SlimClient("/x/neonize.db", uuid="worker_1#1", core=go)
    driver._attempt.client._stop_finalizer.detach()
    await driver.send_self_message("🔄", 86_400)
    name, (_uuid, to, _size, sent, _sent_size) = go.calls[0]
    assert name == "SendMessage"
    jid = JID.FromString(to)
    assert (jid.User, jid.Server, jid.Device) == (ME, "s.whatsapp.net", 0)
    assert WAMessage.FromString(sent).extendedTextMessage.contextInfo.expiration == 86_400
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)


async def test_repeated_keepalive_timeouts_are_a_drop(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.event(ConnectedEv(status=True))
    await core.event(KeepAliveTimeoutEv(ErrorCount=ne.KEEPALIVE_FAILURES_LOST))
    assert type(await _outcome(task)) is ConnectionLost


@pytest.mark.parametrize(
    "event",
    [
        LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT),
        LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.MAIN_DEVICE_GONE),
        ConnectFailureEv(Reason=ConnectFailureReason.UNKNOWN_LOGOUT, Message="x"),
    ],
    ids=["logged-out", "logged-out-on-connect", "connect-failure-logout"],
)
async def test_logged_out_deletes_the_database_and_keeps_session_json(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch, event: Any
) -> None:
    for suffix in ("", "-wal", "-shm"):
        (driver.session_dir / f"neonize.db{suffix}").write_bytes(b"x")
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.event(event)
    outcome = await _outcome(task)
    assert isinstance(outcome, LoggedOut)
    assert outcome.reason in ("logged_out", "main_device_gone", "unknown_logout")
    assert sorted(p.name for p in driver.session_dir.iterdir()) == ["session.json", "worker.log"]


@pytest.mark.parametrize(
    ("event", "code", "retry_after_s"),
    [
        (StreamReplacedEv(), "stream_replaced", None),
        (
            TemporaryBanEv(Code=TemporaryBanEv.SEND_TO_TOO_MANY_PEOPLE, Expire=3600),
            "temporary_ban",
            3600.0,
        ),
        (ClientOutdatedEv(), "client_outdated", None),
        (ConnectFailureEv(Reason=ConnectFailureReason.TEMP_BANNED), "temporary_ban", None),
        (ConnectFailureEv(Reason=ConnectFailureReason.CLIENT_OUTDATED), "client_outdated", None),
    ],
    ids=["stream-replaced", "temporary-ban", "client-outdated", "cf-temp-banned", "cf-outdated"],
)
async def test_no_auto_reconnect(
    driver: nd.NeonizeDriver,
    monkeypatch: pytest.MonkeyPatch,
    event: Any,
    code: str,
    retry_after_s: float | None,
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.event(ConnectedEv(status=True))
    await core.event(event)
    outcome = await _outcome(task)
    assert isinstance(outcome, NoAutoReconnect)
    assert (outcome.code, outcome.retry_after_s) == (code, retry_after_s)


@pytest.mark.parametrize(
    "event",
    [
        ConnectFailureEv(Reason=ConnectFailureReason.SERVICE_UNAVAILABLE, Message="503"),
        PairStatusEv(Status=PairStatusEv.ERROR, Error="bad"),
    ],
    ids=["service-unavailable", "pair-error"],
)
async def test_other_failures_are_connection_lost(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch, event: Any
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.event(event)
    assert type(await _outcome(task)) is ConnectionLost


async def test_silence_is_a_dead_path(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nd, "CONNECT_TIMEOUT_S", 0.2)
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    outcome = await _outcome(task)
    assert type(outcome) is ConnectionLost and "no answer" in outcome.reason


async def test_core_return_is_classified(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    assert core.attempt is not None
    port = driver.proxy.port
    core.attempt.post(
        "returned",
        f"failed to dial whatsapp web websocket: socks connect tcp 127.0.0.1:{port}->"
        f"web.whatsapp.com:443: username/password authentication failed",
    )
    assert isinstance(await _outcome(task), ProxyFailure)


async def test_a_stuck_core_never_blocks_the_loop(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Go call that never returns costs a daemon thread, not the loop's PINGs."""
    monkeypatch.setattr(nc, "CALL_TIMEOUT_S", 0.3)
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.event(ConnectedEv(status=True))
    await listener.wait_for(1)
    assert driver._attempt is not None
    driver._attempt.client.send_presence = lambda *a: time.sleep(1.5)  # type: ignore[method-assign]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await driver.send_presence()
    assert time.monotonic() - started < 1.5 and ticks >= 3
    tick.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_forget_auth_keeps_session_json_and_logs(session_dir: Path) -> None:
    for name in ("neonize.db", "neonize.db-wal", "neonize.db-shm", "neonize.db-journal"):
        (session_dir / name).write_bytes(b"x")
    driver = nd.NeonizeDriver("worker_1", session_dir, _proxy(1080), None)
    driver.forget_auth()
    driver.forget_auth()  # idempotent
    assert sorted(p.name for p in session_dir.iterdir()) == ["session.json", "worker.log"]


# messages: text out with "typing...", incoming messages and receipts mapped from
# neonize's own event types, and at most once across a crash (worker/send_journal.py) -------

MID = "0123456789abcdef0123456789abcdef"
THEM = "14155550123"


async def _connected(driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch) -> Any:
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.status("success")
    await core.event(ConnectedEv(status=True))
    await listener.wait_for(1)
    assert driver._attempt is not None
    client = driver._attempt.client
    monkeypatch.setattr(
        client,
        "send_message",
        lambda *a: core._record("send_message", a, SendResponse(ID=f"3EB0{len(core.sent):020X}")),
    )
    monkeypatch.setattr(
        client, "send_chat_presence", lambda *a: core._record("send_chat_presence", a, None)
    )
    return core, listener, task


async def test_text_goes_out_after_typing_and_receipts_come_back(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener, task = await _connected(driver, monkeypatch)
    await driver.send_typing(THEM, 10)
    await driver.send_text(THEM, "hello", wa_id(MID))
    names = [name for name, _ in core.sent]
    assert names == ["send_chat_presence", "send_chat_presence", "send_message"]
    states = [args[1] for name, args in core.sent if name == "send_chat_presence"]
    assert states == [ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresence.CHAT_PRESENCE_PAUSED]
    _, (to, message) = core.sent[2]
    assert (to.User, to.Server) == (THEM, "s.whatsapp.net")
    assert message.conversation == "hello"
    whatsapp_id = f"3EB0{2:020X}"

    receipt = ReceiptEv(
        MessageSource=MessageSource(Chat=JID(User=THEM), Sender=JID(User=THEM)),
        MessageIDs=[whatsapp_id, "SOMEONE-ELSES"],
        Timestamp=1_700_000_000,
        Type=ReceiptEv.DELIVERED,
    )
    await core.event(receipt)
    receipt.Type = ReceiptEv.RETRY  # not a status of ours
    await core.event(receipt)
    receipt.Type = ReceiptEv.READ
    await core.event(receipt)
    await listener.wait_for(3)
    assert listener.calls[1:] == [
        ("receipt", (wa_id(MID), "delivered")),
        ("receipt", (wa_id(MID), "read")),
    ]
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)


async def test_incoming_text_is_message_in_and_our_own_is_not(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, listener, task = await _connected(driver, monkeypatch)

    def incoming(text: WAMessage, from_me: bool = False) -> Any:
        source = MessageSource(Chat=JID(User=THEM), Sender=JID(User=THEM), IsFromMe=from_me)
        info = MessageInfo(MessageSource=source, ID="ABCDEF123", Timestamp=1_700_000_000)
        return MessageEv(Info=info, Message=text)

    await core.event(incoming(WAMessage(conversation="mine"), from_me=True))
    await core.event(incoming(WAMessage()))  # no text (media, a reaction): not forwarded
    await core.event(incoming(WAMessage(conversation="hi there")))
    ext = WAMessage(extendedTextMessage=ExtendedTextMessage(text="with a link"))
    await core.event(incoming(ext))
    await listener.wait_for(3)
    assert listener.calls[1:] == [
        ("message_in", ("ABCDEF123", THEM, "hi there", 1_700_000_000_000)),
        ("message_in", ("ABCDEF123", THEM, "with a link", 1_700_000_000_000)),
    ]
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)


async def test_incoming_media_is_downloaded_in_gos_thread_and_taken_with_its_file(
    driver: nd.NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image, a captioned document, a voice note and a video: each file is fetched with
    whatsmeow's download (here a stand-in: no WhatsApp account in tests) in Go's thread,
    before the callback returns, and handed over with its kind, type, name and caption. A
    file WhatsApp no longer has leaves its caption to go alone."""
    core, listener, task = await _connected(driver, monkeypatch)
    assert core.attempt is not None
    files: dict[str, bytes] = {}
    downloads: list[str] = []

    def download_any(message: WAMessage) -> bytes:
        downloads.append(threading.current_thread().name)
        key = message.SerializeToString()
        if key not in files:
            raise DownloadError("media no longer on the server")
        return files[key]

    core.attempt.client.download_any = download_any

    def incoming(message: WAMessage, file: bytes | None) -> Any:
        if file is not None:
            files[message.SerializeToString()] = file
        source = MessageSource(Chat=JID(User=THEM), Sender=JID(User=THEM))
        info = MessageInfo(MessageSource=source, ID="3EB0MEDIA", Timestamp=1_700_000_000)
        return MessageEv(Info=info, Message=message)

    image = WAMessage(imageMessage=ImageMessage(caption="a photo", mimetype="image/jpeg"))
    document = WAMessage(
        documentWithCaptionMessage=FutureProofMessage(
            message=WAMessage(
                documentMessage=DocumentMessage(
                    caption="the report", mimetype="application/pdf", fileName="q3.pdf"
                )
            )
        )
    )
    voice = WAMessage(audioMessage=AudioMessage(mimetype="audio/ogg; codecs=opus", PTT=True))
    video = WAMessage(videoMessage=VideoMessage(mimetype="video/mp4"))
    gone = WAMessage(imageMessage=ImageMessage(caption="expired", mimetype="image/png"))
    for message, file in (
        (image, b"\xff\xd8jpeg"),
        (document, b"%PDF-1.7"),
        (voice, b"OggS"),
        (video, b"mp4"),
        (gone, None),
    ):
        await core.event(incoming(message, file))
    await listener.wait_for(6)
    taken = listener.calls[1:]
    assert [(kind, call[2]) for kind, call in taken] == [
        ("media_in", "a photo"),
        ("media_in", "the report"),
        ("media_in", ""),
        ("media_in", ""),
        ("message_in", "expired"),
    ]
    assert [call[4] for _, call in taken[:4]] == [
        IncomingFile("image", b"\xff\xd8jpeg", None, "image/jpeg"),
        IncomingFile("document", b"%PDF-1.7", "q3.pdf", "application/pdf"),
        IncomingFile("voice", b"OggS", None, "audio/ogg"),
        IncomingFile("video", b"mp4", None, "video/mp4"),
    ]
    assert len(downloads) == 5 and threading.main_thread().name not in downloads
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)


async def test_messages_and_receipts_are_taken_before_whatsmeow_may_acknowledge_them(
    driver: nd.NeonizeDriver, session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """whatsmeow acknowledges a message to WhatsApp once the event callback returns: the
    listener (the outbox) must have it by then, in Go's thread, not later on the loop; and
    while the outbox refuses it, the callback must not return (no acknowledgement)."""
    monkeypatch.setattr(nc, "FULL_RETRY_S", 0.01)
    SendJournal(session_dir).sent(MID, "3EB0OURS")
    core, listener, task = await _connected(driver, monkeypatch)
    source = MessageSource(Chat=JID(User=THEM), Sender=JID(User=THEM))
    info = MessageInfo(MessageSource=source, ID="ABCDEF123", Timestamp=1_700_000_000)
    listener.refuse = 2  # a full outbox, twice
    await core.event(MessageEv(Info=info, Message=WAMessage(conversation="hi")))
    # the callback returned: by then the message was taken, after the two refusals
    assert [kind for kind, _ in listener.calls[1:]] == ["refused", "refused", "message_in"]
    receipt = ReceiptEv(
        MessageSource=source, MessageIDs=["3EB0OURS"], Timestamp=1, Type=ReceiptEv.READ
    )
    await core.event(receipt)
    assert listener.calls[-1] == ("receipt", (wa_id(MID), "read"))
    assert threading.main_thread().name not in listener.threads
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)


async def test_a_resend_after_a_crash_is_never_a_second_message(
    driver: nd.NeonizeDriver, session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "fedcba9876543210fedcba9876543210"
    journal = SendJournal(session_dir)  # what a worker that died left behind:
    journal.sent(MID, "3EB0SENTBEFORE")  # sent, the report cut short
    journal.sending(other)  # died between sending and hearing back
    core, listener, task = await _connected(driver, monkeypatch)
    await driver.send_text(THEM, "again", wa_id(MID))  # already sent: nothing goes out
    with pytest.raises(SendFailed, match="uncertain"):
        await driver.send_text(THEM, "maybe", wa_id(other))
    assert [name for name, _ in core.sent] == []
    receipt = ReceiptEv(
        MessageSource=MessageSource(Chat=JID(User=THEM), Sender=JID(User=THEM)),
        MessageIDs=["3EB0SENTBEFORE"],
        Timestamp=1,
        Type=ReceiptEv.READ,
    )
    await core.event(receipt)  # receipts of the earlier process's sends still map
    await listener.wait_for(2)
    assert listener.calls[1] == ("receipt", (wa_id(MID), "read"))
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)
