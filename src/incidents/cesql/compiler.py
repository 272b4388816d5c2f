"""The parsed tree compiled into nested closures, one per node, so evaluating an expression
is a few Python calls and no tree walking, dispatch or allocation on the way.

A closure takes the event's attributes and returns a value, or raises an
``EvaluationError``: evaluation is fail-fast (section 4.1), as section 1.2 asks of a filter
and as the TCK expects (``true AND (1 != 1 / 0)`` is ``false`` with a math error: an
operator whose operand failed has its own zero value). Implicit casts follow section 3.7:
``=`` and ``!=`` cast the left operand to the right one's type, ``IN`` casts the values to
the left operand's type, every other operator and function casts to its parameter types.
Operands whose type is already right are not cast (the common case costs a ``type()``).
"""

from __future__ import annotations

from incidents.cesql import syntax as ast
from incidents.cesql.arithmetic import ARITHMETIC, ORDER, Attributes, Eval, negate
from incidents.cesql.functions import MAX_STRING, resolve, too_long
from incidents.cesql.like import compile_like
from incidents.cesql.sql_errors import (
    CastError,
    EvaluationError,
    MissingAttributeError,
    MissingFunctionError,
    Value,
)
from incidents.cesql.values import (
    CAST,
    CAST_TO,
    PYTHON_TYPE,
    Type,
    attribute_value,
    to_bool,
    to_str,
)


def static_type(node: ast.Node) -> Type | None:
    """The type a node always has; None for an attribute (known only when evaluated)."""
    if isinstance(node, ast.Literal):
        return PYTHON_TYPE_OF[type(node.value)]
    if isinstance(node, ast.Attribute):
        return None
    if isinstance(node, ast.Negate):
        return Type.INTEGER
    if isinstance(node, ast.Binary) and node.op in ast.ARITHMETIC:
        return Type.INTEGER
    if isinstance(node, ast.Call):
        fn = resolve(node.name, len(node.args))
        return Type.BOOLEAN if fn is None else fn.returns
    return Type.BOOLEAN


PYTHON_TYPE_OF = {python: cesql for cesql, python in PYTHON_TYPE.items()}


def compile_node(node: ast.Node) -> Eval:
    if isinstance(node, ast.Literal):
        value = node.value
        return lambda env: value
    if isinstance(node, ast.Attribute):
        return _attribute(node.name)
    if isinstance(node, ast.Exists):
        name = node.name
        return lambda env: env.get(name) is not None
    if isinstance(node, ast.Not):
        return _not(compile_node(node.operand))
    if isinstance(node, ast.Negate):
        return negate(compile_node(node.operand))
    if isinstance(node, ast.Binary):
        if node.op in ast.ARITHMETIC:
            return ARITHMETIC[node.op](compile_node(node.left), compile_node(node.right))
        if node.op in ("=", "!=", "<>"):
            return _equality(node)
        return ORDER[node.op](compile_node(node.left), compile_node(node.right))
    if isinstance(node, ast.Logic):
        return _logic(node.op, [compile_node(p) for p in node.parts])
    if isinstance(node, ast.Like):
        return _like(node)
    if isinstance(node, ast.In):
        return _in(node)
    if isinstance(node, ast.Call):
        return _call(node)
    raise TypeError(f"not a CESQL node: {node!r}")  # pragma: no cover  # the parser's nodes


def _attribute(name: str) -> Eval:
    def attribute(env: Attributes) -> Value:
        raw = env.get(name)
        if type(raw) is str:
            return raw
        return _read(name, raw)

    return attribute


def _read(name: str, raw: object) -> Value:
    """An attribute's value that is not a str (the slow path of every attribute read)."""
    if raw is None:
        raise MissingAttributeError(f"the event has no attribute {name!r}")
    return attribute_value(raw)


def _string_read(name: str, raw: object) -> str:
    return to_str(_read(name, raw))


def _not(operand: Eval) -> Eval:
    def not_(env: Attributes) -> Value:
        v = operand(env)
        return not (v if type(v) is bool else to_bool(v))

    return not_


def _equality(node: ast.Binary) -> Eval:
    left, equal = compile_node(node.left), node.op == "="
    if isinstance(node.right, ast.Literal):  # the type to cast to is known now
        wanted = node.right.value
        kind = type(wanted)
        cast = CAST[kind]
        if kind is str and isinstance(node.left, ast.Attribute):  # the common filter
            name = node.left.name

            def attribute_equals(env: Attributes) -> Value:
                raw = env.get(name)
                text = raw if type(raw) is str else _string_read(name, raw)
                return (text == wanted) is equal

            return attribute_equals

        def equals_literal(env: Attributes) -> Value:
            x = left(env)
            if type(x) is not kind:
                x = cast(x)
            return (x == wanted) is equal

        return equals_literal
    right = compile_node(node.right)

    def equals(env: Attributes) -> Value:
        x, y = left(env), right(env)
        if type(x) is not type(y):
            x = CAST[type(y)](x)
        return (x == y) is equal

    return equals


