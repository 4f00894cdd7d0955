"""lme4-style model formulas: parsing and design matrices.

This room turns a formula string such as ``"popular ~ 1 + sex + texp + (1 + sex | school)"``
into a :class:`ParsedFormula` (what the user asked for) and, given a DataFrame, into a
:class:`Design` (numeric arrays with R's column names). It knows nothing about fitting.

Supported syntax (R's ``model.frame``/``lme4`` subset):

* response ``y ~ ...`` (a column name; backticks quote names with special characters);
* fixed part: ``1``/``0``/``-1``, ``a + b``, ``a - b``, interactions ``a:b``, crossing
  ``a*b`` (= ``a + b + a:b``), powers ``(a + b + c)^2``, parentheses;
* random part with ONE grouping factor: ``(1 | g)``, ``(1 + x | g)`` (correlated),
  ``(1 | g) + (0 + x | g)`` and ``(1 + x || g)`` (uncorrelated blocks), ``(0 + x | g)``.

Crossed (``(1 | g) + (1 | h)``) and nested (``(1 | g/h)``, ``(1 | g:h)``) grouping
factors are refused with an error listing the supported forms.

Nothing in a formula is evaluated: a term is a column name, looked up in the data, and
function calls (``I(x^2)``, ``log(x)``) are refused; a transformed variable enters as a
column of the data (or a ``derived=`` column of the imputer, checked by
:mod:`skmlmi._expressions`).

Categorical predictors (pandas categorical, string/object or bool columns) are expanded
with treatment contrasts as R does: the first level (categories order for a pandas
categorical, sorted values otherwise -- R's alphabetical factor levels; or a level chosen
with ``reference_levels``) is the reference, and a column is named variable + level
(``motor_score1/2``, ``typeRCT``). A factor whose margin is absent from the model (the
first factor of a model without intercept, or ``x:f`` without ``x``) gets one indicator per
level, as R's ``model.matrix``. Interaction columns are named ``a:b``; terms are ordered by
degree (main effects first), as R's ``terms()``.

Categories a pandas categorical declares but no row holds are left out (R's
``droplevels``; an all-zero column would make the design rank deficient) and listed in
``Design.dropped_levels``; ``category_levels`` fixes the levels instead, so that several
datasets (the completed datasets of a multiple imputation) are coded alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Design", "ParsedFormula", "RandomBlock", "build_design", "observed_levels", "parse_formula"]

SUPPORTED_FORMS = (
    "supported random-effects forms (one grouping factor g): (1 | g), (1 + x | g), "
    "(0 + x | g), (1 | g) + (0 + x | g), (1 + x || g)"
)

_TOKEN = re.compile(r"\s*(?:(`[^`]+`)|(\|\||[~+\-*:/^()|])|([A-Za-z_.][A-Za-z0-9_.]*)|(\d+(?:\.\d*)?))")


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class RandomBlock:
    """One block of correlated random effects for the grouping factor.

    Attributes
    ----------
    intercept : bool
        Whether the block holds a random intercept.
    terms : tuple of tuple of str
        Non-intercept terms (each a tuple of variable names; length > 1 = interaction).
    """

    intercept: bool
    terms: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ParsedFormula:
    """The parsed formula.

    Attributes
    ----------
    formula : str
        The original string.
    response : str or None
        Response column.
    intercept : bool
        Whether the fixed part has an intercept.
    fixed : tuple of tuple of str
        Fixed non-intercept terms, ordered by degree as R's ``terms()``.
    group : str or None
        The grouping factor (None for a single-level model).
    random : tuple of RandomBlock
        Blocks of the random part; effects in different blocks are uncorrelated.
    """

    formula: str
    response: str | None
    intercept: bool
    fixed: tuple[tuple[str, ...], ...]
    group: str | None = None
    random: tuple[RandomBlock, ...] = ()

    @property
    def variables(self) -> list[str]:
        """All data columns the formula uses (response first, grouping factor last)."""
        names: list[str] = []
        for term in self.fixed + tuple(t for block in self.random for t in block.terms):
            for v in term:
                if v not in names:
                    names.append(v)
        if self.response is not None:
            names.insert(0, self.response)
        if self.group is not None and self.group not in names:
            names.append(self.group)
        return names

    @property
    def is_mixed(self) -> bool:
        return self.group is not None


@dataclass
class Design:
    """Numeric design of a parsed formula on one DataFrame.

    Attributes
    ----------
    y : ndarray of shape (n,) or None
    X : ndarray of shape (n, p)
        Fixed-effects design, with the intercept column when the formula has one.
    fixed_names : list of str
        R-style column names of X (``(Intercept)``, ``sex``, ``typeRCT``, ``a:b``).
    Z : ndarray of shape (n, q) or None
        Random-effects design.
    random_names : list of str
    blocks : list of ndarray
        Column indices of Z per uncorrelated block.
    groups : ndarray of shape (n,) or None
        Integer cluster codes 0..J-1 (codes of ``group_levels``; -1 for clusters unseen at fit).
    group_levels : Index or None
        Cluster labels in code order.
    levels : dict
        Levels of every categorical variable (reuse them on new data).
    dropped_levels : dict
        Categories a pandas categorical declares that are not among its levels (no row holds
        them), per variable; only variables with such categories appear.
    """

    y: np.ndarray | None
    X: np.ndarray
    fixed_names: list[str]
    Z: np.ndarray | None = None
    random_names: list[str] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    groups: np.ndarray | None = None
    group_levels: pd.Index | None = None
    levels: dict = field(default_factory=dict)
    dropped_levels: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return 0 if self.group_levels is None else len(self.group_levels)


# --------------------------------------------------------------------------- parser
def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot parse formula {text!r} at position {pos}: {text[pos : pos + 10]!r}")
        quoted, op, name, number = match.groups()
        if quoted:
            tokens.append("`" + quoted[1:-1])  # marker for a quoted name
        else:
            tokens.append(op or name or number)
        pos = match.end()
    return tokens


class _RandomTerm:
    def __init__(self, expr, group: str, double_bar: bool):
        self.expr, self.group, self.double_bar = expr, group, double_bar


class _Expr:
    """A set of terms with an intercept flag (R's formula algebra)."""

    def __init__(self, terms=(), intercept=None, random=()):
        self.terms: list[tuple[str, ...]] = list(terms)
        self.intercept = intercept  # True, False or None (= not stated)
        self.random: list[_RandomTerm] = list(random)


def _name(token: str) -> str:
    return token[1:] if token.startswith("`") else token


class _Parser:
    def __init__(self, tokens: list[str], formula: str):
        self.tokens, self.i, self.formula = tokens, 0, formula

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"formula {self.formula!r}: expected {expected or 'a term'}, found {tok or 'the end'}")
        self.i += 1
        return tok

    def error(self, message):
        raise ValueError(f"formula {self.formula!r}: {message}")

    # expr := ['-'] prod (('+' | '-') prod)*
    def expr(self) -> _Expr:
        out = _Expr()
        sign = "+"
        if self.peek() == "-":
            self.take()
            sign = "-"
        while True:
            part = self.prod()
            if sign == "+":
                for t in part.terms:
                    if frozenset(t) not in {frozenset(o) for o in out.terms}:
                        out.terms.append(t)
                if part.intercept is not None:
                    out.intercept = part.intercept
                out.random.extend(part.random)
            else:
                if part.random:
                    self.error("random-effects terms cannot be subtracted")
                drop = {frozenset(t) for t in part.terms}
                out.terms = [t for t in out.terms if frozenset(t) not in drop]
                if part.intercept is True:
                    out.intercept = False
                elif part.intercept is False:  # "- 0" adds the intercept back
                    out.intercept = True
            tok = self.peek()
            if tok in ("+", "-"):
                sign = self.take()
            else:
                return out

    # prod := inter ('*' inter)*
    def prod(self) -> _Expr:
        left = self.inter()
        while self.peek() == "*":
            self.take()
            right = self.inter()
            self._no_random(left, right, "*")
            terms = list(left.terms)
            for t in right.terms + _cross(left.terms, right.terms):
                if frozenset(t) not in {frozenset(o) for o in terms}:
                    terms.append(t)
            left = _Expr(terms, _merge_intercept(left, right))
        return left

    # inter := power (':' power)*
    def inter(self) -> _Expr:
        left = self.power()
        while self.peek() == ":":
            self.take()
            right = self.power()
            self._no_random(left, right, ":")
            left = _Expr(_cross(left.terms, right.terms))
        return left

    # power := atom ('^' integer)?
    def power(self) -> _Expr:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            tok = self.take()
            if not tok.isdigit() or int(tok) < 1:
                self.error(f"the power in (...)^{tok} must be a positive integer")
            if base.random:
                self.error("random-effects terms cannot be raised to a power")
            terms = list(base.terms)
            current = list(base.terms)
            for _ in range(int(tok) - 1):
                current = _cross(current, base.terms)
                for t in current:
                    if frozenset(t) not in {frozenset(o) for o in terms}:
                        terms.append(t)
            base = _Expr(terms, base.intercept)
        return base

    def atom(self) -> _Expr:
        tok = self.take()
        if tok == "(":
            inner = self.expr()
            nxt = self.peek()
            if nxt in ("|", "||"):
                self.take()
                group = self.group_expr()
                self.take(")")
                return _Expr(random=[_RandomTerm(inner, group, nxt == "||")])
            self.take(")")
            if inner.random and (inner.terms or inner.intercept is not None):
                self.error("random-effects terms must stand alone, e.g. (1 + x | g)")
            return inner
        if tok in ("1", "0"):
            return _Expr(intercept=tok == "1")
        if tok[0].isdigit():
            self.error(f"numeric constant {tok} is not a term (only 0 and 1 are)")
        if tok in "~+-*:/^()|" or tok == "||":
            self.error(f"unexpected {tok!r}")
        if self.peek() == "(":
            self.error(f"function calls such as {tok}(...) are not supported; create the column in the DataFrame first")
        return _Expr([(_name(tok),)])

    def group_expr(self) -> str:
        tok = self.take()
        if tok in ("(", "1", "0") or tok in "~+-*:/^)|":
            self.error(f"invalid grouping factor {tok!r}; {SUPPORTED_FORMS}")
        group = _name(tok)
        if self.peek() in (":", "/", "+", "*"):
            self.error(
                f"nested or interacted grouping factors ({group}{self.peek()}...) are not supported; {SUPPORTED_FORMS}"
            )
        return group

    def _no_random(self, left, right, op):
        if left.random or right.random:
            self.error(f"random-effects terms cannot be combined with {op!r}")


