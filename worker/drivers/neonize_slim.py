"""The slice of neonize 0.5.2 the driver uses, loaded without neonize's package ``__init__``.

Why: ``import neonize`` runs ``neonize/__init__.py``, which imports ``neonize.client``, which
imports PIL, linkpreview, phonenumbers, requests, httpx, bs4 and more for media, stickers
and link previews this worker never sends: ~18 MB of RSS in every worker. The driver
needs only the Go library loader (``neonize._binder``), the event table (``neonize.events``),
the protobuf types, the log bridge and three enums; and of ``NewClient`` four calls.

How: ``neonize`` and ``neonize.utils`` are registered as bare namespace-like packages (their
real folders, their ``__init__`` not run), and ``neonize.download`` (requests + tqdm, only used
to fetch a missing Go library from GitHub) as a stub that refuses: a worker never downloads
code at run time. Python's import system then loads the light submodules from the installed
files as usual. If the full package is already imported (tests, tools), it is used as it is.

This is tied to the pinned version: a different neonize refuses to load here, and
``tests/test_neonize_driver.py`` checks that ``SlimClient`` makes the same Go calls as 0.5.2's
``NewClient`` and that none of the heavy packages is loaded by the driver.
"""
# ruff: noqa: E402

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NEONIZE_VERSION = "0.5.2"
_VERSION = re.compile(r"""^__version__ = ["']([^"']+)["']""", re.MULTILINE)


class NeonizeVersionError(RuntimeError):
    """The installed neonize is not the one this loader (and the driver's ABI) was made for."""


def _package(name: str, folder: Path) -> types.ModuleType:
    """A package module over ``folder`` whose ``__init__`` never runs."""
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [str(folder)]
    return module


def _refuse_download() -> None:
    raise NeonizeVersionError(
        f"neonize's Go library is missing or of another version; reinstall neonize=="
        f"{NEONIZE_VERSION} (a worker never downloads code at run time)"
    )


def _declared_version(root: Path) -> str:
    """The ``__version__`` neonize's ``__init__`` declares, read rather than run (and not
    through ``importlib.metadata``, which costs a worker 2 MB for this one string)."""
    try:
        found = _VERSION.search((root / "__init__.py").read_text())
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


def install() -> None:
    """Register the light ``neonize`` parents; a no-op once neonize is imported either way."""
    if "neonize" in sys.modules:
        return
    spec = importlib.util.find_spec("neonize")  # finds the folder, runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise NeonizeVersionError("neonize is not installed as a package")
    root = Path(next(iter(spec.submodule_search_locations)))
    installed = _declared_version(root)
    if installed != NEONIZE_VERSION:
        raise NeonizeVersionError(
            f"neonize {installed} is installed, the driver needs {NEONIZE_VERSION}"
        )
    package = _package("neonize", root)
    package.__version__ = installed  # type: ignore[attr-defined]
    utils = _package("neonize.utils", root / "utils")
    download = types.ModuleType("neonize.download")
    download.__GONEONIZE_VERSION__ = NEONIZE_VERSION  # type: ignore[attr-defined]
    download.download = _refuse_download  # type: ignore[attr-defined]
    sys.modules["neonize"] = package
    sys.modules["neonize.utils"] = utils
    sys.modules["neonize.download"] = download
    package.utils = utils  # type: ignore[attr-defined]
    package.download = download  # type: ignore[attr-defined]


@contextlib.contextmanager
def _without_segno() -> Iterator[None]:
    """Import ``neonize.events`` without segno (1.3 MB): it only draws QR codes in a terminal,
    for neonize's default QR handler, which the driver replaces. A placeholder stands in
    while the module is imported, then leaves ``sys.modules`` so a real ``import segno``
    elsewhere in this process still gets the real one."""
    if "segno" in sys.modules or "neonize.events" in sys.modules:
        yield
        return
    placeholder = types.ModuleType("segno")
    sys.modules["segno"] = placeholder
    try:
        yield
    finally:
        if sys.modules.get("segno") is placeholder:
            del sys.modules["segno"]


