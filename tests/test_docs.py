"""Every document in the repository stands on its own.

A reader has the repository and nothing else: a docstring, comment or page that points at a
planning document outside it, or at a ticket number, sends them to something they cannot
open. Say the rule itself instead.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Spelled so that this file does not match itself.
OUTSIDE = re.compile(
    r"\b(?:SPEC|DESIGN)(?:\.md|'s)"  # the product's planning documents
    r"|\.\./shared\b|\bshared/(?:SPEC|DESIGN|STYLE)"  # the folder beside the repository
    r"|(?i:\bissues? #?\d+)",  # a ticket number
)


def tracked_files() -> list[Path]:
    """The files git tracks (a wheel or an unpacked tarball: every file but hidden ones)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"],
            check=True,
            capture_output=True,
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [
            path
            for path in ROOT.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.parts)
        ]


def citations(text: str) -> list[tuple[int, str]]:
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]


def test_the_pattern_finds_what_a_reader_could_not_look_up() -> None:
    cited = [
        "see SPEC" + ".md, Flow 3",
        "DESIGN" + ".md contract",
        "the layering DESIGN" + "'s layout asks for",
        "as in ../" + "shared/" + "DESIGN" + ".md",
        "fixed in issue " + "12",
        "(Issue #" + "7)",
    ]
    assert [bool(citations(line)) for line in cited] == [True] * len(cited)
    own = [
        "SPEC_LABEL = 'wafleet.spec'",
        "the worker spec's fingerprint",
        "an issue with the proxy",
        "shared storage (NFS)",
    ]
    assert [bool(citations(line)) for line in own] == [False] * len(own)


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    found = []
    files = tracked_files()
    assert len(files) > 100  # the whole tree, not an empty listing
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (a compiled catalogue, an image), or deleted in the work tree
        found += [f"{path.relative_to(ROOT)}:{n}: {line}" for n, line in citations(text)]
    assert found == [], "say the rule itself instead:\n" + "\n".join(found)
