"""README.md's code blocks, for the tests that run its examples as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(marker: str) -> str:
    """The first fenced code block after the line holding `marker`."""
    found = re.search(re.escape(marker) + r".*?\n```\w*\n(.*?)\n```", README.read_text(), re.S)
    assert found, f"README has no code block after {marker!r}"
    return found.group(1)


def json_documents(text: str) -> list[dict]:
    """The JSON answers of several curl calls, printed one after another."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents
