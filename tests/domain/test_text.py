"""Visible characters (livehub/domain/text.py): what a title needs at least one of."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from livehub.domain.text import has_visible, is_invisible


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \t\u3000",
        "\u200b\u200c\u200d\u200e\u200f",  # zero-width space, (non-)joiners, direction marks
        "\u202a\u202e\u2066\u2069",  # embeddings, overrides and isolates
        "\u2060\u2061\u2064\ufeff\u00ad",  # word joiner, invisible operators, BOM, soft hyphen
        "\u034f\u115f\u1160\u3164\uffa0",  # grapheme joiner, Hangul fillers
        "\ufe00\ufe0f\U000e0100",  # variation selectors
        "\U000e0001\U000e0041\U000e007f",  # tags
        "\u2800",  # Braille blank
        "\x00\x7f\x85",  # controls
    ],
    ids=repr,
)
def test_text_of_invisible_characters_has_none_visible(text: str) -> None:
    assert not has_visible(text)


@pytest.mark.parametrize(
    "text",
    ["a", " a ", "\u200ba", "长", "\u0301", "\U0001f600", "\ue000", "\u2801", "\u06dd\u0661"],
    ids=repr,
)
def test_text_with_a_visible_character_has_one(text: str) -> None:
    assert has_visible(text)


def test_every_format_character_is_invisible() -> None:
    formats = [chr(code) for code in range(sys.maxunicode + 1)]
    formats = [char for char in formats if unicodedata.category(char) == "Cf"]
    assert len(formats) > 150
    assert all(is_invisible(char) for char in formats)
