"""Refuses a lock that does not match the project: run by scripts/setup.sh before it installs
anything, by scripts/lock.sh after it writes, and by the tests.

Two things can drift apart without pip noticing: pyproject.toml's dependencies and uv.lock (a
dependency added to one and not the other), and uv.lock and the requirement files exported
from it (one re-locked, the others not). pip's own --require-hashes checks that what it
downloads is what a requirement file names; this checks that the file names what the project
asks for. Standard library only, so it runs before any venv exists.

    python3 scripts/check-lock.py [ROOT]       # exit 0: in step; 1: what differs, one per line
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The requirement files scripts/lock.sh exports, and the extras each one holds.
EXPORTS = {
    "dev.txt": None,  # every extra
    "orchestrator.txt": ("docker",),
    "worker.txt": ("neonize",),
}
_REQ = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;]*?)\s*"
    r"(?:;\s*(?P<marker>.*))?$"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _spec(text: str) -> str:
    return ",".join(sorted(p.replace(" ", "") for p in text.split(",") if p.strip()))


def declared(pyproject: dict) -> set[tuple[str, str, str, str]]:
    """pyproject.toml's requirements as (name, extras, specifier, extra) tuples."""
    project = pyproject["project"]
    groups = {"": project.get("dependencies", [])}
    groups.update(project.get("optional-dependencies", {}))
    found = set()
    for extra, requirements in groups.items():
        for line in requirements:
            m = _REQ.match(line.strip())
            if m is None:
                raise SystemExit(f"check-lock: cannot read requirement {line!r}")
            extras = ",".join(sorted(canonical(e) for e in (m["extras"] or "").split(",") if e))
            found.add((canonical(m["name"]), extras, _spec(m["spec"]), extra))
    return found


def locked_requirements(lock: dict, project: str) -> set[tuple[str, str, str, str]]:
    """What uv.lock was resolved for: the project's requirements as uv recorded them."""
    root = next(p for p in lock["package"] if canonical(p["name"]) == canonical(project))
    found = set()
    for req in root.get("metadata", {}).get("requires-dist", []):
        extra = ""
        if m := re.fullmatch(r"extra == '([^']+)'", req.get("marker", "")):
            extra = m[1]
        extras = ",".join(sorted(canonical(e) for e in req.get("extras", [])))
        found.add((canonical(req["name"]), extras, _spec(req.get("specifier", "")), extra))
    return found


def exported(path: Path) -> dict[str, tuple[str, set[str]]]:
    """A requirement file's pins: name → (version, hashes); a fork (same name twice) merges."""
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, tuple[str, set[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
        if m is None:
            raise SystemExit(f"check-lock: {path.name}: not a pinned requirement: {line[:80]!r}")
        hashes = set(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        name = canonical(m[1])
        old_version, old_hashes = pins.get(name, (m[2], set()))
        pins[name] = (
            m[2] if old_version == m[2] else f"{old_version}|{m[2]}",
            old_hashes | hashes,
        )
    return pins


def problems(root: Path) -> list[str]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    lock_path = root / "uv.lock"
    if not lock_path.is_file():
        return ["uv.lock is missing: run scripts/lock.sh"]
    lock = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    found: list[str] = []
    want = declared(pyproject)
    have = locked_requirements(lock, pyproject["project"]["name"])
    for name, _, spec, extra in sorted(want - have):
        where = f"[{extra}]" if extra else "dependencies"
        found.append(f"pyproject.toml {where} has {name}{spec} that uv.lock was not made for")
    found.extend(
        f"uv.lock was made for {name}{spec}, which pyproject.toml no longer asks"
        for name, _, spec, _ in sorted(have - want)
    )
    files: dict[str, dict[str, set[str]]] = {}
    for package in lock["package"]:
        hashes = {f["hash"] for f in package.get("wheels", [])}
        if "sdist" in package and "hash" in package["sdist"]:
            hashes.add(package["sdist"]["hash"])
        files.setdefault(canonical(package["name"]), {})[package["version"]] = hashes
    for filename in EXPORTS:
        path = root / "requirements" / filename
        if not path.is_file():
            found.append(f"requirements/{filename} is missing: run scripts/lock.sh")
            continue
        for name, (versions, hashes) in sorted(exported(path).items()):
            known = files.get(name, {})
            found.extend(
                f"requirements/{filename}: {name}=={version} is not in uv.lock"
                for version in versions.split("|")
                if version not in known
            )
            if not hashes:
                found.append(f"requirements/{filename}: {name} has no hash")
            elif known and not hashes <= set().union(*known.values()):
                found.append(f"requirements/{filename}: {name} has a hash uv.lock does not")
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    found = problems(root)
    for line in found:
        print(f"check-lock: {line}", file=sys.stderr)
    if found:
        print("check-lock: the lock does not match; run scripts/lock.sh", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
