"""Incremental, hardened XML parsing of Qualys bodies.

All XML goes through ``defusedxml`` (entity declarations and external
references are refused; a plain ``<!DOCTYPE ... SYSTEM ...>`` line, which every
KnowledgeBase response carries, is allowed and never fetched). Bodies are read
in chunks by ``iterparse`` so memory does not grow with the body size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pyexpat import XMLParserType
from typing import Protocol
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from qualys.errors import ResponseFormatError

_WHITESPACE = b" \t\r\n"
FEED_CHUNK_BYTES = 64 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class KeepAliveStripper:
    """Drops the whitespace Qualys streams before ``<?xml`` on slow calls.

    An XML declaration must be the first bytes of a document, so expat rejects
    a body that starts with keep-alive newlines (docs/qualys-api.md §3.2).
    """

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._started = False

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._source.read(size)
        while not self._started and chunk:
            stripped = chunk.lstrip(_WHITESPACE)
            if stripped:
                self._started = True
                return stripped
            chunk = self._source.read(size)
        return chunk


class SectionSkipper:
    """Drops whole ``<name>...</name>`` elements from a byte stream before the XML parser sees them.

    An agent host's ``<software>`` and ``<openPort>`` lists are most of its
    ~100 KB and three quarters of its elements; the connector keeps none of
    them. Finding their ends with ``bytes.find`` costs almost nothing, while
    handing each of their elements to the parser dominated a sync's CPU. Only
    the exact open tag ``<name>`` starts a skip (Qualys writes no attributes or
    CDATA there); anything else, ``<name/>`` included, goes to the parser as is.
    The parser (with its defusedxml guards) still reads everything else.
    """

    def __init__(self, source: Readable, names: tuple[str, ...]) -> None:
        self._source = source
        self._open = re.compile(b"<(" + b"|".join(re.escape(n.encode()) for n in names) + b")>")
        self._keep = max(len(n) for n in names) + 2  # bytes that may hold a tag cut by a chunk boundary
        self._buffer = b""
        self._close: bytes | None = None

    def read(self, size: int = -1, /) -> bytes:
        while True:
            chunk = self._source.read(size if size > 0 else FEED_CHUNK_BYTES)
            data = self._buffer + chunk
            self._buffer = b""
            if not chunk:
                return b"" if self._close is not None else data  # inside a skipped element at EOF: truncated
            kept = self._filter(data)
            if kept:
                return kept

    def _filter(self, data: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        while True:
            if self._close is not None:
                end = data.find(self._close, pos)
                if end < 0:
                    self._buffer = data[max(pos, len(data) - len(self._close) + 1) :]
                    return b"".join(out)
                pos = end + len(self._close)
                self._close = None
            match = self._open.search(data, pos)
            if match is None:
                cut = max(pos, len(data) - self._keep)
                out.append(data[pos:cut])
                self._buffer = data[cut:]
                return b"".join(out)
            out.append(data[pos : match.start()])
            self._close = b"</" + match.group(1) + b">"
            pos = match.end()


_ELEMENT_NAME = re.compile(rb"<([A-Za-z_][\w.:-]*)")


def root_element(head: bytes) -> tuple[bool, str | None]:
    """(decided, name) for the start of a document: the root element's name, after the XML declaration,
    comments, processing instructions and a DOCTYPE; ``(True, None)`` when it is not XML at all, and
    ``(False, None)`` while ``head`` is too short to tell. Only looks: the parser still reads it all."""
    pos = 0
    while True:
        pos = len(head) - len(head[pos:].lstrip(_WHITESPACE))
        if len(head) - pos < 2:
            return False, None
        if head[pos : pos + 1] != b"<":
            return True, None  # text before any element: not an XML document
        if head.startswith(b"<!--", pos):
            end = head.find(b"-->", pos + 4)
            pos = end + 3 if end != -1 else -1
        elif head.startswith((b"<?", b"<!"), pos):
            pos = _end_of_markup(head, pos)
        else:
            match = _ELEMENT_NAME.match(head, pos)
            if match is None:
                return True, None  # "</", "< ": not the start of an element
            if match.end() == len(head):
                return False, None  # the name may go on in the next chunk
            return True, match.group(1).decode("ascii", "replace")
        if pos == -1:
            return False, None


def _end_of_markup(head: bytes, start: int) -> int:
    """Just past the ``>`` closing the declaration or DOCTYPE at ``start`` (-1: not in ``head`` yet);
    a DOCTYPE's internal subset (``[...]``) may hold ``>`` of its own."""
    close = head.find(b">", start)
    bracket = head.find(b"[", start)
    if bracket != -1 and (close == -1 or bracket < close):
        subset_end = head.find(b"]", bracket)
        close = head.find(b">", subset_end) if subset_end != -1 else -1
    return close + 1 if close != -1 else -1


