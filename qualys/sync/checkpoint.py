"""Where an unfinished run stands: written after each page's parts are durably written.

A run that is killed is resumed by the next invocation from its checkpoint: same run id,
same window, each id range from its last written page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from qualys.api.partitions import IdRange
from qualys.errors import SinkError

if TYPE_CHECKING:
    from qualys.sync.held_pages import HeldPage

CHECKPOINT_PATH = "state/checkpoint.json"


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Checkpoint:
    """A run's identity, window and progress.

    ``ranges`` are the id ranges of the host asset search (one unbounded range when
    sequential); each one's ``after`` is the keyset position of its last written page.
    An empty list means the ranges are not planned yet.
    """

    run_id: str
    mode: str
    modified_after: str
    started_at: str
    ranges: list[IdRange] = field(default_factory=list)
    #: The complete run whose state this run's state is built on (None: a baseline).
    previous_run_id: str | None = None
    #: When the last full run started (this run's ``started_at`` when it is full).
    last_full_run_at: str | None = None
    next_part: int = 1
    files: list[str] = field(default_factory=list)
    #: Per written part: [number, first asset id, last asset id, 1 if it has a findings part else 0].
    parts: list[list[int]] = field(default_factory=list)
    devices: int = 0
    findings: int = 0
    pages: int = 0
    skipped: int = 0
    resumes: int = 0

    def to_dict(self) -> dict[str, object]:
        value = dict(self.__dict__)
        value["ranges"] = [r.to_dict() for r in self.ranges]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, object]) -> Checkpoint:
        try:
            fields = dict(value)
            raw_ranges = fields.pop("ranges", None)
            legacy_after = fields.pop("after_id", None)  # checkpoints written before id ranges existed
            if raw_ranges is None:
                ranges = [IdRange.from_dict({"after": legacy_after})] if "after_id" in value else []
            elif isinstance(raw_ranges, list):
                ranges = [IdRange.from_dict(r) for r in raw_ranges]
            else:
                raise TypeError("'ranges' must be a list")
            return cls(**fields, ranges=ranges)  # type: ignore[arg-type]
        except TypeError as exc:
            raise SinkError(f"{CHECKPOINT_PATH} is damaged ({exc}).", "Delete it to start a fresh run.") from exc

    def advance(self, page: HeldPage) -> None:
        """Move past a page whose parts are written."""
        id_range = self.ranges[page.range_index]
        id_range.after = page.position
        id_range.done = page.last
        self.skipped += page.skipped
        self.pages += 1

    def position(self) -> str:
        """Where the run resumes, for the log."""
        return ", ".join(
            "done" if r.done else f"id > {r.after}" + (f" and < {r.below}" if r.below is not None else "")
            for r in self.ranges
        ) or "the start"
