"""What counts as a visible character in text people read (room titles, chat lines, display
names), and the control characters such text may not carry.

A character is invisible when it is whitespace, a control character (Unicode category Cc), a
format character (Cf: zero-width spaces and joiners, direction marks and overrides, the byte
order mark, word joiners, tags ...) or one of the other code points Unicode lists as
default-ignorable (renderers draw nothing for them: variation selectors, Hangul fillers, the
combining grapheme joiner ...), or the blank Braille cell. A title of only such characters
shows as blank.
"""

from __future__ import annotations

import re
import unicodedata

#: the categories that draw nothing: controls and format characters (the space separators
#: Zs, Zl, Zp are whitespace too)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
#: the default-ignorable code points (Unicode's DerivedCoreProperties.txt) that are no Cf,
#: and U+2800 BRAILLE PATTERN BLANK; inclusive ranges
_OTHER_INVISIBLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors (and the vowel separator, Cf)
    (0x2065, 0x2065),  # reserved among the invisible operators
    (0x2800, 0x2800),  # Braille pattern blank
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved before the interlinear annotation characters
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
)


def is_invisible(char: str) -> bool:
    """Whether the character ``char`` draws nothing (see the module's docstring)."""
    if char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _OTHER_INVISIBLE)


def has_visible(text: str) -> bool:
    """Whether ``text`` has at least one visible character."""
    return not all(map(is_invisible, text))


#: C0 controls but tab and line feed, DEL and the C1 controls: what a chat line may not carry
_LINE_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: every C0 control, DEL and the C1 controls: what a one-line text (a name) may not carry
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control(text: str, *, lines: bool = False) -> bool:
    """Whether ``text`` carries a control character (``lines``: tab and line feed allowed)."""
    return (_LINE_CONTROLS if lines else _CONTROLS).search(text) is not None