class TruncatedBodyError(ResponseFormatError):
    """The document ended early: a cut connection, worth a retry."""


@contextmanager
def _xml_errors() -> Iterator[None]:
    """Map parser failures to the connector's errors (hostile XML, truncation, not XML)."""
    try:
        yield
    except DefusedXmlException as exc:
        raise ResponseFormatError(
            f"Refused a Qualys response with forbidden XML ({type(exc).__name__}).",
            "This is not a genuine Qualys response: check the API URL (QUALYS_API_URL) and any proxy in between.",
        ) from exc
    except ParseError as exc:
        message = str(exc)
        if message.startswith(("no element found", "unclosed token")):
            raise TruncatedBodyError(f"Qualys response ended early ({message}).") from exc
        raise ResponseFormatError(
            f"Qualys sent a body that is not well-formed XML ({message}).",
            "Check the API URL (QUALYS_API_URL): it must be the API server, not the web portal.",
        ) from exc


def iter_events(source: Readable) -> Iterator[tuple[str, Element]]:
    """Yield ``(event, element)`` for ``start``/``end`` events, hardened and streaming."""
    with _xml_errors():
        yield from SafeET.iterparse(KeepAliveStripper(source), events=("start", "end"))


class ParserTarget(Protocol):
    def start(self, tag: str, attrib: list[str], /) -> None: ...
    def end(self, tag: str, /) -> None: ...
    def data(self, text: str, /) -> None: ...
    def close(self) -> None: ...
    def attach(self, parser: XMLParserType, /) -> None:
        """Called once with the expat parser, so the target can switch handlers while parsing."""


class TargetFeeder:
    """Streams ``source`` into a callback ``target``, a chunk at a time: no element tree is built at all.

    About twice as fast as iterparse on hostasset pages, because the bulky software and port
    lists never become Python objects. The caller may stop between chunks (:meth:`feed_until`)
    and go on later; :meth:`close` must follow, whatever happened.
    """

    def __init__(self, source: Readable, target: ParserTarget) -> None:
        self._parser = SafeET.DefusedXMLParser(target=target)
        # defusedxml builds the expat parser and installs its guards (entity declarations and external
        # references refused). We then route element and text events straight to the target, skipping
        # ElementTree's per-element Python wrappers (tag-name fixing, attribute dicts): half the cost.
        self._expat = self._parser.parser
        self._expat.StartElementHandler = target.start
        self._expat.EndElementHandler = target.end
        self._expat.CharacterDataHandler = target.data
        target.attach(self._expat)
        self._reader = KeepAliveStripper(source)
        self._ended = False

    def feed_until(self, done: Callable[[], bool]) -> None:
        """Feed chunks until ``done()`` holds or the body ends."""
        with _xml_errors():
            while not done() and not self._ended:
                self._feed_chunk()

    def feed_all(self) -> None:
        """Feed the rest of the body and finish the document."""
        with _xml_errors():
            while not self._ended:
                self._feed_chunk()

    def _feed_chunk(self) -> None:
        chunk = self._reader.read(FEED_CHUNK_BYTES)
        if chunk:
            self._parser.feed(chunk)
        else:
            self._ended = True
            self._parser.close()

    def close(self) -> None:
        """Detach the target. Its handlers are its bound methods and it keeps the parser (attach): a reference
        cycle that kept everything the target parsed (a whole page of assets) until a full garbage collection."""
        expat = self._expat
        expat.StartElementHandler = expat.EndElementHandler = expat.CharacterDataHandler = None


def text_of(element: Element | None) -> str | None:
    """Stripped text, ``None`` for a missing or empty element (Qualys pads some dates with newlines)."""
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def child_text(element: Element, path: str) -> str | None:
    return text_of(element.find(path))
