"""Latency histograms survive their blob: whatever the bins, in both of its forms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmlens.collector.store._histogram import (
    MAX_BIN,
    add_blob,
    decode,
    encode,
    merged,
    new_histogram,
    percentile_bins,
)

_bins = st.dictionaries(st.integers(0, MAX_BIN), st.integers(0, 2**40), max_size=60)


@given(_bins)
def test_a_histogram_reads_back_as_its_non_empty_bins(bins: dict[int, int]) -> None:
    assert list(decode(encode(bins))) == sorted((b, n) for b, n in bins.items() if n)


@given(st.lists(_bins, max_size=8))
def test_adding_blobs_equals_adding_the_histograms(histograms: list[dict[int, int]]) -> None:
    summed = new_histogram()
    for bins in histograms:
        add_blob(summed, encode(bins))
    want = [0] * (MAX_BIN + 1)
    for bins in histograms:
        for b, n in bins.items():
            want[b] += n
    assert summed == want


@given(_bins, st.dictionaries(st.integers(0, MAX_BIN), st.integers(-5, 2**40), max_size=60))
def test_merging_a_change_into_a_stored_histogram_adds_bin_by_bin(stored: dict[int, int],
                                                                   change: dict[int, int]) -> None:
    want = dict(stored)
    for b, n in change.items():
        want[b] = want.get(b, 0) + n
    blob = merged(encode(stored) or None, change)
    assert list(decode(blob)) == sorted((b, n) for b, n in want.items() if n)
    assert blob == encode(want), "a merge writes the same form as encoding the sum afresh"


@given(st.integers(0, 400), st.lists(st.integers(1, 2**40), min_size=1, max_size=60), st.data())
def test_adding_values_inside_a_dense_histogram_keeps_its_form(low: int, counts: list[int],
                                                               data: st.DataObject) -> None:
    # The merge into an hour or a day: new values within the bins the stored one spans.
    stored = {low + i: n for i, n in enumerate(counts)}
    change = data.draw(st.dictionaries(st.integers(low, low + len(counts) - 1), st.integers(1, 2**30),
                                       min_size=1, max_size=20))
    want = dict(stored)
    for b, n in change.items():
        want[b] += n
    assert merged(encode(stored), change) == encode(want)


def test_scattered_values_pack_sparse_and_filled_ranges_pack_dense() -> None:
    scattered = encode({3: 1, 400: 2})
    filled = encode({**dict.fromkeys(range(200, 260, 3), 5), 300: 1})
    assert scattered[0] == 0 and len(scattered) == 1 + 2 * 10
    assert filled[0] == 1 and len(filled) == 1 + 2 + 101 * 8


def test_percentiles_are_the_first_bin_whose_cumulative_count_reaches_the_rank() -> None:
    hist = new_histogram()
    hist[10], hist[20], hist[30] = 50, 45, 5
    assert percentile_bins(hist, (0.5, 0.95, 0.951, 1.0)) == (100, [10, 20, 30, 30])
    assert percentile_bins(new_histogram(), (0.5,)) == (0, [None])
