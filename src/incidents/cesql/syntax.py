"""The parsed expression: a tree of frozen nodes, each with its position (characters from 1)
and its depth (1 for a leaf), which the parser bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

from incidents.cesql.sql_errors import Value

ARITHMETIC = ("*", "/", "%", "+", "-")
COMPARISON = ("=", "!=", "<>", "<", "<=", ">", ">=")
LOGIC = ("AND", "OR", "XOR")


@dataclass(frozen=True)
class Node:
    position: int
    depth: int = field(default=1, kw_only=True)


@dataclass(frozen=True)
class Literal(Node):
    value: Value


@dataclass(frozen=True)
class Attribute(Node):
    name: str  # lower case


@dataclass(frozen=True)
class Exists(Node):
    name: str


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # one of ARITHMETIC or COMPARISON
    left: Node
    right: Node


@dataclass(frozen=True)
class Logic(Node):
    """``AND``, ``OR`` or ``XOR`` over two or more parts, left to right."""

    op: str
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Like(Node):
    operand: Node
    pattern: str  # as written in the literal, escapes included
    negated: bool


@dataclass(frozen=True)
class In(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True)
class Call(Node):
    name: str  # upper case
    args: tuple[Node, ...]


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Not | Negate | Like):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Logic):
        return node.parts
    if isinstance(node, In):
        return (node.operand, *node.items)
    if isinstance(node, Call):
        return node.args
    return ()
