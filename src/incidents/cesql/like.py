"""``LIKE`` patterns (section 3.4.3), compiled once into a matcher.

``%`` is any run of characters, ``_`` any one character, ``\\%`` and ``\\_`` the characters
themselves; every other character, a backslash before anything else included, is itself.
Matching is case-sensitive and by Unicode code point.

No regular expression with ``.*`` is ever built, so no pattern can backtrack
catastrophically: the pattern is cut at its ``%``s into segments; the first must match at
the start, the last at the end, and each one between is found leftmost after the one
before (which is optimal for ``%``). Plain prefix, suffix, contains and equality patterns
become ``str`` methods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[str], bool]
_ANY = None  # a ``_`` in a segment


@dataclass(frozen=True)
class _Segment:
    """The characters between two ``%``; ``_ANY`` stands for ``_``."""

    chars: tuple[str | None, ...]

    @property
    def plain(self) -> str | None:
        """The segment as a string when it holds no ``_``."""
        if _ANY in self.chars:
            return None
        return "".join(c for c in self.chars if c is not None)

    def regex(self) -> re.Pattern[str]:
        return re.compile(
            "".join("." if c is None else re.escape(c) for c in self.chars), re.DOTALL
        )


def _segments(pattern: str) -> list[_Segment]:
    segments: list[_Segment] = []
    current: list[str | None] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            current.append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            segments.append(_Segment(tuple(current)))
            current = []
        else:
            current.append(_ANY if c == "_" else c)
        i += 1
    segments.append(_Segment(tuple(current)))
    return segments


def compile_like(pattern: str) -> Matcher:
    segments = _segments(pattern)
    plains = [s.plain for s in segments]
    if all(p is not None for p in plains):
        texts = [p for p in plains if p is not None]
        if len(texts) == 1:
            whole = texts[0]
            return lambda s: s == whole
        if len(texts) == 2:
            head, tail = texts
            least = len(head) + len(tail)
            if not tail:
                return lambda s: s.startswith(head)
            if not head:
                return lambda s: s.endswith(tail)
            return lambda s: len(s) >= least and s.startswith(head) and s.endswith(tail)
        if len(texts) == 3 and not texts[0] and not texts[2]:
            middle = texts[1]
            return lambda s: middle in s
    return _General(segments)


class _Part:
    def __init__(self, segment: _Segment) -> None:
        self.size = len(segment.chars)
        self.text = segment.plain
        self.rx = segment.regex() if self.text is None else None

    def at(self, s: str, i: int) -> bool:
        if self.rx is None:
            return s.startswith(self.text or "", i)
        return self.rx.match(s, i) is not None

    def find(self, s: str, start: int, end: int) -> int:
        if self.rx is None:
            return s.find(self.text or "", start, end)
        found = self.rx.search(s, start, end)
        return -1 if found is None else found.start()


class _General:
    def __init__(self, segments: list[_Segment]) -> None:
        parts = [_Part(s) for s in segments]
        self.first, self.last = parts[0], parts[-1]
        self.middle = parts[1:-1]
        self.whole = len(parts) == 1

    def __call__(self, s: str) -> bool:
        first, last = self.first, self.last
        if self.whole:
            return len(s) == first.size and first.at(s, 0)
        end = len(s) - last.size
        if end < first.size or not first.at(s, 0) or not last.at(s, end):
            return False
        pos = first.size
        for part in self.middle:
            found = part.find(s, pos, end)
            if found < 0:
                return False
            pos = found + part.size
        return True
