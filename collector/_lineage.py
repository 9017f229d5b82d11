"""A row's task from its nearest named ancestor, even when that ancestor is in another batch.

Frameworks name the work on a span above the provider request: an OpenLLMetry workflow,
an OpenInference chain or agent, a Langfuse trace, a pydantic-ai agent run. Spans reach
the collector in export batches, children first (a child ends before its parent), so the
name often arrives in a later batch than the request it names, or, from another process
of a distributed trace, in an earlier one, or at another collector worker.

Three parts, each covering what the one before cannot:

1. :class:`Lineage`, a bounded LRU of ``(trace_id, span_id) -> (parent_span_id, name)``
   for every span this process saw, walks a row's ancestors in memory: exact, and enough
   for a trace whose spans all reach one worker.
2. Named spans are also written to the store (``llm_trace_names``), in the transaction
   that writes the batch's rows. A row whose ancestry leaves what this worker saw takes
   the innermost stored name of its trace whose time span contains the row's start (a
   descendant runs inside its ancestor), so other workers and a restarted collector agree.
3. A named span that arrives after its rows fills, in the same transaction, the task of
   the stored rows of its trace that have none and started within it. Nearer ancestors
   end first and so arrive first; a batch's names are applied innermost first.

Rows keep a NULL task when no ancestor names one (a request outside any named work).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from llmlens.collector.normalize import span_name_for_task
from llmlens.collector.record import SpanRecord

# ~100 bytes an entry: 200,000 spans (a few minutes of a busy service) is ~20 MiB.
DEFAULT_CAPACITY: Final = 200_000
# Deeper than any real agent nesting; stops a walk around a (malformed) parent cycle.
_MAX_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class NamedSpan:
    """A span that names the work beneath it, as stored in ``llm_trace_names``."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time: datetime
    end_time: datetime


def named_span(record: SpanRecord, name: str) -> NamedSpan:
    """The :class:`NamedSpan` of a span that names its work."""
    start = record.start_time_unix_nano
    return NamedSpan(record.trace_id, record.span_id, record.parent_span_id, name,
                     datetime.fromtimestamp(start / 1e9, tz=UTC),
                     datetime.fromtimestamp(max(record.end_time_unix_nano, start) / 1e9, tz=UTC))


class Lineage:
    """Parent links and names of recently seen spans, oldest forgotten first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._links: OrderedDict[tuple[str, str], tuple[str | None, str | None]] = OrderedDict()
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._links)

    def observe(self, records: Iterable[SpanRecord]) -> list[tuple[SpanRecord, str]]:
        """Remember every span's parent and name; return the spans that name their work."""
        links = self._links
        named: list[tuple[SpanRecord, str]] = []
        for record in records:
            name = span_name_for_task(record)
            key = (record.trace_id, record.span_id)
            links[key] = (record.parent_span_id, name)
            links.move_to_end(key)
            if name is not None:
                named.append((record, name))
        while len(links) > self._capacity:
            links.popitem(last=False)
        return named

    def nearest_name(self, trace_id: str, parent_span_id: str | None) -> tuple[str | None, bool]:
        """(the nearest ancestor's name, whether the walk reached the root).

        ``(None, True)``: every ancestor is known and none names the work. ``(None, False)``:
        the walk left what this process saw; the store may know more.
        """
        links = self._links
        span_id = parent_span_id
        for _ in range(_MAX_DEPTH):
            if span_id is None:
                return None, True
            link = links.get((trace_id, span_id))
            if link is None:
                return None, False
            parent, name = link
            if name is not None:
                return name, True
            span_id = parent
        return None, True
