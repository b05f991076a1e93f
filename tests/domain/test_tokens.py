"""Room ids: 12 characters of [a-z0-9], every character equally likely, no repeats. Tokens:
compared and hashed for any str a client can send."""

from __future__ import annotations

import collections
import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from livehub.domain.tokens import hash_token, new_room_id, new_token, same_token


def test_room_ids_are_twelve_lowercase_letters_or_digits_spread_evenly() -> None:
    ids = [new_room_id() for _ in range(36_000)]
    assert all(re.fullmatch(r"[a-z0-9]{12}", room_id) for room_id in ids)
    assert len(set(ids)) == len(ids)
    for position in (0, 11):  # the first and the last digit taken from the random number
        counts = collections.Counter(room_id[position] for room_id in ids)
        assert len(counts) == 36
        # 1,000 expected per character; a fair draw stays within ±20 % (over 6 sigma)
        assert all(800 <= count <= 1200 for count in counts.values()), counts


@given(st.text(st.characters(exclude_categories=())))
def test_any_str_is_compared_and_hashed_never_raising(given_token: str) -> None:
    # surrogates included (st.characters leaves them out by default): aiohttp reads header
    # bytes that are no UTF-8 as surrogates
    expected = new_token()
    assert same_token(given_token, given_token)
    assert not same_token(given_token, expected)
    assert len(hash_token(given_token)) == 64
    assert same_token("\udcff\udcfe", "\udcff\udcfe") and not same_token("\udcff", "\udcfe")


def test_a_utf8_tokens_hash_is_its_utf8_bytes_hash() -> None:
    # owner tokens and API keys stored before keep their hashes
    for token in (new_token(), "ключ"):
        assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
