"""Safe expressions over columns: the one place where a user's string becomes computation.

A string such as ``"weight / height ** 2"`` or ``"log(`body weight`) if age >= 18 else 0"``
is parsed with :func:`ast.parse` and checked against an allow-list before anything runs;
the accepted tree is then evaluated here, elementwise, with numpy on float arrays. The
string never reaches ``eval``, ``exec``, ``compile``, :meth:`pandas.DataFrame.eval` or any
attribute lookup, so it cannot import, open files or reach the interpreter, whatever it
holds. An expression outside the grammar is a :class:`ValueError` that names the offending
part, raised when the expression is parsed, before any value is computed.

The grammar
-----------
- **Column names**: bare (``height``) or in backticks for names that are not Python
  identifiers (``"`body weight` / height ** 2"``); a backticked name may hold any character
  but a backtick. Names match the data's column labels exactly, as ``str(label)``; a name
  that matches two labels (``1`` and ``"1"``) is an error. Bare names with double
  underscores (``__x__``) are refused; such a column goes in backticks.
- **Numbers**: integer and float literals (computed as float64, so ``10 ** 10 ** 10`` is
  ``inf``, not a huge integer), ``True`` and ``False``. No strings, bytes, complex numbers
  or ``None``.
- **Arithmetic** ``+ - * / // % **`` and unary ``-`` / ``+``, on float64 (booleans count
  as 0 and 1). ``^`` is refused: Python reads it as exclusive or, R as a power; write ``**``.
- **Comparisons** ``< <= > >= == !=``, chained as in Python (``0 < x <= 1``).
- **Logic**, elementwise on truth values (nonzero is true): ``and``, ``or``, ``not``, and
  their pandas spellings ``&``, ``|``, ``~``. Python binds ``&`` and ``|`` more tightly
  than comparisons (pandas.eval does not), so ``x > 1 & z < 2`` is refused: write
  ``(x > 1) & (z < 2)`` or ``x > 1 and z < 2``.
- **Conditional expressions** ``a if condition else b``, elementwise (``np.where``).
- **Functions** of :data:`FUNCTIONS`, called by bare name (``log(x)``) or as
  ``np.log(x)`` / ``numpy.log(x)``, with positional arguments only: the numpy ufunc of the
  same name, except ``abs`` (``np.abs``), ``round(x[, decimals])`` (``np.round``: half to
  even, as R's ``round``; ``decimals`` an integer literal) and ``where(condition, a, b)``.

A bare name is a column when used as a value and a function when called: with a column
called ``log``, ``log(log)`` is the logarithm of that column. A backticked name is always a
column, and ``np`` / ``numpy`` before a dot always mean numpy.

Everything else is refused: attributes (other than ``np.<function>``), subscripts, other
calls, keyword or starred arguments, lambdas, comprehensions, strings, f-strings, ``:=``,
lists, tuples, ``in`` / ``is``. An expression longer than :data:`MAX_LENGTH` characters or
nested deeper than :data:`MAX_DEPTH` levels is refused too (evaluation is recursive;
chains of one operator, ``a + b + c + ...``, count as one level).

Formula terms
-------------
Analysis formulas (:mod:`skmlmi.analysis.formula`) speak the same language: each factor of
a term is parsed by :func:`parse_term`, which accepts one of :data:`TERM_FUNCTIONS`
(``I``, ``C``, ``poly``, ``bs``, ``cr``, ``cs``, ``cc``, ``scale``, ``center``) wrapped
around a whole factor, with literal options (numbers, strings, booleans, flat lists of
them; ``C``'s contrasts from :data:`CONTRASTS`). There, a name used as a value is a column
whatever the data hold (the data are seen later). The factor's value is computed by this
module's evaluator; the formula library only receives text the formula module wrote.

This room knows nothing about the imputer or DataFrames: it receives the column labels
to parse against and, to evaluate, the columns' values by position. Any other place that
turns a user's string into values must come through here too.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from keyword import iskeyword

import numpy as np

__all__ = [
    "CONTRASTS",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "TERM_FUNCTIONS",
    "Expression",
    "Term",
    "parse_expression",
    "parse_term",
]

MAX_LENGTH = 10_000
MAX_DEPTH = 100

#: Functions an expression may call: name -> (numpy function, fewest and most arguments).
FUNCTIONS: dict[str, tuple[Callable, int, int]] = {
    "abs": (np.abs, 1, 1),
    "sqrt": (np.sqrt, 1, 1),
    "cbrt": (np.cbrt, 1, 1),
    "square": (np.square, 1, 1),
    "exp": (np.exp, 1, 1),
    "expm1": (np.expm1, 1, 1),
    "log": (np.log, 1, 1),
    "log1p": (np.log1p, 1, 1),
    "log2": (np.log2, 1, 1),
    "log10": (np.log10, 1, 1),
    "sin": (np.sin, 1, 1),
    "cos": (np.cos, 1, 1),
    "tan": (np.tan, 1, 1),
    "arcsin": (np.arcsin, 1, 1),
    "arccos": (np.arccos, 1, 1),
    "arctan": (np.arctan, 1, 1),
    "arctan2": (np.arctan2, 2, 2),
    "sinh": (np.sinh, 1, 1),
    "cosh": (np.cosh, 1, 1),
    "tanh": (np.tanh, 1, 1),
    "arcsinh": (np.arcsinh, 1, 1),
    "arccosh": (np.arccosh, 1, 1),
    "arctanh": (np.arctanh, 1, 1),
    "floor": (np.floor, 1, 1),
    "ceil": (np.ceil, 1, 1),
    "trunc": (np.trunc, 1, 1),
    "round": (np.round, 1, 2),
    "sign": (np.sign, 1, 1),
    "minimum": (np.minimum, 2, 2),
    "maximum": (np.maximum, 2, 2),
    "power": (np.power, 2, 2),
    "clip": (np.clip, 3, 3),
    "where": (np.where, 3, 3),
    "isnan": (np.isnan, 1, 1),
    "isfinite": (np.isfinite, 1, 1),
}


@dataclass(frozen=True)
class TermFunction:
    """A function that may wrap a whole formula term: its options and what it means.

    Attributes
    ----------
    options : tuple of (str, str)
        The options after the value, in positional order: (name, kind), kind one of
        ``"int"``, ``"number"``, ``"bool"``, ``"numbers"`` (a list of numbers), ``"level"``
        (a string, number or boolean), ``"levels"`` (a list of them), ``"contrast"`` or
        ``"extrapolation"``.
    example : str
        How it is written.
    meaning : str
        What it gives, for the documentation and error messages.
    """

    options: tuple[tuple[str, str], ...]
    example: str
    meaning: str


#: Functions that may wrap a whole term of an analysis formula (not inside an expression, nor in
#: ``derived=``): the value (first argument) is an expression of this module; the options are literals.
TERM_FUNCTIONS: dict[str, TermFunction] = {
    "I": TermFunction((), "I(x ** 2)", "the expression's value (R's I())"),
    "C": TermFunction(
        (("contrasts", "contrast"), ("levels", "levels")),
        'C(f, Treatment("b"))',
        "a column coded as a factor, with contrasts (Treatment(reference), Sum(), Helmert(), Diff(), Poly()) "
        "and, optionally, its levels in order",
    ),
    "poly": TermFunction((("degree", "int"), ("raw", "bool")), "poly(x, 2)", "orthogonal (or raw) polynomials"),
    "bs": TermFunction(
        (
            ("df", "int"),
            ("knots", "numbers"),
            ("degree", "int"),
            ("include_intercept", "bool"),
            ("lower_bound", "number"),
            ("upper_bound", "number"),
            ("extrapolation", "extrapolation"),
        ),
        "bs(x, df=4)",
        "a B-spline basis (R's splines::bs)",
    ),
    "cr": TermFunction(
        (
            ("df", "int"),
            ("knots", "numbers"),
            ("lower_bound", "number"),
            ("upper_bound", "number"),
            ("extrapolation", "extrapolation"),
        ),
        "cr(x, df=4)",
        "a natural cubic regression spline basis (mgcv's cr)",
    ),
    "cc": TermFunction(
        (
            ("df", "int"),
            ("knots", "numbers"),
            ("lower_bound", "number"),
            ("upper_bound", "number"),
            ("extrapolation", "extrapolation"),
        ),
        "cc(x, df=4)",
        "a cyclic cubic regression spline basis (mgcv's cc)",
    ),
    "scale": TermFunction(
        (("center", "bool"), ("scale", "bool"), ("ddof", "int")), "scale(x)", "centred and scaled (R's scale)"
    ),
    "center": TermFunction((), "center(x)", "centred on its mean"),
}
TERM_FUNCTIONS["cs"] = TERM_FUNCTIONS["cr"]

#: Contrasts ``C()`` accepts: name -> the options it takes (a treatment contrast names its reference level).
CONTRASTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Treatment": (("reference", "level"),),
    "Sum": (),
    "Helmert": (),
    "Diff": (),
    "Poly": (),
}
_EXTRAPOLATION = ("raise", "clip", "na", "zero", "extend")
#: Bounds on literal options: a spline with a million knots is a memory bomb, not a model.
MAX_OPTION = 100

_MODULES = ("np", "numpy")

_ARITHMETIC = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.FloorDiv: ("//", np.floor_divide),
    ast.Mod: ("%", np.remainder),
    ast.Pow: ("**", np.power),
}
_LOGICAL = {ast.BitAnd: ("&", np.logical_and), ast.BitOr: ("|", np.logical_or)}
_COMPARISONS = {
    ast.Lt: ("<", np.less),
    ast.LtE: ("<=", np.less_equal),
    ast.Gt: (">", np.greater),
    ast.GtE: (">=", np.greater_equal),
    ast.Eq: ("==", np.equal),
    ast.NotEq: ("!=", np.not_equal),
}
# operator symbol -> (numpy function, operands are truth values rather than numbers)
_BINARY = {symbol: (fn, False) for symbol, fn in [*_ARITHMETIC.values(), *_COMPARISONS.values()]}
_BINARY.update({symbol: (fn, True) for symbol, fn in _LOGICAL.values()})

_REFUSED_OPERATORS = {
    ast.BitXor: "'^' (exclusive or; write ** for a power)",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.MatMult: "'@'",
    ast.In: "'in'",
    ast.NotIn: "'not in'",
    ast.Is: "'is'",
    ast.IsNot: "'is not'",
}

_REFUSED_NODES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.NamedExpr: "assignment expression",
    ast.Starred: "starred expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.Slice: "slice",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

ALLOWED = (
    "allowed: column names (in backticks when not identifiers, e.g. `body weight`), numbers, "
    "+ - * / // % **, comparisons < <= > >= == !=, and/or/not (& | ~), 'a if condition else b', "
    f"and the functions {', '.join(FUNCTIONS)} (bare or as np.name)"
)


@dataclass(frozen=True)
class Expression:
    """A parsed expression, checked against the grammar, ready to evaluate.

    Attributes
    ----------
    text : str
        The expression as given.
    positions : tuple of int
        Positions (in the column labels it was parsed against) of the columns it uses,
        in order of first use.
    """

    text: str
    positions: tuple[int, ...]
    tree: tuple = field(repr=False, compare=False)
    #: names of the columns it uses, in order of first use (for a formula term, whose names are not yet
    #: matched to data: then ``positions`` number these names)
    names: tuple[str, ...] = ()

    def evaluate(self, values: Mapping[int, object], n_rows: int | None = None) -> np.ndarray:
        """The expression's float64 values, elementwise over the rows.

        Parameters
        ----------
        values : mapping
            Column position -> 1-d array-like of the column's values; every position of
            :attr:`positions` must be present.
        n_rows : int, default=None
            Length of the result when the expression uses no column (a constant).

        Returns
        -------
        ndarray of shape (n_rows,)
            Overflow gives ``inf`` and invalid operations ``nan``, silently: the caller
            decides what non-finite values mean.
        """
        columns = {j: np.asarray(values[j], dtype=float).reshape(-1) for j in self.positions}
        if n_rows is None:
            if not columns:
                raise ValueError(f"expression {self.text!r} uses no column: give n_rows.")
            n_rows = next(iter(columns.values())).size
        with np.errstate(all="ignore"):
            out = np.asarray(_evaluate(self.tree, columns), dtype=float)
        return np.array(np.broadcast_to(out, (n_rows,)))


def parse_expression(text: str, columns: Sequence, *, label: str = "expression") -> Expression:
    """Parse and check an expression over the given column labels.

    Parameters
    ----------
    text : str
        The expression, in the grammar of this module's docstring.
    columns : sequence
        The data's column labels; names in ``text`` match ``str(label)`` exactly.
    label : str, default="expression"
        How error messages name the expression, e.g. ``"derived['bmi']"``.

    Returns
    -------
    Expression

    Raises
    ------
    TypeError
        ``text`` is not a string.
    ValueError
        Anything outside the grammar, with the offending part named; unknown or ambiguous
        column names; expressions too long or too deeply nested. Nothing is evaluated.

    Examples
    --------
    >>> e = parse_expression("`body weight` / height ** 2", ["body weight", "height"])
    >>> e.positions
    (0, 1)
    >>> e.evaluate({0: [80.0, 60.0], 1: [2.0, 1.0]})
    array([20., 60.])
    >>> parse_expression("height.to_csv('out.csv')", ["height"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: expression = "height.to_csv('out.csv')": attribute access '.to_csv' ... is not allowed; ...
    """
    if not isinstance(text, str):
        raise TypeError(f"{label} must be an expression string, got {type(text).__name__}.")
    parser = _Parser(text, columns, label)
    return Expression(text, tuple(parser.positions), parser.tree, tuple(str(columns[j]) for j in parser.positions))


@dataclass(frozen=True)
class Term:
    """One factor of an analysis formula's term, checked: an optional wrapper, its value, its literal options.

    Attributes
    ----------
    text : str
        The factor as written (``"np.log(x)"``, ``'C(motor_score, Treatment("5/6"))'``).
    wrapper : str or None
        The :data:`TERM_FUNCTIONS` name wrapping it (``"C"``, ``"poly"``, ...), None for a bare expression.
    value : Expression
        The wrapped expression (its ``names`` are the columns it uses; ``positions`` number them).
    options : tuple of (str, object)
        The wrapper's options by name, as literals; a contrast is ``("contrasts", (name, options))``.
    """

    text: str
    wrapper: str | None
    value: Expression
    options: tuple[tuple[str, object], ...] = ()

    @property
    def column(self) -> str | None:
        """The column when the value is a bare column name (``x``, ```body weight```), else None."""
        return self.value.names[0] if self.value.tree[0] == "column" else None


def parse_term(text: str, *, label: str = "formula term") -> Term:
    """Parse and check one factor of an analysis formula's term.

    A factor is an expression of this module's grammar, optionally wrapped whole in one of
    :data:`TERM_FUNCTIONS` (``I(x ** 2)``, ``C(f, Treatment("b"))``, ``poly(x, 2)``,
    ``bs(x, df=4)``, ...), whose options are literals (numbers, strings, booleans, lists of
    them) given by position or keyword. Any name used as a value is a column.

    Parameters
    ----------
    text : str
        The factor, e.g. ``"np.log(x)"``.
    label : str, default="formula term"
        How error messages name it.

    Returns
    -------
    Term

    Raises
    ------
    ValueError
        Anything outside the grammar, named; nothing is evaluated.

    Examples
    --------
    >>> t = parse_term('C(motor_score, Treatment("5/6"))')
    >>> t.wrapper, t.column, t.options
    ('C', 'motor_score', (('contrasts', ('Treatment', (('reference', '5/6'),))),))
    >>> parse_term("I(x ** 2)").value.names
    ('x',)
    """
    if not isinstance(text, str):
        raise TypeError(f"{label} must be a string, got {type(text).__name__}.")
    bare = text.strip()
    if iskeyword(bare) and bare not in ("None", "True", "False"):  # a column named like a keyword: 'class'
        text = f"`{bare}`"
    parser = _Parser(text, None, label, term=True)
    value = Expression(parser.value_text, tuple(parser.positions), parser.tree, tuple(parser.names))
    return Term(text, parser.wrapper, value, parser.options)


class _Parser:
    """Checks the AST of one expression and turns it into a tree of tuples (picklable)."""

    def __init__(self, text: str, columns: Sequence | None, label: str, term: bool = False):
        self.text, self.label = text, label
        # columns=None: any name used as a value is a column, numbered in order of first use (formula terms,
        # parsed before the data are known)
        self.open = columns is None
        self.also = (
            f"; a whole formula term may be wrapped in {', '.join(f'{n}()' for n in TERM_FUNCTIONS)}" if term else ""
        )
        self.names: list[str] = []
        self.lookup: dict[str, list[int]] = {}
        for j, c in enumerate(columns or ()):
            self.lookup.setdefault(str(c), []).append(j)
        self.positions: list[int] = []
        self.unknown: list[str] = []
        if len(text) > MAX_LENGTH:
            self.fail(f"the expression has {len(text)} characters, more than {MAX_LENGTH}")
        self.source, self.quoted = self._replace_backticks(text)
        parsed, problem = None, None
        try:
            parsed = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            problem = f"not a valid expression ({exc.msg})"
        except (RecursionError, MemoryError):
            problem = "too deeply nested for Python's parser"
        except ValueError as exc:  # null bytes
            problem = f"not a valid expression ({exc})"
        if parsed is None:
            self.fail(problem, allowed=False)
        self.wrapper, self.options, self.value_text = None, (), text.strip()
        body = parsed.body
        if term and isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in TERM_FUNCTIONS:
            body = self.term_call(body)
        self.tree = self.node(body, 0)
        if self.unknown:
            hints = []
            for name in self.unknown[:3]:  # difflib is quadratic: a few suggestions, not one per name
                close = difflib.get_close_matches(name, list(self.lookup)[:5000], n=1)
                if close:
                    hints.append(f"{name!r}: did you mean {close[0]!r}?")
            hint = f" ({'; '.join(hints)})" if hints else ""
            more = f" and {len(self.unknown) - 10} more" if len(self.unknown) > 10 else ""
            raise ValueError(f"{self.where} uses unknown columns {self.unknown[:10]}{more}{hint}.")

    @property
    def where(self) -> str:
        shown = self.text if len(self.text) <= 120 else self.text[:117] + "..."
        return f"{self.label} = {shown!r}"

    def fail(self, problem: str, allowed: bool = True):
        raise ValueError(f"{self.where}: {problem}" + (f"; {ALLOWED}{self.also}." if allowed else "."))

    def _replace_backticks(self, text: str) -> tuple[str, dict[str, str]]:
        """Backticked names -> placeholder identifiers that occur nowhere in ``text``."""
        parts = text.split("`")
        if len(parts) % 2 == 0:
            self.fail("a backtick is not closed (a name in backticks cannot hold a backtick)", allowed=False)
        prefix = "_bt"
        while prefix in text:
            prefix += "_"
        quoted, pieces = {}, []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                pieces.append(part)
                continue
            if not part:
                self.fail("empty backticks ``", allowed=False)
            placeholder = f"{prefix}{len(quoted)}_"
            quoted[placeholder] = part
            pieces.append(f" {placeholder} ")
        self.pattern = re.compile(re.escape(prefix) + r"\d+_")
        return "".join(pieces).strip(), quoted

    def show(self, node: ast.AST) -> str:
        """The source of a node as the user wrote it (backticked names restored)."""
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        segment = self.pattern.sub(lambda m: f"`{self.quoted.get(m.group(0), m.group(0))}`", segment.strip())
        return segment if len(segment) <= 60 else segment[:57] + "..."

    # ------------------------------------------------------------------ nodes
    def node(self, node: ast.AST, depth: int) -> tuple:
        if depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} levels deep", allowed=False)
        depth += 1
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.BinOp):
            # a left-nested chain (a + b - c * d ...) is flattened: evaluated in one loop, in
            # the same order as the nesting, so its length does not count towards the depth
            chain = []
            while isinstance(node, ast.BinOp):
                chain.append((self.binary_symbol(node.op, node), node.right))
                node = node.left
            first = self.node(node, depth)
            return ("chain", first, tuple((symbol, self.node(right, depth)) for symbol, right in reversed(chain)))
        if isinstance(node, ast.UnaryOp):
            operand = self.node(node.operand, depth)
            if isinstance(node.op, ast.USub):
                return ("negative", operand)
            if isinstance(node.op, ast.UAdd):
                return ("positive", operand)
            return ("not", operand)  # not, ~
        if isinstance(node, ast.BoolOp):
            kind = "all" if isinstance(node.op, ast.And) else "any"
            return (kind, tuple(self.node(v, depth) for v in node.values))
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.BinOp) and type(operand.op) in _LOGICAL:
                    symbol = _LOGICAL[type(operand.op)][0]
                    self.fail(
                        f"in {self.show(node)!r}, {symbol!r} binds more tightly than the comparison (Python's "
                        f"rule, unlike pandas.eval); put each comparison in parentheses, as (x > 1) {symbol} "
                        "(z < 2), or write and / or",
                        allowed=False,
                    )
            pairs = []
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARISONS:
                    self.fail(f"operator {_REFUSED_OPERATORS[type(op)]} in {self.show(node)!r} is not allowed")
                pairs.append((_COMPARISONS[type(op)][0], self.node(right, depth)))
            return ("compare", self.node(node.left, depth), tuple(pairs))
        if isinstance(node, ast.IfExp):
            return ("if", self.node(node.test, depth), self.node(node.body, depth), self.node(node.orelse, depth))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Attribute):
            self.attribute(node)
        kind = _REFUSED_NODES.get(type(node), type(node).__name__)
        self.fail(f"{kind} {self.show(node)!r} is not allowed")

    def binary_symbol(self, op: ast.operator, node: ast.BinOp) -> str:
        if type(op) in _ARITHMETIC:
            return _ARITHMETIC[type(op)][0]
        if type(op) in _LOGICAL:
            return _LOGICAL[type(op)][0]
        self.fail(
            f"operator {_REFUSED_OPERATORS.get(type(op), type(op).__name__)} in {self.show(node)!r} is not allowed"
        )

    def name(self, node: ast.Name) -> tuple:
        identifier = node.id
        if identifier in self.quoted:
            return self.column(self.quoted[identifier], quoted=True)
        if identifier.startswith("__"):
            self.fail(
                f"name '{identifier}' is not allowed (names with double underscores never are; "
                "a column so named goes in backticks)"
            )
        if identifier in self.lookup or (self.open and identifier not in _MODULES):
            return self.column(identifier, quoted=False)
        if identifier in FUNCTIONS:
            self.fail(f"function '{identifier}' must be called, as {identifier}(x)")
        if identifier in _MODULES:
            self.fail(f"'{identifier}' may only be used to call a function, as {identifier}.log(x)")
        if identifier not in self.unknown:
            self.unknown.append(identifier)
        return ("constant", np.nan)  # never evaluated: unknown names are an error at the end

    def column(self, name: str, quoted: bool) -> tuple:
        if self.open and name not in self.lookup:
            self.lookup[name] = [len(self.names)]
            self.names.append(name)
        if name not in self.lookup:
            if name not in self.unknown:
                self.unknown.append(name)
            return ("constant", np.nan)
        matches = self.lookup[name]
        if len(matches) > 1:
            self.fail(
                f"{'`' + name + '`' if quoted else repr(name)} matches {len(matches)} columns (labels whose "
                "text is the same); rename them",
                allowed=False,
            )
        if matches[0] not in self.positions:
            self.positions.append(matches[0])
        return ("column", matches[0])

    def constant(self, node: ast.Constant) -> tuple:
        value = node.value
        if isinstance(value, bool):
            return ("constant", np.bool_(value))
        if isinstance(value, int):
            try:
                return ("constant", float(value))
            except OverflowError:
                self.fail(f"the number {self.show(node)} is too large for a float", allowed=False)
        if isinstance(value, float):
            return ("constant", value)
        kind = {str: "string literal", bytes: "bytes literal", complex: "complex number"}.get(type(value), "constant")
        self.fail(f"{kind} {self.show(node)!r} is not allowed")

    def function_name(self, func: ast.AST) -> str | None:
        """The allowed function a call names (None if the callee is not one)."""
        if isinstance(func, ast.Name) and func.id in FUNCTIONS:
            return func.id
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in _MODULES
            and func.attr in FUNCTIONS
        ):
            return func.attr
        return None

    def call(self, node: ast.Call, depth: int) -> tuple:
        name = self.function_name(node.func)
        if name is None:
            func = node.func
            if isinstance(func, ast.Name) and func.id in TERM_FUNCTIONS:
                self.fail(
                    f"{func.id}() in {self.show(node)!r} may only wrap a whole formula term, as "
                    f"{TERM_FUNCTIONS[func.id].example}, not stand inside an expression"
                )
            if isinstance(func, ast.Name) and func.id in self.quoted:
                self.fail(f"column {self.show(func)} cannot be called")
            if isinstance(func, ast.Attribute):
                self.attribute(func)
            self.fail(f"calling {self.show(func)!r} is not allowed")
        for keyword in node.keywords:
            what = "'**' unpacking" if keyword.arg is None else f"keyword argument '{keyword.arg}='"
            self.fail(f"{what} in {self.show(node)!r} is not allowed; give arguments by position")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail(f"starred argument {self.show(arg)!r} is not allowed")
        _, fewest, most = FUNCTIONS[name]
        if not fewest <= len(node.args) <= most:
            takes = str(fewest) if fewest == most else f"{fewest} or {most}"
            self.fail(
                f"{name}() takes {takes} argument{'s' * (most > 1)}, got {len(node.args)} in {self.show(node)!r}",
                allowed=False,
            )
        if name == "round" and len(node.args) == 2:
            return ("round", self.node(node.args[0], depth), self.decimals(node.args[1]))
        return ("call", name, tuple(self.node(arg, depth) for arg in node.args))

    # ------------------------------------------------------------------ formula terms
    def term_call(self, node: ast.Call) -> ast.AST:
        """A whole-term wrapper: check its options (literals), return the node of its value."""
        name = node.func.id
        spec = TERM_FUNCTIONS[name]
        if not node.args or isinstance(node.args[0], ast.Starred):
            self.fail(f"{name}() needs a value first, as {spec.example}", allowed=False)
        self.wrapper = name
        value, given = node.args[0], {}
        if len(node.args) - 1 > len(spec.options):
            self.fail(f"{name}() takes at most {len(spec.options)} options, got {len(node.args) - 1}", allowed=False)
        for (option, _), arg in zip(spec.options, node.args[1:], strict=False):
            given[option] = arg
        kinds = dict(spec.options)
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg not in kinds:
                what = "'**' unpacking" if keyword.arg is None else f"option '{keyword.arg}='"
                known = ", ".join(kinds) or "none"
                self.fail(f"{what} of {name}() is not allowed (its options: {known})", allowed=False)
            if keyword.arg in given:
                self.fail(f"option '{keyword.arg}' of {name}() given twice", allowed=False)
            given[keyword.arg] = keyword.value
        self.options = tuple((option, self.option(name, option, kinds[option], given[option])) for option in given)
        if name == "C" and not isinstance(value, ast.Name):
            self.fail(
                f"C() takes a column, got {self.show(value)!r}; make a derived column of the expression first",
                allowed=False,
            )
        self.value_text = self.show(value)
        return value

    def option(self, function: str, option: str, kind: str, node: ast.AST):
        """The literal value of one option, checked against its kind."""
        where = f"option '{option}' of {function}()"
        if kind == "contrast":
            return self.contrast(node, where)
        value = self.literal(node, where)
        ok = {
            "int": lambda v: type(v) is int and 0 <= v <= MAX_OPTION,
            "number": lambda v: type(v) in (int, float),
            "bool": lambda v: type(v) is bool,
            "level": lambda v: type(v) in (str, int, float, bool),
            "numbers": lambda v: isinstance(v, list) and all(type(x) in (int, float) for x in v),
            "levels": lambda v: isinstance(v, list) and all(type(x) in (str, int, float, bool) for x in v),
            "extrapolation": lambda v: v in _EXTRAPOLATION,
        }[kind](value)
        if not ok:
            wanted = {
                "int": f"a whole number from 0 to {MAX_OPTION}",
                "number": "a number",
                "bool": "True or False",
                "level": "a level (string, number or boolean)",
                "numbers": "a list of numbers",
                "levels": "a list of levels",
                "extrapolation": f"one of {', '.join(repr(e) for e in _EXTRAPOLATION)}",
            }[kind]
            self.fail(f"{where} must be {wanted}, got {self.show(node)!r}", allowed=False)
        return value

    def contrast(self, node: ast.AST, where: str) -> tuple:
        """A contrast of C(): (name, options) of one of :data:`CONTRASTS`, called with literals."""
        known = ", ".join(f"{c}()" for c in CONTRASTS)
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CONTRASTS):
            self.fail(f"{where} must be one of {known}, got {self.show(node)!r}", allowed=False)
        name, kinds = node.func.id, CONTRASTS[node.func.id]
        if len(node.args) > len(kinds):
            self.fail(f"{name}() takes at most {len(kinds)} options, got {len(node.args)}", allowed=False)
        given = dict(zip((k for k, _ in kinds), node.args, strict=False))
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg not in dict(kinds) or keyword.arg in given:
                self.fail(f"{self.show(node)!r}: {name}() takes {', '.join(k for k, _ in kinds) or 'no options'}")
            given[keyword.arg] = keyword.value
        return (name, tuple((k, self.option(name, k, dict(kinds)[k], v)) for k, v in given.items()))

    def literal(self, node: ast.AST, where: str):
        """A literal: a string, a finite number, True/False, or a flat list (tuple) of them."""
        if isinstance(node, (ast.List, ast.Tuple)):
            if len(node.elts) > MAX_OPTION:
                self.fail(f"{where} lists more than {MAX_OPTION} values", allowed=False)
            if any(isinstance(e, (ast.List, ast.Tuple)) for e in node.elts):
                self.fail(f"{where} must be a flat list", allowed=False)
            return [self.literal(e, where) for e in node.elts]
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sign, node = -1, node.operand
        if isinstance(node, ast.Constant):
            value = node.value
            if sign == 1 and type(value) in (str, bool):
                if isinstance(value, str) and len(value) > 1000:
                    self.fail(f"{where}: the string is longer than 1000 characters", allowed=False)
                return value
            if type(value) in (int, float) and abs(value) < 1e300:
                return sign * value
        self.fail(f"{where} must be a literal (a number, a string in quotes, True/False), got {self.show(node)!r}")

    def decimals(self, node: ast.AST) -> int:
        """The decimals of round(x, decimals): an integer literal, possibly negative."""
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sign, node = -1, node.operand
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value <= 400:
            return sign * node.value
        self.fail(f"the decimals of round() must be an integer literal such as 2, got {self.show(node)!r}")

    def attribute(self, node: ast.Attribute):
        """Every attribute outside a call of np.<function> is refused, naming the first offence written.

        In ``__import__('os').system`` that is the call of ``__import__``; in
        ``x.__init__.__globals__`` the attribute ``.__init__``.
        """
        inner = [
            n
            for n in ast.walk(node)
            if (isinstance(n, ast.Attribute) and self.function_name(n) is None)
            or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and self.function_name(n.func) is None)
        ]
        first = min(inner or [node], key=lambda n: (n.end_lineno, n.end_col_offset))
        if isinstance(first, ast.Call):
            self.call(first, MAX_DEPTH)
        node = first
        if isinstance(node.value, ast.Name) and node.value.id in _MODULES:
            if node.attr in FUNCTIONS:
                self.fail(f"function {self.show(node)!r} must be called, as {self.show(node)}(x)")
            self.fail(f"{self.show(node)!r} is not among the allowed functions")
        self.fail(f"attribute access '.{node.attr}' in {self.show(node)!r} is not allowed")


# ---------------------------------------------------------------------- evaluation
def _truth(value) -> np.ndarray:
    value = np.asarray(value)
    return value if value.dtype == bool else np.asarray(value, dtype=float) != 0


def _number(value) -> np.ndarray:
    return np.asarray(value, dtype=float)


def _evaluate(node: tuple, columns: dict[int, np.ndarray]):
    kind = node[0]
    if kind == "column":
        return columns[node[1]]
    if kind == "constant":
        return node[1]
    if kind == "chain":
        out = _evaluate(node[1], columns)
        for symbol, right in node[2]:
            fn, logical = _BINARY[symbol]
            convert = _truth if logical else _number
            out = fn(convert(out), convert(_evaluate(right, columns)))
        return out
    if kind == "negative":
        return -_number(_evaluate(node[1], columns))
    if kind == "positive":
        return _number(_evaluate(node[1], columns))
    if kind == "not":
        return np.logical_not(_truth(_evaluate(node[1], columns)))
    if kind in ("all", "any"):
        combine = np.logical_and if kind == "all" else np.logical_or
        out = _truth(_evaluate(node[1][0], columns))
        for value in node[1][1:]:
            out = combine(out, _truth(_evaluate(value, columns)))
        return out
    if kind == "compare":
        left = _number(_evaluate(node[1], columns))
        out = None
        for symbol, right in node[2]:
            right = _number(_evaluate(right, columns))
            result = _BINARY[symbol][0](left, right)
            out = result if out is None else np.logical_and(out, result)
            left = right
        return out
    if kind == "if":
        condition = _truth(_evaluate(node[1], columns))
        return np.where(condition, _number(_evaluate(node[2], columns)), _number(_evaluate(node[3], columns)))
    if kind == "round":
        return np.round(_number(_evaluate(node[1], columns)), node[2])
    if kind == "call":
        name, args = node[1], [_evaluate(arg, columns) for arg in node[2]]
        if name == "where":
            return np.where(_truth(args[0]), _number(args[1]), _number(args[2]))
        return FUNCTIONS[name][0](*(_number(a) for a in args))
    raise AssertionError(f"unknown node {kind!r}")  # pragma: no cover
