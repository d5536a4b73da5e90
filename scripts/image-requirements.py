"""One image's requirement file: a lock export reduced to the lines the image's Python takes.

The exports in requirements/ are universal (one line per package, with environment markers
such as ``python_full_version < "3.11.3"`` for async-timeout). pip evaluates markers with the
Python that runs it, so the host's pip (3.11.7) would leave out what Debian bookworm's 3.11.2
needs. This evaluates every marker in the *image's* environment (a JSON of PEP 508 marker
values, read from the image) and prints the lines that apply, hashes kept, markers dropped:
the host downloads exactly those files, and the image installs them with --require-hashes.

    python image-requirements.py requirements/worker.txt MARKERS_JSON > wheelhouse/worker.txt
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from packaging.markers import Marker


def main() -> int:
    source, env = Path(sys.argv[1]), json.loads(sys.argv[2])
    text = re.sub(r"\\\n\s*", " ", source.read_text(encoding="utf-8"))
    kept = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, rest = line.partition(" --hash=")
        pin, _, marker = requirement.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        hashes = re.findall(r"sha256:[0-9a-f]{64}", "--hash=" + rest)
        print(" ".join([pin.strip(), *(f"--hash={h}" for h in hashes)]))
        kept += 1
    print(f"image-requirements: {source.name}: {kept} packages", file=sys.stderr)
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
