"""A recursive-descent parser for CESQL v1.0.0 (``CESQLParser.g4``), by the precedence of
section 3.6, tightest first: function calls and literals; ``NOT`` and unary ``-``; ``LIKE``
and ``IN`` (``EXISTS`` is an operand); ``* / %``; ``+ -``; comparisons; ``AND``, ``OR``,
``XOR``. Operators of equal precedence apply left to right (section 3.6): so
``a OR b AND c`` is ``(a OR b) AND c``. A run of one logic operator becomes one node.

Every parse error names its position and what was expected. ``Limits`` bounds the length of
the text, the depth of the tree (which also bounds the parser's own recursion) and the
length of an ``IN`` list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from incidents.cesql.lexer import Kind, Token, tokenize
from incidents.cesql.sql_errors import ParseError
from incidents.cesql.syntax import (
    ARITHMETIC,
    COMPARISON,
    LOGIC,
    Attribute,
    Binary,
    Call,
    Exists,
    In,
    Like,
    Literal,
    Logic,
    Negate,
    Node,
    Not,
    children,
)
from incidents.cesql.values import INT_MAX, INT_MIN

_ATTRIBUTE = re.compile(r"[A-Za-z0-9]+")
_FUNCTION = re.compile(r"[A-Za-z][A-Za-z_]*")


@dataclass(frozen=True)
class Limits:
    max_length: int | None = None  # characters of the expression
    max_depth: int = 64  # of the tree: ``a = 1`` is 2 deep; also bounds the recursion
    max_in: int | None = None  # values in one IN list


def parse(text: str, limits: Limits) -> Node:
    if limits.max_length is not None and len(text) > limits.max_length:
        raise ParseError(
            f"the expression has {len(text)} characters; at most {limits.max_length}",
            limits.max_length + 1,
        )
    parser = _Parser(tokenize(text), limits)
    node = parser.expression()
    if parser.tok.kind is not Kind.END:
        parser.fail("an operator or the end of the expression")
    return node


class _Parser:
    def __init__(self, tokens: list[Token], limits: Limits) -> None:
        self.tokens, self.limits, self.i, self.level = tokens, limits, 0, 0
        self.tok = tokens[0]

    def advance(self) -> Token:
        tok = self.tok
        self.i += 1
        self.tok = self.tokens[min(self.i, len(self.tokens) - 1)]
        return tok

    def peek(self) -> Token:
        return self.tokens[min(self.i + 1, len(self.tokens) - 1)]

    def fail(self, expected: str, tok: Token | None = None) -> NoReturn:
        tok = tok or self.tok
        raise ParseError(f"expected {expected}, found {tok.shown()}", tok.start + 1)

    def expect(self, symbol: str, expected: str) -> Token:
        if not self.tok.is_(symbol):
            self.fail(expected)
        return self.advance()

    def made(self, node: Node) -> Node:
        """``node`` with its depth, refused when deeper than the limit."""
        depth = 1 + max((c.depth for c in children(node)), default=0)
        if depth > self.limits.max_depth:
            raise ParseError(
                f"the expression nests more than {self.limits.max_depth} deep", node.position
            )
        object.__setattr__(node, "depth", depth)
        return node

    def expression(self) -> Node:
        left = self.comparison()
        while self.tok.kind is Kind.KEYWORD and self.tok.text in LOGIC:
            op = self.advance()
            if isinstance(left, Logic) and left.op == op.text:
                position, parts = left.position, list(left.parts)
            else:
                position, parts = op.start + 1, [left]
            parts.append(self.comparison())
            while self.tok.is_(op.text):  # the whole run, then one node: linear in its length
                self.advance()
                parts.append(self.comparison())
            left = self.made(Logic(position, op.text, tuple(parts)))
        return left

    def comparison(self) -> Node:
        left = self.additive()
        while self.tok.kind is Kind.SYMBOL and self.tok.text in COMPARISON:
            op = self.advance()
            left = self.made(Binary(op.start + 1, op.text, left, self.additive()))
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while self.tok.is_("+") or self.tok.is_("-"):
            op = self.advance()
            left = self.made(Binary(op.start + 1, op.text, left, self.multiplicative()))
        return left

    def multiplicative(self) -> Node:
        left = self.postfix()
        while self.tok.kind is Kind.SYMBOL and self.tok.text in ARITHMETIC[:3]:
            op = self.advance()
            left = self.made(Binary(op.start + 1, op.text, left, self.postfix()))
        return left

    def postfix(self) -> Node:
        """An operand followed by any number of ``[NOT] LIKE 'pattern'`` and
        ``[NOT] IN (...)``, applied left to right."""
        node = self.unary()
        while True:
            negated = self.tok.is_("NOT") and (self.peek().is_("LIKE") or self.peek().is_("IN"))
            if negated:
                self.advance()
            if self.tok.is_("LIKE"):
                at = self.advance()
                if self.tok.kind is not Kind.STRING:
                    self.fail("a string literal after LIKE (the pattern is a literal)")
                pattern = self.advance().text
                node = self.made(Like(at.start + 1, node, pattern, negated))
            elif self.tok.is_("IN"):
                at = self.advance()
                items = self.set_items()
                node = self.made(In(at.start + 1, node, items, negated))
            else:
                return node

    def set_items(self) -> tuple[Node, ...]:
        self.expect("(", "'(' and a list of values after IN")
        items = [self.expression()]
        while self.tok.is_(","):
            self.advance()
            items.append(self.expression())
            if self.limits.max_in is not None and len(items) > self.limits.max_in:
                raise ParseError(
                    f"an IN list holds at most {self.limits.max_in} values", items[-1].position
                )
        self.expect(")", "',' or ')' to close the IN list")
        return tuple(items)

    def unary(self) -> Node:
        self.level += 1
        try:
            if self.level > self.limits.max_depth:
                raise ParseError(
                    f"the expression nests more than {self.limits.max_depth} deep",
                    self.tok.start + 1,
                )
            tok = self.tok
            if tok.is_("NOT"):
                self.advance()
                return self.made(Not(tok.start + 1, self.unary()))
            if tok.is_("-") or tok.is_("+"):
                after = self.peek()
                if after.kind is Kind.INTEGER and after.start == tok.end:
                    self.advance()
                    return self.integer(self.advance(), tok)
                if tok.text == "-":
                    self.advance()
                    return self.made(Negate(tok.start + 1, self.unary()))
            return self.primary()
        finally:
            self.level -= 1

    def integer(self, tok: Token, sign: Token | None = None) -> Node:
        digits = tok.text.lstrip("0") or "0"
        start = (sign or tok).start + 1
        value = int(digits) if len(digits) <= 10 else INT_MAX + 1
        if sign is not None and sign.text == "-":
            value = -value
        if not INT_MIN <= value <= INT_MAX:
            raise ParseError(
                f"the integer {sign.text if sign else ''}{tok.text} is outside the 32-bit range"
                f" ({INT_MIN} to {INT_MAX})",
                start,
            )
        return Literal(start, value)

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind is Kind.INTEGER:
            return self.integer(self.advance())
        if tok.kind is Kind.STRING:
            return Literal(self.advance().start + 1, tok.text)
        if tok.is_("TRUE") or tok.is_("FALSE"):
            return Literal(self.advance().start + 1, tok.text == "TRUE")
        if tok.is_("EXISTS"):
            self.advance()
            return Exists(tok.start + 1, self.attribute_name("an attribute name after EXISTS"))
        if tok.is_("("):
            self.advance()
            inner = self.expression()
            self.expect(")", "')' to close the '(' at position " + str(tok.start + 1))
            return inner
        if tok.kind is Kind.NAME and self.peek().is_("("):
            return self.call()
        if tok.kind is Kind.NAME:
            return Attribute(tok.start + 1, self.attribute_name("an expression"))
        self.fail("an expression")

    def attribute_name(self, expected: str) -> str:
        tok = self.tok
        if tok.kind is not Kind.NAME:
            self.fail(expected)
        if not _ATTRIBUTE.fullmatch(tok.text):
            raise ParseError(
                f"{tok.text!r} is not an attribute name (letters and digits only)", tok.start + 1
            )
        return self.advance().text.lower()

    def call(self) -> Node:
        name = self.advance()
        if not _FUNCTION.fullmatch(name.text):
            raise ParseError(
                f"{name.text!r} is not a function name (a letter, then letters and '_')",
                name.start + 1,
            )
        self.advance()  # (
        args: list[Node] = []
        if not self.tok.is_(")"):
            args.append(self.expression())
            while self.tok.is_(","):
                self.advance()
                args.append(self.expression())
        self.expect(")", f"',' or ')' to close the arguments of {name.text.upper()}")
        return self.made(Call(name.start + 1, name.text.upper(), tuple(args)))
