"""KnowledgeBase lookups: whole batches in the background, answered in the order the pages queued them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from qualys.api.kb_lookups import KnowledgeBaseLookups
from qualys.api.knowledge_base import KbEntry
from qualys_simulator.server import Fault, QualysSimulator
from tests.helpers import PASSWORD, USER, client_for, estate_in_past


@pytest.fixture
def simulator() -> Iterator[QualysSimulator]:
    with QualysSimulator(estate_in_past(60, seed=5), username=USER, password=PASSWORD) as sim:
        yield sim


@pytest.fixture
def lookups(simulator: QualysSimulator) -> Iterator[KnowledgeBaseLookups]:
    """Lookups in batches of 5 through a client of the simulator."""
    with client_for(simulator) as client:
        lookups = KnowledgeBaseLookups(client, batch_size=5)
        try:
            yield lookups
        finally:
            lookups.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def warmed_up(lookups: KnowledgeBaseLookups, simulator: QualysSimulator) -> list[int]:
    """One answered call first, so the client has learnt the concurrency limit (it starts at 1 call);
    returns ten other QIDs, with the simulator's concurrency record cleared."""
    qids = sorted(simulator.estate.kb)[:11]
    lookups.wait_for(lookups.queue([qids.pop()], known=set()))
    simulator.peak_concurrency.clear()
    return qids


def requested_ids(simulator: QualysSimulator) -> list[list[int]]:
    return [
        [int(qid) for qid in record.params["ids"].split(",")]
        for record in simulator.requests
        if record.endpoint == "kb"
    ]


def test_tickets_count_new_qids_and_only_whole_batches_go_out_until_a_page_must_be_answered(
    simulator: QualysSimulator, lookups: KnowledgeBaseLookups
) -> None:
    qids = sorted(simulator.estate.kb)[:8]
    first = lookups.queue(qids[:3], known=set())
    assert first == 3
    assert lookups.pending and not lookups.answered(first)
    # Repeated and known QIDs take no number; the fifth new QID fills a batch, which goes out.
    second = lookups.queue(qids[:3] + qids[3:7], known={qids[6]})
    assert second == 6
    entries = lookups.wait_for(first)
    assert lookups.answered(first) and not lookups.answered(second)
    assert sorted(entry.qid for entry in entries) == qids[:5]
    assert requested_ids(simulator) == [qids[:5]]
    # The sixth QID is in no whole batch: waiting for it sends the partial batch.
    rest = lookups.wait_for(second)
    assert [entry.qid for entry in rest] == [qids[5]]
    assert lookups.answered(second) and not lookups.pending
    assert requested_ids(simulator) == [qids[:5], [qids[5]]]
    # A QID Qualys does not know comes back as an entry marked unknown (its findings keep the QID).
    unknown = max(simulator.estate.kb) + 1
    third = lookups.queue([unknown], known=set())
    [entry] = lookups.wait_for(third)
    assert (entry.qid, entry.known) == (unknown, False) and lookups.answered(third)


def test_a_page_never_waits_for_batches_queued_after_it(simulator: QualysSimulator, lookups: KnowledgeBaseLookups) -> None:
    qids = warmed_up(lookups, simulator)
    simulator.inject(Fault("kb", "slow", wait_seconds=0.3))
    earlier = lookups.queue(qids[:5], known=set())
    wait_until(lambda: simulator.peak_concurrency.get("kb", 0) >= 1)  # the first batch is at the server
    simulator.inject(Fault("kb", "slow", wait_seconds=1.5))
    later = lookups.queue(qids[5:], known=set())
    entries = lookups.wait_for(earlier)
    assert lookups.answered(earlier)
    assert not lookups.answered(later), "waited for a batch queued after the page"
    assert sorted(entry.qid for entry in entries) == qids[:5]
    assert sorted(entry.qid for entry in lookups.wait_for(later)) == qids[5:]
    assert not lookups.pending


def test_a_batch_that_finishes_first_waits_for_the_earlier_one_before_its_pages_count_as_answered(
    simulator: QualysSimulator, lookups: KnowledgeBaseLookups
) -> None:
    qids = warmed_up(lookups, simulator)
    simulator.inject(Fault("kb", "slow", wait_seconds=2))
    earlier = lookups.queue(qids[:5], known=set())
    wait_until(lambda: simulator.peak_concurrency.get("kb", 0) >= 1)
    later = lookups.queue(qids[5:], known=set())
    entries: list[KbEntry] = []
    wait_until(lambda: bool(entries.extend(lookups.ready()) or entries))  # the later batch is back
    assert sorted(entry.qid for entry in entries) == qids[5:], "finished entries are handed back at once"
    assert not lookups.answered(later) and not lookups.answered(earlier)
    assert sorted(entry.qid for entry in lookups.wait_for(later)) == qids[:5]
    assert lookups.answered(later)
