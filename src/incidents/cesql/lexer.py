"""The CESQL lexer (the tokens of ``CESQLLexer.g4``), case-insensitive for keywords.

A word (letters, digits, ``_``) is an integer when it is all digits, a keyword when it is
one (in any case), and otherwise a name: the parser decides whether it is an attribute or a
function. Signs are separate tokens; the parser joins a ``-`` or ``+`` written right before
digits to the integer where an operand is expected (``-2147483648`` is a literal, ``4-1`` is
a subtraction). Strings take ``\\'`` (or ``\\"``) and a doubled quote for the quote itself;
any other backslash is kept as written, so ``LIKE`` patterns keep their ``\\%`` and ``\\_``.
Positions count characters from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from incidents.cesql.sql_errors import ParseError

KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})
OPERATORS = ("!=", "<>", ">=", "<=", "=", "<", ">", "*", "/", "%", "+", "-", "(", ")", ",")
_SPACE = " \t\r\n"
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class Kind(StrEnum):
    INTEGER = "integer"
    STRING = "string"
    NAME = "name"
    KEYWORD = "keyword"
    SYMBOL = "symbol"
    END = "end"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # as written (keywords upper-cased), or the string's value
    start: int  # offset of the first character, from 0
    end: int  # offset after the last character

    def shown(self) -> str:
        """The token as an error message names it."""
        if self.kind is Kind.END:
            return "the end of the expression"
        if self.kind is Kind.STRING:
            return f"the string {self.text!r}"
        if self.kind is Kind.INTEGER:
            return f"the integer {self.text}"
        if self.kind is Kind.NAME:
            return f"the name {self.text!r}"
        return f"{self.text!r}" if self.kind is Kind.SYMBOL else self.text

    def is_(self, text: str) -> bool:
        return (self.kind is Kind.SYMBOL or self.kind is Kind.KEYWORD) and self.text == text


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif c in _WORD:
            j = i + 1
            while j < n and text[j] in _WORD:
                j += 1
            word = text[i:j]
            if word.isdigit():
                tokens.append(Token(Kind.INTEGER, word, i, j))
            elif word.upper() in KEYWORDS:
                tokens.append(Token(Kind.KEYWORD, word.upper(), i, j))
            else:
                tokens.append(Token(Kind.NAME, word, i, j))
            i = j
        elif c in "'\"":
            value, j = _string(text, i)
            tokens.append(Token(Kind.STRING, value, i, j))
            i = j
        else:
            for op in OPERATORS:
                if text.startswith(op, i):
                    tokens.append(Token(Kind.SYMBOL, op, i, i + len(op)))
                    i += len(op)
                    break
            else:
                raise ParseError(f"unexpected character {c!r}", i + 1)
    tokens.append(Token(Kind.END, "", n, n))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """The value of the string literal opening at ``start``, and the offset after it."""
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            out.append(nxt if nxt == quote else c + nxt)
            i += 2
        elif c == quote:
            if i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise ParseError(f"unterminated string literal (expected a closing {quote})", start + 1)