install()

from neonize._binder import (
    ProxySettings,
    func_callback_bytes,
    func_callback_bytes2,
    func_string,
    gocode,
)

with _without_segno():
    importlib.import_module("neonize.events")
from neonize.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    Event,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import (
    DownloadError,
    PairPhoneError,
    SendMessageError,
    SendPresenceError,
    UploadError,
)
from neonize.proto import Neonize_pb2 as neonize_proto
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, Device
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, ClientName, ClientType, Presence
from neonize.utils.log import log_whatsmeow

__all__ = (
    "JID",
    "NEONIZE_VERSION",
    "ClientName",
    "ClientOutdatedEv",
    "ClientType",
    "ConnectFailureEv",
    "ConnectFailureReason",
    "ConnectedEv",
    "ContextInfo",
    "Device",
    "DeviceProps",
    "DisconnectedEv",
    "DownloadError",
    "Event",
    "ExtendedTextMessage",
    "KeepAliveRestoredEv",
    "KeepAliveTimeoutEv",
    "LoggedOutEv",
    "ChatPresence",
    "ChatPresenceMedia",
    "Message",
    "MessageEv",
    "PairStatusEv",
    "ReceiptEv",
    "Presence",
    "ProxySettings",
    "SlimClient",
    "StreamErrorEv",
    "StreamReplacedEv",
    "TemporaryBanEv",
    "func_callback_bytes",
    "func_callback_bytes2",
    "func_string",
    "gocode",
    "log_whatsmeow",
)


MADV_DONTNEED = 4  # <sys/mman.h>, Linux
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+ +(.*)$")


def drop_clean_library_pages(library: Path, smaps: Path = Path("/proc/self/smaps")) -> int:
    """Let go of the Go library's read-only pages that only its start-up touched; bytes freed.

    Why: the Go runtime's start-up walks the library's whole function table and type data
    (~15 MB of a 19 MB file), which stays mapped in this process and counts in its RSS,
    though an idle worker never reads most of it again. ``MADV_DONTNEED`` on a read-only
    mapping with no private copy (Private_Dirty 0: nothing relocated or written) only drops
    our page-table entries: the pages stay in the page cache and fault back in, unchanged,
    if the code runs again. Writable or relocated mappings are never touched (dropping a
    private copy would lose its contents). Linux only; elsewhere it does nothing.
    """
    try:
        text = smaps.read_text()
    except OSError:
        return 0
    target = str(library.resolve())
    candidates: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in text.splitlines():
        found = _MAPPING.match(line)
        if found:
            start, end, perms, path = found.groups()
            keep = path.strip() == target and "w" not in perms and perms[3] == "p"
            current = (int(start, 16), int(end, 16)) if keep else None
        elif current is not None and line.startswith("Private_Dirty:"):
            if int(line.split()[1]) == 0:
                candidates.append(current)
            current = None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    freed = 0
    for start, end in candidates:
        if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            freed += end - start
    return freed


