"""Room ids: 12 characters of [a-z0-9], every character equally likely, no repeats."""

from __future__ import annotations

import collections
import re

from livehub.domain.tokens import new_room_id


def test_room_ids_are_twelve_lowercase_letters_or_digits_spread_evenly() -> None:
    ids = [new_room_id() for _ in range(36_000)]
    assert all(re.fullmatch(r"[a-z0-9]{12}", room_id) for room_id in ids)
    assert len(set(ids)) == len(ids)
    for position in (0, 11):  # the first and the last digit taken from the random number
        counts = collections.Counter(room_id[position] for room_id in ids)
        assert len(counts) == 36
        # 1,000 expected per character; a fair draw stays within ±20 % (over 6 sigma)
        assert all(800 <= count <= 1200 for count in counts.values()), counts
