"""Which children of a model base path are versions, by TF Serving's rule.

The server that loads them, the exporter that numbers them and `make serve`'s preflight must
agree: a folder the server loads as version 7 ("+7", "007", " 7 ") is version 7 to the
exporter too, so it never writes a second 7 beside it. No TensorFlow import, so the light
tools can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# absl::SimpleAtoi (file_system_storage_path_source.cc ParseVersionNumber): optional
# surrounding whitespace and sign, then ASCII digits, within int64 (reference §2).
_VERSION_NAME = re.compile(r"\s*[+-]?[0-9]+\s*")
_INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version number of a base-path child, or None for names TF Serving skips."""
    if not _VERSION_NAME.fullmatch(name):
        return None
    number = int(name.strip())
    return number if -_INT64_MAX - 1 <= number <= _INT64_MAX else None


def index_versions(
    names: Iterable[str],
) -> tuple[dict[int, str], list[tuple[int, str, str]]]:
    """Base-path children by version number, ascending, as TF Serving indexes them
    (file_system_storage_path_source.cc: the children in a std::set, so in sorted order, then
    IndexChildrenByVersion): of two names for one number ("007" and "7") the last in sorted
    order wins. The others come back as (number, name loaded, name ignored), for the caller
    to log as IndexChildrenByVersion does."""
    found: dict[int, str] = {}
    duplicates: list[tuple[int, str, str]] = []
    for name in sorted(names):
        version = parse_version(name)
        if version is None:
            continue
        if version in found:
            duplicates.append((version, name, found[version]))
        found[version] = name
    return dict(sorted(found.items())), duplicates


def version_dirs(base_path: str | Path) -> dict[int, Path]:
    """The version folders of a base path by number, ascending (files with a version name
    are left out: the exporter and `make serve` want models, not whatever the server would
    try and fail to load)."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    # Every child indexed, as the server does, then the winners that are not folders dropped:
    # filtered first, a file "7" beside a folder "007" was version 7 here and not there.
    found, _ = index_versions(path.name for path in base.iterdir())
    return {version: base / name for version, name in found.items() if (base / name).is_dir()}
