"""The layout as shipped: the layering of docs/architecture.md, and a wheel that works on its own.

The editable install the other tests use finds every package in the source tree, so it would
hide a wheel that forgot the Lua scripts, the catalogues or a whole package. Here a wheel is
built from a copy of the tree and installed into a fresh venv, and everything runs with the
source tree off ``sys.path``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.fleet import eventually
from wafleet import devstack

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "api", "bot", "worker", "simwa", "wafleet")


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.update(_imported_modules(node.module, [a.name for a in node.names]))
        found[str(path.relative_to(ROOT))] = names
    return found


def _imported_modules(module: str, names: list[str]) -> list[str]:
    """``from core import logs`` imports the module ``core.logs``, not just ``core``."""
    folder = ROOT.joinpath(*module.split("."))
    submodules = [
        f"{module}.{n}" for n in names if (folder / f"{n}.py").is_file() or (folder / n).is_dir()
    ]
    return submodules or [module]


def test_every_package_is_top_level() -> None:
    for package in (*PACKAGES, "locales"):
        assert (ROOT / package / "__init__.py").is_file(), package
    assert sorted(p.name for p in (ROOT / "locales").iterdir() if p.is_dir()) == ["en", "he"]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("core", {"api", "bot", "wafleet", "worker", "simwa", "aiohttp.web", "aiogram"}),
        ("api", {"bot", "wafleet", "aiogram"}),
        ("bot", {"api", "wafleet"}),
        ("worker", {"api", "bot", "wafleet", "simwa"}),
        ("simwa", {"core", "api", "bot", "wafleet", "worker"}),
    ],
)
def test_layering(package: str, forbidden: set[str]) -> None:
    breaches = [
        f"{module} imports {name}"
        for module, names in imported_packages(package).items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert breaches == []


def test_worker_imports_only_the_core_it_needs() -> None:
    """A worker is one process per number: every core module it loads is paid for N times."""
    used = {
        name
        for names in imported_packages("worker").values()
        for name in names
        if name == "core" or name.startswith("core.")
    }
    assert used <= {
        "core.events",  # the event ids serve makes too (an acknowledgement's status event)
        "core.logs",
        "core.proxy_url",
        "core.proxy_probe",
        "core.runner",
        "core.signing",
    }


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wafleet wheel and, beside it, exactly the locked dependencies.

    The dependencies come from requirements/orchestrator.txt (the lock the orchestrator image
    installs) with every hash checked, and `pip check` then proves the lock holds everything the
    wheel's metadata asks for: a dependency added to pyproject.toml but not locked fails here.
    """
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    for package in (*PACKAGES, "locales"):
        shutil.copytree(
            ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(src)],
        check=True,
        cwd=work,
    )
    (wheel,) = dist.glob("wafleet-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "--quiet", "--require-hashes", "--only-binary=:all:"]
        + ["-r", str(ROOT / "requirements" / "orchestrator.txt")],
        check=True,
        cwd=work,
    )
    subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--no-index", f"{wheel}[docker]"],
        check=True,
        cwd=work,
    )
    subprocess.run([*pip, "check"], check=True, cwd=work, capture_output=True)
    shutil.rmtree(src)
    return env_dir


def run_in(env_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env_dir / "bin" / "python"), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"},
        timeout=60,
    )


def test_wheel_runs_the_cli_from_its_own_files(wheel_venv: Path, tmp_path: Path) -> None:
    done = run_in(wheel_venv, "-m", "wafleet", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "worker", "simwa", "demo"):
        assert command in done.stdout
    where = run_in(
        wheel_venv,
        "-c",
        "import json, core, api, bot, worker, simwa, wafleet, locales as l;"
        "print(json.dumps([m.__file__ for m in (core, api, bot, worker, simwa, wafleet, l)]))",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(wheel_venv), path


def test_wheel_finds_the_catalogues_and_the_lua(wheel_venv: Path, tmp_path: Path) -> None:
    probe = (
        "import json\n"
        "from importlib import resources\n"
        "from bot.i18n import build_i18n, locales_dir\n"
        "i18n = build_i18n()\n"
        "lua = sorted(p.name for p in resources.files('core').joinpath('lua').iterdir())\n"
        "print(json.dumps({'dir': str(locales_dir()), 'locales': sorted(i18n.available_locales),"
        " 'he': i18n.gettext('Sessions: {n}', locale='he'), 'lua': lua}))\n"
    )
    done = run_in(wheel_venv, "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["dir"]).is_relative_to(wheel_venv)
    assert found["locales"] == ["en", "he"]
    assert found["he"] != "Sessions: {n}"  # the Hebrew catalogue really translated it
    assert "provision.lua" in found["lua"]


@pytest.fixture
async def webhook_sink() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhook", take)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devstack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/webhook", received
    finally:
        await runner.cleanup()


async def test_wheel_worker_reaches_the_network_through_its_proxy(
    wheel_venv: Path, tmp_path: Path, webhook_sink: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook_sink
    proxy = devstack.start_proxy(tmp_path, 1)
    simwa, simwa_port = devstack.start_simwa(tmp_path)
    session_dir = tmp_path / "session"
    session_dir.mkdir()
    env = {
        "PATH": f"{wheel_venv / 'bin'}:{os.environ['PATH']}",
        "SESSION_ID": "worker_1",
        "PROXY_URL": proxy.url,
        "WEBHOOK_URL": url,
        "WEBHOOK_SECRET": "a-derived-secret-for-this-test",
        "SESSION_DIR": str(session_dir),
        "WA_DRIVER": "sim",
        "SIMWA_URL": f"ws://localhost:{simwa_port}/ws",
    }
    # A console script's sys.path starts at the venv's bin/: the source tree is not on it.
    worker = devstack.spawn(
        "worker", [str(wheel_venv / "bin" / "wafleet"), "worker"], tmp_path / "worker.log", env
    )
    try:

        async def got_qr() -> bool:
            return any(e.get("type") == "QR_CODE" for e in received)

        await eventually(got_qr, timeout=20, what="a QR_CODE event from the wheel's worker")
    finally:
        worker.stop()
        simwa.kill()
        proxy.proc.kill()
    qr = next(e for e in received if e["type"] == "QR_CODE")
    assert qr["sessionId"] == "worker_1"
    assert str(qr["data"]["qr"]).startswith("2@")  # type: ignore[index]
