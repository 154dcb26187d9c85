"""Path safety: nothing a model writes may name a file outside the run's folder.

Two layers. `resolve_in(root, name)` is the only way a tool turns a name into a
path: it refuses absolute paths, `..` parts, backslashes, home shortcuts and
NUL bytes, and re-checks after resolving symlinks. `refuse_path_escapes(args)`
screens every string in a tool's parsed arguments before the tool runs, so a
`../` or an absolute path is refused in *any* argument, even one that is never
meant to be a path (defence in depth: a later tool might start using it).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

# A Windows drive ("C:\", "c:/") or UNC prefix ("\\server").
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")


class PathRefused(ValueError):
    """A name from a model tried to leave the run folder; the message says why."""


def _escape_reason(text: str) -> str | None:
    """Why `text` looks like a path that escapes the run folder (None if it does not)."""
    if "\x00" in text:
        return "contains a NUL byte"
    stripped = text.strip()
    if stripped.startswith(("/", "~")):
        return "is an absolute or home-relative path"
    if _DRIVE.match(stripped):
        return "is an absolute Windows path"
    parts = re.split(r"[\\/]", stripped)
    if ".." in parts:
        return "contains a '..' path segment"
    return None


def refuse_path_escapes(value: Any, where: str = "arguments") -> None:
    """Raise `PathRefused` if any string inside `value` (nested) escapes the run folder."""
    if isinstance(value, str):
        reason = _escape_reason(value)
        if reason is not None:
            raise PathRefused(
                f"{where} {reason}: {value[:80]!r}. Tools only accept names inside this "
                "run's folder (no '..', no absolute paths); refer to videos by their id."
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_path_escapes(key, f"{where} key")
            refuse_path_escapes(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            refuse_path_escapes(item, f"{where}[{i}]")


def resolve_in(root: Path, name: str) -> Path:
    """`root / name`, refused unless it stays inside `root` after resolving symlinks."""
    if not name or not name.strip():
        raise PathRefused("an empty file name was given")
    reason = _escape_reason(name)
    if reason is None and "\\" in name:
        reason = "contains a backslash"
    if reason is not None:
        raise PathRefused(f"file name {name[:80]!r} {reason}; use a plain name inside the run")
    relative = PurePosixPath(name)
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise PathRefused(f"file name {name[:80]!r} resolves outside the run folder")
    return target