def _cross(left, right):
    out = []
    for a in left:
        for b in right:
            t = tuple(dict.fromkeys(a + b))
            if frozenset(t) not in {frozenset(o) for o in out}:
                out.append(t)
    return out


def _merge_intercept(left: _Expr, right: _Expr):
    if left.intercept is None:
        return right.intercept
    return left.intercept


def _order_terms(terms):
    """R's terms(): main effects, then two-way interactions, ..., stable within a degree."""
    unique = []
    seen = set()
    for t in terms:
        key = frozenset(t)
        if key not in seen:
            seen.add(key)
            unique.append(t)
    return tuple(sorted(unique, key=len))


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4-style formula.

    Parameters
    ----------
    formula : str
        For example ``"y ~ 1 + x + f + (1 + x | g)"``; the response may be omitted
        (``"~ x + f"``) for designs of new data.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    ValueError
        Malformed formulas, and random parts with crossed or nested grouping factors
        (the message lists the supported forms).

    Examples
    --------
    >>> f = parse_formula("popular ~ 1 + sex + texp + (1 + sex | school)")
    >>> f.response, f.fixed, f.group, f.random[0].terms
    ('popular', (('sex',), ('texp',)), 'school', (('sex',),))
    >>> parse_formula("y ~ a*b").fixed
    (('a',), ('b',), ('a', 'b'))
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}")
    tokens = _tokenize(formula)
    if tokens.count("~") != 1:
        raise ValueError(f"formula {formula!r} must contain exactly one '~'")
    tilde = tokens.index("~")
    lhs, rhs = tokens[:tilde], tokens[tilde + 1 :]
    if len(lhs) > 1:
        raise ValueError(f"formula {formula!r}: the response must be a single column name, got {' '.join(lhs)!r}")
    response = _name(lhs[0]) if lhs else None
    if not rhs:
        raise ValueError(f"formula {formula!r} has no right-hand side")
    parser = _Parser(rhs, formula)
    try:
        expr = parser.expr()
    except RecursionError:
        raise ValueError(f"formula {formula[:60]!r}...: parentheses nested too deeply to parse") from None
    if parser.peek() is not None:
        parser.error(f"unexpected {parser.peek()!r}")

    group, blocks = None, []
    for rterm in expr.random:
        if group is not None and rterm.group != group:
            raise ValueError(
                f"formula {formula!r}: crossed grouping factors ({group!r} and {rterm.group!r}) are not supported; "
                f"{SUPPORTED_FORMS}"
            )
        group = rterm.group
        if rterm.expr.random:
            parser.error("random-effects terms cannot be nested inside each other")
        intercept = rterm.expr.intercept is not False
        terms = _order_terms(rterm.expr.terms)
        if rterm.double_bar:
            if intercept:
                blocks.append(RandomBlock(True, ()))
            blocks.extend(RandomBlock(False, (t,)) for t in terms)
        else:
            if not intercept and not terms:
                parser.error(f"the random term for {group!r} has no effects")
            blocks.append(RandomBlock(intercept, terms))
    # the same effect twice for one grouping factor would not be identified
    seen = []
    for block in blocks:
        items = ([()] if block.intercept else []) + [frozenset(t) for t in block.terms]
        for item in items:
            if item in seen:
                label = "the intercept" if item == () else ":".join(sorted(item))
                parser.error(f"{label} appears in two random-effects terms of {group!r}")
            seen.append(item)
    fixed = _order_terms(expr.terms)
    if response is not None:
        for t in fixed:
            if response in t:
                parser.error(f"the response {response!r} also appears on the right-hand side")
    if group is not None and any(group in t for t in fixed):
        parser.error(f"the grouping factor {group!r} also appears as a fixed effect")
    return ParsedFormula(
        formula=formula,
        response=response,
        intercept=expr.intercept is not False,
        fixed=fixed,
        group=group,
        random=tuple(blocks),
    )


