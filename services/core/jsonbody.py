"""Request bodies as JSON, parsed one way: nested no deeper than ``MAX_JSON_DEPTH``.

Python's ``json`` recurses once per ``[`` or ``{``: a few thousand of them raise
``RecursionError`` (a 500 wherever it was not caught). Every body the service parses itself
goes through ``parse_json_body``; the bodies FastAPI parses for pydantic models are checked by
``RequestContextMiddleware`` with ``nested_too_deep`` before any route sees them. Both answer
the same 400.

The depth is counted without recursion and without a Python loop over the bytes: escapes are
dropped, then everything but quotes and brackets, then strings (every other piece between
quotes); each pass of ``bytes.replace(b"[]", b"")`` then removes one level of nesting. All of
it runs in C: 0.4 µs for an order event, 0.5 ms for a 256 KB batch of them (a sixth of
parsing it), 16 ms for 256 KB nested 32 deep over and over (``json`` takes 60 ms).
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.core.errors import BadRequest

MAX_JSON_DEPTH = 32
"""Far more than any body of ours nests (an order event: 4), far less than ``json`` survives."""

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_OPEN_AS_ONE = bytes.maketrans(b"{}", b"[]")
_NOT_A_MARK = bytes(b for b in range(256) if b not in b'"[]{}')


class NestedTooDeep(BadRequest):
    """A JSON body nested deeper than we parse."""


def nested_too_deep(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body``, read as JSON, nests arrays and objects deeper than ``max_depth``.

    Exact for valid JSON; for invalid JSON it may overcount (brackets never closed count as
    open), which only turns one 400 into another.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # the usual body: two scans in C
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)  # an escaped quote or bracket is text
    # Quotes and brackets alone; two quotes with nothing between them (an empty string, or
    # strings side by side) can go at once, and only what is left is split into strings.
    brackets = body.translate(_OPEN_AS_ONE, _NOT_A_MARK).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[::2])
    levels = 0
    while b"[]" in brackets:
        if levels == max_depth:
            return True
        brackets = brackets.replace(b"[]", b"")
        levels += 1
    return levels + brackets.count(b"[") > max_depth


def too_deep_error(max_depth: int = MAX_JSON_DEPTH) -> NestedTooDeep:
    return NestedTooDeep(f"the JSON body is nested deeper than {max_depth} levels")


def parse_json_body(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``body`` as JSON: ``NestedTooDeep`` when it nests too deep, ``BadRequest`` when it is not
    JSON, never ``RecursionError``."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if nested_too_deep(raw, max_depth):
        raise too_deep_error(max_depth)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body must be JSON") from None
