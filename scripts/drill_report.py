"""Writing one section of a Markdown report in docs/ and keeping the others (the drills each rewrite their own)."""

from __future__ import annotations

from pathlib import Path

HEAD = "# 演练\n\nScripts anyone can rerun; the last results, each run in its own section.\n"


def write_section(path: Path, section: str, head: str = HEAD) -> None:
    """Replace the section of `path` whose `## ` heading is the first line of `section` (its text up to the next
    `## ` heading), or add it at the end."""
    title = section.lstrip().splitlines()[0].strip()
    assert title.startswith("## "), title
    old = path.read_text() if path.exists() else head
    parts = old.split("\n## ")
    out, placed = [parts[0].rstrip() + "\n"], False
    for part in parts[1:]:
        if ("## " + part).splitlines()[0].strip() == title:
            out.append(section.strip() + "\n")
            placed = True
        else:
            out.append("## " + part.strip() + "\n")
    if not placed:
        out.append(section.strip() + "\n")
    path.write_text("\n".join(out))
