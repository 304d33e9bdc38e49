"""Which children of a model base path are versions, by TF Serving's rule.

The server that loads them, the exporter that numbers them and `make serve`'s preflight must
agree: a folder the server loads as version 7 ("+7", "007", " 7 ") is version 7 to the
exporter too, so it never writes a second 7 beside it. No TensorFlow import, so the light
tools can use it.
"""

from __future__ import annotations

import re

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