class SlimClient:
    """The part of neonize 0.5.2's ``NewClient`` the driver calls, with the same Go calls.

    ``NewClient`` lives in ``neonize.client``, the module that pulls in the heavy imports;
    these methods are copied from it (the text paths, link previews and mention parsing
    the driver never uses are left out). ``core`` is the Go library (a test passes a fake).
    """

    def __init__(
        self,
        name: str,
        props: DeviceProps | None = None,
        uuid: str | None = None,
        core: Any = None,
    ) -> None:
        self.name = name
        self.device_props = props
        self.uuid: bytes = (uuid or name).encode()
        self.core: Any = gocode if core is None else core
        self.me: Any = None  # set by Event.execute, as on NewClient
        self.connected = False
        self.event = Event(self)
        # as NewClient: the Go client is stopped if this object is collected (the driver
        # detaches it and stops the client itself, under its lock)
        self._stop_finalizer = weakref.finalize(self, _release, self.uuid, self.core)

    def get_me(self) -> Device:
        return Device.FromString(self.core.GetMe(self.uuid))

    def PairPhone(  # noqa: N802 - NewClient's name
        self,
        phone: str,
        show_push_notification: bool,
        client_name: ClientName = ClientName.LINUX,
        client_type: ClientType | None = None,
    ) -> str:
        if client_type is None:
            client_type = ClientType.FIREFOX
            if self.device_props is not None:
                with contextlib.suppress(ValueError):
                    client_type = ClientType(self.device_props.platformType)
        params = neonize_proto.PairPhoneParams(
            phone=phone,
            clientDisplayName=f"{client_type.name} ({client_name.name})",
            clientType=client_type.value,
            showPushNotification=show_push_notification,
        )
        payload = params.SerializeToString()
        answer = neonize_proto.PairPhoneReturnFunction.FromString(
            self.core.PairPhone(self.uuid, payload, len(payload))
        )
        if answer.Error:
            raise PairPhoneError(answer.Error)
        return str(answer.Code)

    def send_presence(self, presence: Presence) -> None:
        error = self.core.SendPresence(self.uuid, presence.value)
        if error:
            raise SendPresenceError(error)

    def send_chat_presence(self, jid: JID, state: ChatPresence, media: ChatPresenceMedia) -> None:
        """``NewClient.send_chat_presence``: "typing..." (composing) or paused, in one chat."""
        jid_bytes = jid.SerializeToString()
        answer = self.core.SendChatPresence(
            self.uuid, jid_bytes, len(jid_bytes), state.value, media.value
        )
        # 0.5.2 declares the answer a void pointer (NewClient's ``.decode()`` on it fails):
        # read the C string it points to.
        if isinstance(answer, bytes):
            error = answer.decode(errors="replace")
        else:
            error = ctypes.string_at(answer).decode(errors="replace") if answer else ""
        if error:
            raise SendPresenceError(error)

    def send_message(self, to: JID, message: Message) -> Any:
        to_bytes = to.SerializeToString()
        message_bytes = message.SerializeToString()
        answer = neonize_proto.SendMessageReturnFunction.FromString(
            self.core.SendMessage(
                self.uuid, to_bytes, len(to_bytes), message_bytes, len(message_bytes)
            )
        )
        if answer.Error:
            raise SendMessageError(answer.Error)
        answer.SendResponse.MergeFrom(answer.SendResponse.__class__(Message=message))
        return answer.SendResponse

    def download_any(self, message: Message) -> bytes:
        """``NewClient.download_any``: the file an incoming media message carries, fetched
        and decrypted by whatsmeow; ``DownloadError`` when WhatsApp no longer has it."""
        payload = message.SerializeToString()
        answer = neonize_proto.DownloadReturnFunction.FromString(
            self.core.DownloadAny(self.uuid, payload, len(payload))
        )
        if answer.Error:
            raise DownloadError(answer.Error)
        return bytes(answer.Binary)

    def upload(self, binary: bytes, media_type: int) -> Any:
        """``NewClient.upload`` with the media type given (whatsmeow's ``MediaType``: 0
        image, 1 video, 2 audio, 3 document): encrypts and uploads, answers the
        ``UploadResponse`` a media message names (URL, keys, the plaintext's SHA-256)."""
        answer = neonize_proto.UploadReturnFunction.FromString(
            self.core.Upload(self.uuid, binary, len(binary), media_type)
        )
        if answer.Error:
            raise UploadError(answer.Error)
        return answer.UploadResponse


def _release(uuid: bytes, core: Any) -> None:
    try:
        core.Stop(uuid)
    except Exception:  # noqa: S110 - best effort, as NewClient's; the library may be gone
        pass


GO_LIBRARY = Path(gocode._name)  # the library _binder loaded (and started) above
