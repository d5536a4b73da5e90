"""Add to a wheelhouse the wheels the *image's* Python needs but the host's pip left out.

pip evaluates environment markers with the Python that runs it, so a wheelhouse made by the
host's 3.11.7 lacks e.g. ``async-timeout`` (redis: ``python_full_version < "3.11.3"``) that
Debian bookworm's 3.11.2 needs. This reads every wheel's Requires-Dist, evaluates the markers
in the image's environment (a JSON of PEP 508 marker values, read from the image) and
downloads what is missing (binary wheels only) until nothing is.

    python complete-wheelhouse.py WHEELHOUSE MARKERS_JSON ROOT_REQ [ROOT_REQ ...]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


def wheels(house: Path) -> dict[str, tuple[Version, Path]]:
    found: dict[str, tuple[Version, Path]] = {}
    for whl in house.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(whl.name)
        found[canonicalize_name(name)] = (version, whl)
    return found


def metadata(whl: Path) -> Message:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if re.match(r"[^/]+\.dist-info/METADATA$", n))
        return Parser().parsestr(z.read(meta).decode())


def requires(whl: Path) -> list[Requirement]:
    return [Requirement(r) for r in metadata(whl).get_all("Requires-Dist") or []]


def runs_on(whl: Path, py_version: str) -> bool:
    """Whether the wheel's Requires-Python admits the image's Python (e.g. 3.11.2)."""
    spec = metadata(whl).get("Requires-Python")
    return spec is None or SpecifierSet(spec).contains(py_version, prereleases=True)


def main() -> int:
    house, env = Path(sys.argv[1]), json.loads(sys.argv[2])
    roots = [Requirement(r) for r in sys.argv[3:]]
    py_version = env["python_full_version"]
    for _ in range(20):
        have = wheels(house)
        todo: list[tuple[Requirement, set[str]]] = [(r, set(r.extras)) for r in roots]
        seen: set[tuple[str, frozenset[str]]] = set()
        missing: list[str] = []
        while todo:
            req, extras = todo.pop()
            name = canonicalize_name(req.name)
            if (name, frozenset(extras)) in seen:
                continue
            seen.add((name, frozenset(extras)))
            if name in have and not runs_on(have[name][1], py_version):
                # The host's newer Python got a release the image's cannot install: swap it for
                # the newest release that can (pip download --python-version picks it).
                print(
                    f"complete-wheelhouse: {have[name][1].name} needs a newer Python than "
                    f"{py_version}",
                    file=sys.stderr,
                )
                have[name][1].unlink()
                del have[name]
            if name not in have or not req.specifier.contains(have[name][0], prereleases=True):
                missing.append(f"{req.name}{req.specifier}")
                continue
            for dep in requires(have[name][1]):
                active = [
                    e
                    for e in extras or {""}
                    if dep.marker is None or dep.marker.evaluate({**env, "extra": e})
                ]
                if active:
                    todo.append((dep, set(dep.extras)))
        if not missing:
            return 0
        print(
            f"complete-wheelhouse: adding for Python {py_version}: {', '.join(missing)}",
            file=sys.stderr,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                py_version,
                "--dest",
                str(house),
                *missing,
            ],
            check=True,
        )
    print("complete-wheelhouse: no fixed point after 20 rounds", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
