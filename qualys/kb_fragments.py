"""The rendered KnowledgeBase fragments of a run, packed: a few large strings instead of one object per QID."""

from __future__ import annotations

from collections.abc import Iterable

#: A chunk is closed once it holds this many characters.
_CHUNK_CHARS = 1 << 16
_FIELD_BITS = 24
_FIELD_MASK = (1 << _FIELD_BITS) - 1


class PackedFragments:
    """QID -> fragment, stored as slices of shared chunk strings.

    A run keeps one fragment per distinct QID for its whole length (thousands to ~100,000). As one
    string object each they were the largest long-lived objects the sync made, scattered over the
    interpreter's small-object pools among short-lived page objects, which kept those pools from being
    reused; here a batch of fragments is a handful of large strings and each QID one packed integer.
    A replaced fragment leaves its old text in its chunk (replacements are rare: KnowledgeBase changes).
    """

    __slots__ = ("_chunks", "_index")

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._index: dict[int, int] = {}

    def update_from(self, items: Iterable[tuple[int, str]]) -> None:
        """Add or replace fragments."""
        parts: list[str] = []
        places: list[tuple[int, int, int]] = []
        size = 0
        for qid, fragment in items:
            if len(fragment) > _FIELD_MASK:
                raise ValueError(f"KnowledgeBase fragment of QID {qid} is too long ({len(fragment)} characters)")
            if size + len(fragment) > _FIELD_MASK or (parts and size >= _CHUNK_CHARS):
                self._close(parts, places)
                parts, places, size = [], [], 0
            places.append((qid, size, len(fragment)))
            parts.append(fragment)
            size += len(fragment)
        self._close(parts, places)

    def _close(self, parts: list[str], places: list[tuple[int, int, int]]) -> None:
        if not parts:
            return
        chunk = len(self._chunks)
        self._chunks.append("".join(parts))
        for qid, start, length in places:
            self._index[qid] = (chunk << (2 * _FIELD_BITS)) | (start << _FIELD_BITS) | length

    def __getitem__(self, qid: int) -> str:
        place = self._index[qid]
        start = (place >> _FIELD_BITS) & _FIELD_MASK
        return self._chunks[place >> (2 * _FIELD_BITS)][start : start + (place & _FIELD_MASK)]

    def get(self, qid: int, default: str, /) -> str:
        place = self._index.get(qid)
        if place is None:
            return default
        start = (place >> _FIELD_BITS) & _FIELD_MASK
        return self._chunks[place >> (2 * _FIELD_BITS)][start : start + (place & _FIELD_MASK)]

    def __contains__(self, qid: object) -> bool:
        return qid in self._index

    def __len__(self) -> int:
        return len(self._index)
