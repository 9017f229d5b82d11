"""Spans in, rows committed: normalize, price, count each provider request once, write.

:class:`Ingestor` is the shared back half of both doors (the embedded exporter and the
OTLP receiver). One call to :meth:`Ingestor.ingest` is one transaction: either the whole
batch is committed or nothing is, so a caller that sees an exception may send it again,
and duplicates are no-ops in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from llmlens import semconv as sc
from llmlens.collector._lineage import Lineage, NamedSpan, named_span
from llmlens.collector._sources import SCOPE_PROVIDERS
from llmlens.collector.normalize import Redactor, normalize
from llmlens.collector.pricing import Pricer, row_cost
from llmlens.collector.record import SpanRecord
from llmlens.collector.store import SpanRow, Store


@dataclass
class IngestResult:
    """What happened to one batch of spans."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    not_llm: int = 0  # spans that are not provider requests (workflow, HTTP, DB spans…)
    aggregates: int = 0  # framework spans whose usage a child LLM span already reports
    unpriced: int = 0  # rows with no known price: cost_usd is NULL

    def __iadd__(self, other: IngestResult) -> IngestResult:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def _is_provider_level(row: SpanRow) -> bool:
    return row["attributes"].get("otel.scope.name") in SCOPE_PROVIDERS


_LLMLENS_ROWS = frozenset({sc.ROLE_ATTEMPT, sc.ROLE_REQUEST})


def _is_llmlens(row: SpanRow) -> bool:
    return row["attributes"].get(sc.SPAN_ROLE) in _LLMLENS_ROWS


class Ingestor:
    """Turns batches of :class:`SpanRecord` into committed rows.

    >>> Ingestor(open_store(url)).ingest(records)  # doctest: +SKIP
    IngestResult(received=3, stored=1, duplicates=0, not_llm=2, aggregates=0, unpriced=0)
    """

    def __init__(
        self,
        store: Store,
        pricer: Pricer | None = None,
        *,
        capture_content: bool = False,
        redact: Redactor | None = None,
        max_content_chars: int = 4096,
    ) -> None:
        self.store = store
        self.pricer = pricer if pricer is not None else Pricer.from_env()
        self.capture_content = capture_content
        if capture_content and redact is None:
            from llmlens._redact import redact_text

            redact = redact_text
        self.redact = redact
        self.max_content_chars = max_content_chars
        # Parent links and names of spans this ingestor saw (see _lineage): a row's task
        # comes from its nearest named ancestor, which may arrive in another batch.
        self.lineage = Lineage()
        self._names: list[NamedSpan] = []
        self._unresolved: list[SpanRow] = []

    def rows(self, records: Sequence[SpanRecord]) -> tuple[list[SpanRow], IngestResult]:
        """Normalize and price a batch without writing it.

        Rows whose task no ancestor seen so far names keep a NULL task; :meth:`ingest`
        asks the store, which also fills it later when the name arrives.
        """
        result = IngestResult(received=len(records))
        named = self.lineage.observe(records)
        rows: list[SpanRow] = []
        for record in records:
            row = normalize(record, capture_content=self.capture_content, redact=self.redact,
                            max_content_chars=self.max_content_chars)
            if row is None:
                result.not_llm += 1
                continue
            row["cost_usd"] = cost = row_cost(self.pricer, row)
            if cost is None:
                result.unpriced += 1
            rows.append(row)
        kept = self._count_leaves_once(rows)
        result.aggregates = len(rows) - len(kept)
        if named:
            # Rows carry their own task; the names of other spans (structure, and framework
            # spans dropped for their child's row) are kept apart.
            row_ids = {(r["trace_id"], r["span_id"]) for r in kept}
            self._names = [named_span(record, name) for record, name in named
                           if (record.trace_id, record.span_id) not in row_ids]
        else:
            self._names = []
        nearest = self.lineage.nearest_name
        self._unresolved = unresolved = []
        for row in kept:
            if row["task"] is None and row["parent_span_id"] is not None:
                name, complete = nearest(row["trace_id"], row["parent_span_id"])
                if name is not None:
                    row["task"] = name
                elif not complete:
                    unresolved.append(row)
        return kept, result

    def _count_leaves_once(self, rows: list[SpanRow]) -> list[SpanRow]:
        """Drop a framework span whose child is the LLM request's own span: one request, one row.

        Children end before their parents, so a child is in this batch or already stored.
        An llmlens attempt is never the one dropped: it carries the task and prompt version,
        so a third-party child under it is dropped instead.
        """
        # With or without usage: a failed request is one row too, not a framework span and
        # the provider span under it.
        spans = [(r["trace_id"], r["span_id"]) for r in rows]  # each key built once, used thrice
        if not spans:
            return rows
        candidates = set(spans)
        parents_with_leaf: set[tuple[str, str]] = set()
        for row in rows:
            parent = row["parent_span_id"]
            if parent:
                key = (row["trace_id"], parent)
                if key in candidates:
                    parents_with_leaf.add(key)
        # No lookup for llmlens attempts (a provider SDK span under one is marked merged in
        # the application and never becomes a row) nor for spans of provider-level
        # instrumentations: they wrap one HTTP request and have no LLM call below them.
        outside = [span for span, r in zip(spans, rows, strict=True)
                   if span not in parents_with_leaf and not _is_llmlens(r) and not _is_provider_level(r)]
        if outside:
            parents_with_leaf |= self.store.parent_links(t for t, _ in outside) & set(outside)
        if not parents_with_leaf:
            return rows
        llmlens_parents = {span for span, r in zip(spans, rows, strict=True)
                           if span in parents_with_leaf and _is_llmlens(r)}
        kept = []
        for span, row in zip(spans, rows, strict=True):
            if span in parents_with_leaf and span not in llmlens_parents:
                continue
            if (row["trace_id"], row["parent_span_id"]) in llmlens_parents:
                continue
            kept.append(row)
        return kept

    def ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        """Normalize, price and commit a batch in one transaction.

        Raises :class:`~llmlens.collector.store.StoreUnavailable` when the database is
        down; nothing of the batch is committed then.
        """
        rows, result = self.rows(records)
        names, self._names = self._names, []
        unresolved, self._unresolved = self._unresolved, []
        if rows or names:
            # One transaction: the rows, the names, the tasks names give to rows stored before.
            result.stored = self.store.insert_rows(rows, names=names, unresolved=unresolved)
            result.duplicates = len(rows) - result.stored
        return result
