"""One helper of the bench scripts: replace a marked block of bench/RESULTS.md."""
from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, body: str, marker: str) -> None:
    """Put ``body`` between the ``<!-- marker:start -->`` / ``<!-- marker:end -->`` lines of ``path`` (replacing what
    is there), appending the block when absent; the rest of the file is left alone."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