# --------------------------------------------------------------------------- designs
def _is_categorical(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _levels_of(series: pd.Series, reference) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        # categories absent from the data would give all-zero dummy columns (a rank-deficient design): R's
        # droplevels. A level present in some completed datasets only then shows as different terms in
        # the pooler, which names them.
        present = set(series.dropna().unique())
        levels = [c for c in series.cat.categories if c in present]
    else:
        values = series.dropna().unique()
        try:
            levels = sorted(values)
        except TypeError:
            levels = sorted(values, key=str)
    return _with_reference(levels, reference, series.name)


def _given_levels(series: pd.Series, given, reference) -> list:
    """Levels fixed by the caller: the data may hold no other (an absent one is an all-zero column)."""
    levels = list(pd.unique(pd.Series(list(given), dtype=object)))
    if len(levels) != len(list(given)):
        raise ValueError(f"the levels given for column {series.name!r} repeat a level: {list(given)}")
    values = series.dropna()
    outside = ~values.isin(levels)
    if outside.any():
        raise ValueError(
            f"column {series.name!r} holds levels {list(pd.unique(values[outside]))[:5]} that are not "
            f"among the levels given for it ({levels})"
        )
    return _with_reference(levels, reference, series.name)


def _with_reference(levels: list, reference, name) -> list:
    if reference is not None:
        if reference not in levels:
            raise ValueError(f"reference level {reference!r} of column {name!r} is not among its levels {levels}")
        levels.remove(reference)
        levels.insert(0, reference)
    return levels


def _unused_categories(data: pd.DataFrame, levels: dict) -> dict:
    """Declared categories of pandas categorical columns that are not among their levels."""
    dropped = {}
    for var, used in levels.items():
        if isinstance(data[var].dtype, pd.CategoricalDtype):
            unused = [c for c in data[var].cat.categories if c not in set(used)]
            if unused:
                dropped[var] = unused
    return dropped


def observed_levels(parsed: ParsedFormula, data: pd.DataFrame) -> dict:
    """Levels of the formula's categorical predictors that ``data`` holds (missing values aside).

    Categories a pandas categorical declares but no row holds are left out, so the result,
    passed as ``category_levels`` (an analysis model's ``levels``), codes every completed
    dataset of ``data`` alike.

    Parameters
    ----------
    parsed : ParsedFormula
        The parsed formula (:func:`parse_formula`).
    data : DataFrame
        The data, possibly incomplete.

    Returns
    -------
    dict
        Column -> its observed levels, in order.
    """
    levels = {}
    for var in parsed.variables:
        if var in (parsed.response, parsed.group) or var not in data.columns:
            continue
        if _is_categorical(data[var]) and data[var].notna().any():
            levels[var] = _levels_of(data[var], None)
    return levels


def unused_categories_note(dropped: dict) -> str:
    """The note saying which declared categories no row holds, so the design leaves them out ("" if none)."""
    if not dropped:
        return ""
    listed = "; ".join(f"{var}: {[str(c) for c in cats]}" for var, cats in dropped.items())
    return f"categories declared but never observed are left out of the design ({listed})"


def _level_label(level) -> str:
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def _factor_codes(series: pd.Series, levels: list) -> np.ndarray:
    lookup = {lev: i for i, lev in enumerate(levels)}
    codes = series.map(lookup)
    unseen = codes.isna() & series.notna()
    if unseen.any():
        bad = list(pd.unique(series[unseen]))[:5]
        raise ValueError(f"column {series.name!r} has levels not seen at fit: {bad} (known levels: {levels})")
    return codes.to_numpy(dtype=float)


def _term_columns(term, data, levels, full_coding) -> tuple[list[np.ndarray], list[str]]:
    """Columns of one term: the product of its variables' codings (first variable varies fastest)."""
    cols, names = [np.ones(len(data))], [""]
    for var in term:
        if var in levels:
            codes = _factor_codes(data[var], levels[var])
            use = range(len(levels[var])) if var in full_coding else range(1, len(levels[var]))
            var_cols = [(codes == j).astype(float) for j in use]
            var_names = [var + _level_label(levels[var][j]) for j in use]
        else:
            var_cols = [data[var].to_numpy(dtype=float)]
            var_names = [var]
        cols = [c * vc for vc in var_cols for c in cols]
        names = [(n + ":" if n else "") + vn for vn in var_names for n in names]
    return cols, names


def _model_matrix(terms, intercept, data, levels) -> tuple[np.ndarray, list[str]]:
    """R's model.matrix with treatment contrasts (margin rule of R's TermCode)."""
    cols, names = [], []
    if intercept:
        cols.append(np.ones(len(data)))
        names.append("(Intercept)")
    present = [frozenset()] if intercept else []
    for term in terms:
        full = set()
        for var in term:
            if var not in levels:
                continue
            margin = frozenset(v for v in term if v != var)
            if margin not in present:
                full.add(var)
        if len(term) == 1 and term[0] in full:
            present.append(frozenset())  # a fully coded factor plays the intercept's role
        c, n = _term_columns(term, data, levels, full)
        cols.extend(c)
        names.extend(n)
        present.append(frozenset(term))
    X = np.column_stack(cols) if cols else np.empty((len(data), 0))
    return X, names


def build_design(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    levels: dict | None = None,
    group_levels: pd.Index | None = None,
    reference_levels: dict | None = None,
    require_response: bool = True,
    missing: str = "raise",
    category_levels: dict | None = None,
) -> Design:
    """Numeric design matrices of a parsed formula on a DataFrame.

    Parameters
    ----------
    parsed : ParsedFormula
    data : DataFrame
        Must hold every column the formula names; no missing values in them.
    levels : dict, default=None
        Levels of categorical variables from a previous design (new data are coded with
        them; an unseen level is an error). None learns them from ``data``.
    group_levels : Index, default=None
        Cluster labels from a previous design: clusters of ``data`` not among them get code -1.
        None learns them from ``data``.
    reference_levels : dict, default=None
        Reference (first) level per categorical column, e.g. ``{"motor_score": "5/6"}``.
    require_response : bool, default=True
        Whether the response column must be present.
    missing : {"raise", "drop"}, default="raise"
        Rows with a missing value in a used column: an error, or dropped (R's ``na.omit``).
    category_levels : dict, default=None
        Levels of some categorical columns, in order, used whatever ``data`` holds (the
        reference level first unless ``reference_levels`` names another): a value outside
        them is an error, a level no row holds an all-zero column. Default: the levels
        present in ``data``. Ignored when ``levels`` is given.

    Returns
    -------
    Design

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2, 3, 4], "f": ["b", "a", "c", "a"], "x": [0.5, 1, 2, 3]})
    >>> build_design(parse_formula("y ~ f*x"), df).fixed_names
    ['(Intercept)', 'fb', 'fc', 'x', 'fb:x', 'fc:x']
    """
    if not isinstance(parsed, ParsedFormula):
        raise TypeError(f"parsed must be a ParsedFormula (from parse_formula), got {type(parsed).__name__}")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame holding the formula's columns, got {type(data).__name__}")
    needed = [v for v in parsed.variables if require_response or v != parsed.response]
    missing_cols = [v for v in needed if v not in data.columns]
    if missing_cols:
        raise ValueError(f"columns {missing_cols} of formula {parsed.formula!r} are not in the data")
    repeated = [v for v in parsed.variables if v in data.columns and isinstance(data[v], pd.DataFrame)]
    if repeated:
        raise ValueError(f"columns {repeated} of formula {parsed.formula!r} appear more than once in the data")
    has_response = parsed.response is not None and parsed.response in data.columns
    used = [v for v in needed if v != parsed.response or has_response]
    nan_cols = [v for v in used if data[v].isna().any()]
    if nan_cols and missing == "drop":
        data = data.loc[data[used].notna().all(axis=1)]
        if len(data) == 0:
            raise ValueError(f"no complete rows left for formula {parsed.formula!r} after dropping missing values")
    elif nan_cols:
        counts = {v: int(data[v].isna().sum()) for v in nan_cols}
        raise ValueError(f"columns have missing values (impute them first, or drop the rows): {counts}")
    unusable = [
        f"{v!r} ({data[v].dtype})"
        for v in used
        if v != parsed.group and not (_is_categorical(data[v]) or pd.api.types.is_numeric_dtype(data[v].dtype))
    ]
    if unusable:
        raise TypeError(
            f"columns {', '.join(unusable)} of formula {parsed.formula!r} are neither numeric nor categorical; "
            "convert them first (e.g. dates to elapsed days)"
        )
    infinite = [
        v
        for v in used
        if v != parsed.group
        and not _is_categorical(data[v])
        and not np.isfinite(data[v].to_numpy(dtype=float, na_value=np.nan)).all()
    ]
    if infinite:
        raise ValueError(f"columns {infinite} of formula {parsed.formula!r} hold infinite values")
    reference_levels = dict(reference_levels or {})
    unknown = set(reference_levels) - set(parsed.variables)
    if unknown:
        raise ValueError(f"reference_levels names columns not in the formula: {sorted(unknown)}")

    category_levels = dict(category_levels or {})
    unknown = set(category_levels) - set(parsed.variables)
    if unknown:
        raise ValueError(f"levels are given for columns not in the formula: {sorted(unknown, key=str)}")

    if levels is None:
        levels = {}
        for var in parsed.variables:
            if var in (parsed.response, parsed.group):
                continue
            if _is_categorical(data[var]):
                if var in category_levels:
                    levels[var] = _given_levels(data[var], category_levels[var], reference_levels.get(var))
                else:
                    levels[var] = _levels_of(data[var], reference_levels.get(var))
                if len(levels[var]) < 2:
                    raise ValueError(
                        f"column {var!r} of formula {parsed.formula!r} is categorical with "
                        f"{len(levels[var])} level(s) {levels[var]}: a factor needs two or more levels to "
                        "have an effect; drop it from the formula"
                    )
            elif var in reference_levels or var in category_levels:
                raise ValueError(
                    f"{'reference_levels' if var in reference_levels else 'levels'} given for numeric column "
                    f"{var!r}; convert it to a categorical first"
                )

    X, fixed_names = _model_matrix(parsed.fixed, parsed.intercept, data, levels)
    y = None
    if has_response:
        resp = data[parsed.response]
        if _is_categorical(resp):
            resp_levels = _levels_of(resp, None)
            if len(resp_levels) != 2:
                raise ValueError(
                    f"response {parsed.response!r} is categorical with {len(resp_levels)} levels; "
                    "give a numeric or two-level response"
                )
            y = (resp == resp_levels[1]).to_numpy(dtype=float)
        else:
            y = resp.to_numpy(dtype=float)

    design = Design(y=y, X=X, fixed_names=fixed_names, levels=levels, dropped_levels=_unused_categories(data, levels))
    if parsed.group is None:
        return design
    cols, names, blocks = [], [], []
    for block in parsed.random:
        Zb, nb = _model_matrix(block.terms, block.intercept, data, levels)
        blocks.append(np.arange(len(names), len(names) + len(nb)))
        cols.append(Zb)
        names.extend(nb)
    design.Z = np.column_stack(cols)
    design.random_names = names
    design.blocks = blocks
    labels = data[parsed.group]
    if group_levels is None:
        codes, uniques = pd.factorize(labels, sort=True)
        design.group_levels = pd.Index(uniques, name=parsed.group)
        design.groups = codes.astype(np.intp)
    else:
        design.group_levels = group_levels
        design.groups = group_levels.get_indexer(labels).astype(np.intp)
    return design