def _logic(op: str, parts: list[Eval]) -> Eval:
    if op == "XOR":

        def xor(env: Attributes) -> Value:
            odd = False
            for part in parts:
                v = part(env)
                if v if type(v) is bool else to_bool(v):
                    odd = not odd
            return odd

        return xor
    stop = op == "OR"  # the value that ends the run: true for OR, false for AND
    if len(parts) == 2:
        first, second = parts

        def pair(env: Attributes) -> Value:
            v = first(env)
            if (v if type(v) is bool else to_bool(v)) is stop:
                return stop
            v = second(env)
            return v if type(v) is bool else to_bool(v)

        return pair

    def run(env: Attributes) -> Value:
        for part in parts:
            v = part(env)
            if (v if type(v) is bool else to_bool(v)) is stop:
                return stop
        return not stop

    return run


def _like(node: ast.Like) -> Eval:
    matcher, negated = compile_like(node.pattern), node.negated
    if isinstance(node.operand, ast.Attribute):  # read in place: one call fewer
        name = node.operand.name

        def attribute_like(env: Attributes) -> Value:
            raw = env.get(name)
            return matcher(raw if type(raw) is str else _string_read(name, raw)) is not negated

        return attribute_like
    operand = compile_node(node.operand)

    def like(env: Attributes) -> Value:
        v = operand(env)
        return matcher(v if type(v) is str else to_str(v)) is not negated

    return like


def _in(node: ast.In) -> Eval:
    left, negated = compile_node(node.operand), node.negated
    if all(isinstance(item, ast.Literal) for item in node.items):
        # For each type the left value may have: the values cast to it up to the first that
        # cannot be, and that one's error (the values are compared in order).
        table: dict[type, tuple[frozenset[Value], str | None]] = {}
        for kind, cast in CAST.items():
            cast_values: set[Value] = set()
            error = None
            for item in node.items:
                try:
                    cast_values.add(cast(item.value))  # type: ignore[attr-defined]  # Literal
                except CastError as exc:
                    error = exc.message
                    break
            table[kind] = (frozenset(cast_values), error)

        if isinstance(node.operand, ast.Attribute):  # read in place: one call fewer
            name = node.operand.name

            def in_attribute(env: Attributes) -> Value:
                raw = env.get(name)
                x = raw if type(raw) is str else _read(name, raw)
                found, error = table[type(x)]
                if x in found:
                    return not negated
                if error is not None:
                    raise CastError(error)
                return negated

            return in_attribute

        def in_literals(env: Attributes) -> Value:
            x = left(env)
            found, error = table[type(x)]
            if x in found:
                return not negated
            if error is not None:
                raise CastError(error)
            return negated

        return in_literals
    items = [compile_node(item) for item in node.items]

    def in_values(env: Attributes) -> Value:
        x = left(env)
        kind = type(x)
        for item in items:
            y = item(env)
            if type(y) is not kind:
                y = CAST[kind](y)
            if y == x:
                return not negated
        return negated

    return in_values


def _call(node: ast.Call) -> Eval:
    fn = resolve(node.name, len(node.args))
    if fn is None:
        message = f"no function {node.name} taking {len(node.args)} argument(s)"

        def missing(env: Attributes) -> Value:
            raise MissingFunctionError(message)

        return missing
    args = [compile_node(a) for a in node.args]
    params = [fn.param(i) for i in range(len(args))]
    casts = [(None, None) if p is None else (PYTHON_TYPE[p], CAST_TO[p]) for p in params]
    plan = list(zip(args, casts, strict=True))
    run, origin, name = fn.run, id(node), fn.name

    def call(env: Attributes) -> Value:
        values = []
        for arg, (kind, cast) in plan:
            v = arg(env)
            if cast is not None and type(v) is not kind:
                v = cast(v)
            values.append(v)
        try:
            result = run(*values)
            # Built here, that is: not an argument handed back as it is (as STRING(a) is).
            if (
                type(result) is str
                and len(result) > MAX_STRING
                and all(result is not v for v in values)
            ):
                raise too_long(name, len(result))
            return result
        except EvaluationError as exc:
            exc.origin = origin  # its own value stands if the call is the whole expression
            raise

    return call
