"""The CSV record cutter's counts (records, fields, blank lines) against a running count.

``compressed.field_counts`` finds the quotes before each newline and separator by a binary
search among the quote positions; the plain rule is a running count of quotes over every
byte. They must agree on any bytes: random fragments of quotes, separators, CR/LF and text.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from curate.errors import CurateError
from curate.ingest.compressed import check_fields, field_counts


def running_count(data: bytes, sep: str, quoted: bool):
    arr = np.frombuffer(data, np.uint8)
    outside = np.cumsum(arr == 34) % 2 == 0 if quoted else np.ones(len(arr), bool)
    ends = np.flatnonzero((arr == 10) & outside)
    if not len(ends) or ends[-1] != len(arr) - 1:
        ends = np.append(ends, len(arr))
    starts = np.concatenate([[0], ends[:-1] + 1])
    before = np.concatenate([[0], np.cumsum((arr == ord(sep)) & outside)])
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (arr[np.minimum(starts, len(arr) - 1)] == 13))
    return starts, before[ends] - before[starts] + 1, blank


@pytest.mark.parametrize("sep,quoted", [(",", True), ("\t", False), (",", False)])
def test_field_counts_agree_with_a_running_count_of_quotes(sep, quoted):
    rng = random.Random(7)
    for _ in range(1000):
        data = "".join(rng.choice('ab,"\n\r\t ') for _ in range(rng.randint(1, 60))).encode()
        got, want = field_counts(data, sep, quoted), running_count(data, sep, quoted)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), data


def test_a_ragged_line_after_quoted_newlines_and_separators_is_named():
    data = b'a,b\n"x,\ny",z\n"p""q",r\nonly one\n'
    with pytest.raises(CurateError, match="line 5 has 1 fields, the header has 2"):
        check_fields("f.csv", data, ",", True, 2, 1)
