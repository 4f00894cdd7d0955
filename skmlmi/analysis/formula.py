"""lme4-style model formulas: Wilkinson formulas (formulaic) for the fixed part, lme4's bars on top.

This room turns a formula string such as ``"popular ~ 1 + sex + texp + (1 + sex | school)"``
into a :class:`ParsedFormula` (what the user asked for) and, given a DataFrame, into a
:class:`Design` (numeric arrays with R's column names). It knows nothing about fitting.

Syntax
------
* response ``y ~ ...``: a column name (backticks quote names with special characters);
* fixed part: Wilkinson formulas as formulaic reads them: ``1``/``0``/``-1``, ``a + b``,
  ``a - b``, interactions ``a:b``, crossing ``a*b``, nesting ``a/b``, powers ``(a + b)^2``;
  each factor is a column or an expression of :mod:`skmlmi._expressions` (``np.log(x)``,
  ``I(x ** 2)``), optionally wrapped whole in one of its ``TERM_FUNCTIONS``:
  ``C(f, Treatment("b"))``, ``poly(x, 2)``, ``bs(x, df=4)``, ``cr(x, df=4)``, ``scale(x)``, ...;
* random part, lme4's bars: ``(1 | g)``, ``(1 + x | g)`` (correlated), ``(x || g)``
  (uncorrelated), ``(0 + x | g)``, ``(1 | g:h)``, nested ``(1 | a/b)`` = ``(1 | a) + (1 | b:a)``,
  crossed ``(1 | a) + (1 | b)``. The parse names each grouping factor and its terms
  (:class:`RandomFactor`); a design holds one :class:`FactorDesign` per grouping factor.

Safety: the formula is split here into operators and factors; every factor is parsed and
checked by :func:`skmlmi._expressions.parse_term` and its value computed by that module's
evaluator. formulaic then receives a formula written by this module, whose factors are
placeholder columns holding those values, wrapped in the checked functions with literal
options: no text of the user's reaches formulaic's ``eval``.

Categorical predictors (pandas categorical, string/object or bool columns, and columns in
``C()``) are coded with treatment contrasts as R does: the first level (categories order for
a pandas categorical, sorted values otherwise, or a level chosen with ``reference_levels`` or
``C(f, Treatment(level))``) is the reference, and a column is named variable + level
(``motor_score1/2``, ``typeRCT``, ``flagTRUE``). A factor whose margin is absent from the
model gets one indicator per level (formulaic's structural full-rank coding, R's
``model.matrix`` in the usual cases). Interaction columns are named ``a:b``; terms are
ordered by degree, as R's ``terms()``. Transformed terms keep their text
(``np.log(x)``, ``I(x ** 2)``, ``poly(x, 2)1``).

Categories a pandas categorical declares but no row holds are left out (R's
``droplevels``) and listed in ``Design.dropped_levels``; ``category_levels`` fixes the levels
instead, so that several datasets (the completed datasets of a multiple imputation) are
coded alike. Stateful transforms (``scale``, ``poly``, splines) keep the state learnt on the
training data in ``Design.state`` for new data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from .._expressions import Term, parse_term

__all__ = [
    "Design",
    "FactorDesign",
    "ParsedFormula",
    "RandomBlock",
    "RandomFactor",
    "build_design",
    "fixed_design_at",
    "observed_levels",
    "parse_formula",
]

ONE_FACTOR_FORMS = "one grouping factor g: (1 | g), (1 + x | g), (0 + x | g), (1 | g) + (0 + x | g), (1 + x || g)"
_HIDDEN = re.compile(r"_t(\d+)_")


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class RandomBlock:
    """One block of correlated random effects of a grouping factor.

    Attributes
    ----------
    intercept : bool
        Whether the block holds a random intercept.
    terms : tuple of tuple of str
        Non-intercept terms (each a tuple of factor texts; length > 1 = interaction).
    rhs : str
        The block as the formula written for formulaic reads it (stand-in column names).
    """

    intercept: bool
    terms: tuple[tuple[str, ...], ...]
    rhs: str = field(default="", repr=False, compare=False)  # the block as formulaic reads it


@dataclass(frozen=True)
class RandomFactor:
    """A grouping factor of the random part and its blocks.

    Attributes
    ----------
    name : str
        As lme4 names it: ``"school"``, ``"class:school"`` for ``(1 | school/class)``.
    columns : tuple of str
        The data columns whose combinations are its levels.
    blocks : tuple of RandomBlock
        Effects in different blocks are uncorrelated.
    text : str
        The first random-effects term that introduced it, as written.
    """

    name: str
    columns: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    text: str


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
        Fixed non-intercept terms (tuples of factor texts), ordered by degree as R's ``terms()``.
    random_factors : tuple of RandomFactor
        The grouping factors of the random part, in order of appearance.
    terms : dict
        Factor text -> its checked :class:`skmlmi._expressions.Term`.
    rhs : str
        The fixed part as the formula written for formulaic reads it (stand-in column names).
    hidden : tuple of str
        The factor text each stand-in ``_tK_`` of ``rhs`` replaces (position K).
    """

    formula: str
    response: str | None
    intercept: bool
    fixed: tuple[tuple[str, ...], ...]
    random_factors: tuple[RandomFactor, ...] = ()
    terms: dict = field(default_factory=dict, repr=False, compare=False)
    rhs: str = field(default="1", repr=False, compare=False)  # the fixed part as formulaic reads it
    hidden: tuple = field(default=(), repr=False, compare=False)  # placeholder k -> factor text

    @property
    def group(self) -> str | None:
        """The one grouping factor (None for a single-level model); with several, an error (read ``random_factors``)."""
        if not self.random_factors:
            return None
        self.single_factor()
        return self.random_factors[0].name

    @property
    def random(self) -> tuple[RandomBlock, ...]:
        """Blocks of the random part (of the one grouping factor)."""
        if not self.random_factors:
            return ()
        self.single_factor()
        return self.random_factors[0].blocks

    def single_factor(self) -> RandomFactor:
        """The one grouping factor; a clear error for a model that takes one (LogisticMixedModel, ``.group``)."""
        if len(self.random_factors) > 1:
            names = [f.name for f in self.random_factors]
            raise ValueError(
                f"formula {self.formula!r}: the term {self.random_factors[1].text!r} adds a second grouping factor "
                f"({', '.join(repr(n) for n in names)}); this takes one grouping factor ({ONE_FACTOR_FORMS}, or "
                "(1 | g:h) for one combined factor); LinearMixedModel fits several, read random_factors"
            )
        return self.random_factors[0]

    def columns_of(self, terms: Iterable[tuple[str, ...]]) -> list[str]:
        """Data columns used by the given terms.

        Parameters
        ----------
        terms : iterable of tuple of str
            Terms as tuples of factor texts (as in ``fixed`` or a block's ``terms``).

        Returns
        -------
        list of str
        """
        return list(dict.fromkeys(c for t in terms for text in t for c in self.terms[text].value.names))

    @property
    def fixed_variables(self) -> list[str]:
        """Data columns the fixed part uses."""
        return self.columns_of(self.fixed)

    @property
    def variables(self) -> list[str]:
        """All data columns the formula uses (response first, grouping columns last)."""
        names = self.fixed_variables
        for factor in self.random_factors:
            names += self.columns_of(t for b in factor.blocks for t in b.terms)
        names = [n for n in dict.fromkeys(names) if n != self.response]
        if self.response is not None:
            names.insert(0, self.response)
        for factor in self.random_factors:
            names += [c for c in factor.columns if c not in names]
        return names

    @property
    def is_mixed(self) -> bool:
        return bool(self.random_factors)


@dataclass
class FactorDesign:
    """Random-effects design of one grouping factor on one DataFrame.

    Attributes
    ----------
    name : str
        The factor as lme4 names it (``"school"``, ``"class:school"``).
    Z : ndarray of shape (n, q)
        The factor's random-effects design (its q effects per cluster).
    random_names : list of str
        R's names of the q effects (``(Intercept)``, ``year``).
    blocks : list of ndarray
        Column indices of Z per uncorrelated block.
    groups : ndarray of shape (n,)
        Integer cluster codes 0..J-1 (-1 for clusters unseen at fit).
    group_levels : Index
        Cluster labels in code order (``"a:b"`` text for a combined factor).
    specs : list
        formulaic's model specs of the blocks (new data are coded with them).
    """

    name: str
    Z: np.ndarray
    random_names: list[str]
    blocks: list[np.ndarray]
    groups: np.ndarray
    group_levels: pd.Index
    specs: list = field(default_factory=list, repr=False)

    @property
    def n_groups(self) -> int:
        return len(self.group_levels)


@dataclass
class Design:
    """Numeric design of a parsed formula on one DataFrame.

    Attributes
    ----------
    y : ndarray of shape (n,) or None
    X : ndarray of shape (n, p)
        Fixed-effects design, with the intercept column when the formula has one.
    fixed_names : list of str
        R-style column names of X (``(Intercept)``, ``sex``, ``typeRCT``, ``a:b``, ``np.log(x)``).
    Z : ndarray of shape (n, q) or None
        Random-effects design (of the one grouping factor; None with several, see ``factors``).
    random_names : list of str
    blocks : list of ndarray
        Column indices of Z per uncorrelated block.
    groups : ndarray of shape (n,) or None
        Integer cluster codes 0..J-1 (codes of ``group_levels``; -1 for clusters unseen at fit).
    group_levels : Index or None
        Cluster labels in code order (``"a:b"`` text for a combined factor).
    levels : dict
        Levels of every categorical variable (reuse them on new data).
    dropped_levels : dict
        Categories a pandas categorical declares that are not among its levels (no row holds
        them), per variable; only variables with such categories appear.
    state : dict
        What new data are coded with: formulaic's model specs (contrasts, the state of
        stateful transforms) of the fixed part and of each random block.
    factors : list of FactorDesign
        One per grouping factor, in the formula's order. With one factor, ``Z``,
        ``random_names``, ``blocks``, ``groups`` and ``group_levels`` are its arrays.
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
    state: dict = field(default_factory=dict, repr=False)
    factors: list[FactorDesign] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return 0 if self.group_levels is None else len(self.group_levels)


# --------------------------------------------------------------------------- reading a formula
# The only hand-written parsing left: splitting the text into operators and factors (so each factor
# is checked alone) and lifting lme4's bars out of the fixed part.
_OPERATORS = ("||", "**", "|", "^", "~", "+", "-", "*", "/", ":", "(", ")")
#: Largest expansion of a power of a sum of terms, ``(a + b + c)^k``, counted as terms^k: formulaic forms that
#: many products, in about 20 microseconds each (k = 6 on 6 terms, 46,656 products: 1 s; 10 terms to the 10th
#: did not end), and a formula's string must not hang the caller.
MAX_POWER_PRODUCTS = 50_000
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _lex(text: str, formula: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: kind "op", "number" or "factor" (a name, a backticked name, or a call)."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(("op", op))
            i += len(op)
            continue
        if ch.isdigit():
            match = re.compile(r"\d+(\.\d*)?").match(text, i)
            tokens.append(("number", match.group(0)))
            i = match.end()
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise ValueError(f"formula {formula!r}: a backtick at position {i} is not closed")
            tokens.append(("factor", text[i : end + 1]))
            i = end + 1
            continue
        match = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*").match(text, i)
        if match is None:
            hint = " (write I(...) for an expression)" if ch == "{" else ""
            raise ValueError(f"formula {formula!r}: cannot read {text[i : i + 10]!r} at position {i}{hint}")
        j = match.end()
        while j < n and text[j].isspace():
            j += 1
        if j < n and text[j] == "(":
            j = _call_end(text, j, formula)
        else:
            j = match.end()
        tokens.append(("factor", text[i:j]))
        i = j
    return tokens


def _call_end(text: str, start: int, formula: str) -> int:
    """Position after the parenthesis closing the one at ``start`` (quotes and brackets respected)."""
    stack, i = [], start
    while i < len(text):
        ch = text[i]
        if ch in "'\"`":  # strings, and backticked names (which may hold quotes and parentheses)
            end = i + 1
            while end < len(text) and text[end] != ch:
                end += 2 if text[end] == "\\" and ch != "`" else 1
            i = end + 1
            continue
        if ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                break
            if not stack:
                return i + 1
        i += 1
    raise ValueError(f"formula {formula!r}: the call starting at position {start} is not closed")


def _matching(tokens: list, start: int) -> int:
    depth = 0
    for k in range(start, len(tokens)):
        if tokens[k] == ("op", "("):
            depth += 1
        elif tokens[k] == ("op", ")"):
            depth -= 1
            if depth == 0:
                return k
    raise ValueError("unbalanced parentheses")


def _text(tokens) -> str:
    return " ".join(t for _, t in tokens)


class _Reader:
    """Turns the right-hand side into formulaic's text, checking every factor on the way."""

    def __init__(self, formula: str):
        self.formula = formula
        self.keys: dict = {}  # canonical factor -> k
        self.hidden: list[tuple[str, Term]] = []  # k -> (display text, term)

    def error(self, message: str):
        raise ValueError(f"formula {self.formula!r}: {message}")

    def factor(self, text: str) -> str:
        term = parse_term(text, label=f"term {text!r} of formula {self.formula!r}")
        key = (term.wrapper, repr(term.value.tree), term.value.names, repr(term.options))
        if key not in self.keys:
            self.keys[key] = len(self.hidden)
            shown = term.column if term.column is not None and term.wrapper in (None, "C") else text.strip()
            self.hidden.append((shown, term))
        k = self.keys[key]
        wrapper = self.hidden[k][1].wrapper
        if wrapper in (None, "I"):
            return f"_t{k}_"
        if wrapper == "C":
            contrast = dict(term.options).get("contrasts")
            # a treatment reference is put first among the levels, so no level is ever written into the text
            if contrast is None or contrast[0] == "Treatment":
                return f"C(_t{k}_)"
            return f"C(_t{k}_, {contrast[0]}())"
        options = "".join(f", {name}={value!r}" for name, value in term.options)
        return f"{wrapper}(_t{k}_{options})"

    def wilkinson(self, tokens: list) -> str:
        """formulaic's text of a bar-free token list."""
        out = []
        for k, (kind, text) in enumerate(tokens):
            previous = tokens[k - 1][1] if k else None
            if kind == "factor":
                out.append(self.factor(text))
            elif kind == "number":
                if previous in ("^", "**"):
                    if not text.isdigit() or int(text) < 1:
                        self.error(f"the power in (...)^{text} must be a positive integer")
                    self.check_power(tokens[: k - 1], int(text))
                elif text not in ("0", "1"):
                    self.error(f"numeric constant {text} is not a term (only 0 and 1 are); write I({text}) for one")
                out.append(text)
            elif text in ("|", "||", "~"):
                self.error(f"unexpected {text!r}: random-effects terms stand alone in parentheses, as (1 + x | g)")
            else:
                out.append(text)
        return " ".join(out) or "1"

    def check_power(self, before: list, power: int) -> None:
        """A power of a group whose expansion would take formulaic too long, or a power of a power, is an error.

        The group's terms are counted by formulaic's own expansion of the group without the power (cheap:
        the group holds no power), so crossings (``a*b``: 3 terms) and interactions of sums (``(a+b):(c+d)``:
        4 terms) count as they expand."""
        if before and before[-1][0] == "number":  # (...)^j^k: formulaic keeps one of the powers, R reads ^(j^k)
            self.error("a power of a power, (...)^j^k, is not expanded: write the terms wanted")
        if not before or before[-1] != ("op", ")"):
            return  # a power of one factor: itself
        depth, start = 0, 0
        for start in range(len(before) - 1, -1, -1):
            depth += {("op", ")"): 1, ("op", "("): -1}.get(before[start], 0)
            if depth == 0:
                break
        group = before[start + 1 : -1]
        if any(token in (("op", "^"), ("op", "**")) for token in group):
            self.error("a power of a power, ((...)^j)^k, is not expanded: write the terms wanted")
        try:
            terms = sum(1 for term in Formula(self.wilkinson(group)) if str(term) != "1")
        except Exception:  # not a formula on its own: formulaic's parse of the whole says what is wrong
            return
        if terms**power > MAX_POWER_PRODUCTS:
            self.error(
                f"(...)^{power} of {terms} terms is expanded through {terms}^{power} products, more than "
                f"{MAX_POWER_PRODUCTS:,}: write the interactions wanted, or a smaller power"
            )

    def terms_of(self, rhs: str) -> tuple[bool, list[tuple[str, ...]], list[str]]:
        """Intercept, terms (factor texts) and terms as formulaic text, of formulaic's parse of ``rhs``."""
        try:
            parsed = Formula(rhs)
        except Exception as exc:  # formulaic's parse errors carry the rewritten text: report the user's
            self.error(f"not a valid formula ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        intercept, terms, texts = False, [], []
        for term in parsed:
            exprs = [f.expr for f in term.factors]
            if exprs == ["1"]:
                intercept = True
                continue
            terms.append(tuple(self.hidden[int(_HIDDEN.search(e).group(1))][0] for e in exprs))
            texts.append(str(term))
        return intercept, terms, texts


def _split_response(formula: str) -> tuple[str | None, str]:
    tokens = _lex(formula, formula)
    tildes = [k for k, t in enumerate(tokens) if t == ("op", "~")]
    if len(tildes) != 1:
        raise ValueError(f"formula {formula!r} must contain exactly one '~'")
    lhs = tokens[: tildes[0]]
    if len(lhs) > 1 or (lhs and (lhs[0][0] != "factor" or "(" in lhs[0][1])):
        raise ValueError(
            f"formula {formula!r}: the response must be a single column name, got {_text(lhs)!r} (make a derived "
            "column of a transformed response)"
        )
    response = None
    if lhs:
        response = lhs[0][1][1:-1] if lhs[0][1].startswith("`") else lhs[0][1]
    if not tokens[tildes[0] + 1 :]:
        raise ValueError(f"formula {formula!r} has no right-hand side")
    return response, tokens[tildes[0] + 1 :]


def _lift_bars(tokens: list, reader: _Reader) -> tuple[list, list]:
    """The fixed part's tokens, and each random-effects term as (lhs tokens, '||'?, grouping tokens, text)."""
    fixed, bars, k = [], [], 0
    while k < len(tokens):
        if tokens[k] != ("op", "("):
            fixed.append(tokens[k])
            k += 1
            continue
        try:
            end = _matching(tokens, k)
        except ValueError:
            reader.error("a parenthesis is not closed")
        inner, depth, bar = tokens[k + 1 : end], 0, None
        for j, token in enumerate(inner):
            depth += token == ("op", "(")
            depth -= token == ("op", ")")
            if depth == 0 and token[0] == "op" and token[1] in ("|", "||"):
                bar = j
                break
        if bar is None:
            fixed.extend(tokens[k : end + 1])
            k = end + 1
            continue
        text = "(" + _text(inner) + ")"
        before = fixed[-1] if fixed else None
        after = tokens[end + 1] if end + 1 < len(tokens) else None
        if before not in (None, ("op", "+")) or after not in (None, ("op", "+")):
            reader.error(f"the random-effects term {text} must stand alone, added with '+' (as ... + (1 | g))")
        if before is not None:
            fixed.pop()
        bars.append((inner[:bar], inner[bar][1] == "||", inner[bar + 1 :], text))
        k = end + 1
        if before is None and after is not None:
            k += 1  # the '+' after a leading random term
    return fixed, bars


def _grouping(tokens: list, reader: _Reader, text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(lme4 name, columns) of each grouping factor a bar's right-hand side makes: a/b -> a, b:a."""
    segments, current = [], []
    for k, (kind, token) in enumerate(tokens):
        if kind == "factor" and (k == 0 or tokens[k - 1][1] in (":", "/")):
            term = parse_term(token, label=f"grouping factor {token!r} of formula {reader.formula!r}")
            if term.column is None or term.wrapper is not None:
                reader.error(f"the grouping factor of {text} must be a column, got {token!r}")
            current.append(term.column)
        elif kind == "op" and token in (":", "/") and current and k + 1 < len(tokens):
            if token == "/":
                segments.append(current)
                current = []
        else:
            reader.error(
                f"cannot read the grouping factor of {text}: write g, g:h (one combined factor) or a/b (nested, "
                f"= (... | a) + (... | b:a)); crossed factors are separate terms, (1 | a) + (1 | b)"
            )
    segments.append(current)
    if not segments[0]:
        reader.error(f"the random-effects term {text} has no grouping factor")
    out = []
    for i in range(len(segments)):
        used = segments[: i + 1]
        out.append((":".join(":".join(s) for s in reversed(used)), tuple(c for s in used for c in s)))
    return out


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
        Malformed formulas, and factors outside the expression language (named). Nothing is evaluated.

    Examples
    --------
    >>> f = parse_formula("popular ~ 1 + sex + texp + (1 + sex | school)")
    >>> f.response, f.fixed, f.group, f.random[0].terms
    ('popular', (('sex',), ('texp',)), 'school', (('sex',),))
    >>> parse_formula("y ~ a*b + I(a ** 2)").fixed
    (('a',), ('b',), ('I(a ** 2)',), ('a', 'b'))
    >>> [(g.name, g.columns) for g in parse_formula("y ~ x + (1 | school/class)").random_factors]
    [('school', ('school',)), ('class:school', ('school', 'class'))]
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}")
    if len(formula) > 10_000:
        raise ValueError(f"formula {formula[:60]!r}... has {len(formula)} characters, more than 10000")
    response, rhs = _split_response(formula)
    reader = _Reader(formula)
    fixed_tokens, bars = _lift_bars(rhs, reader)
    fixed_rhs = reader.wilkinson(fixed_tokens)
    intercept, fixed, _ = reader.terms_of(fixed_rhs)

    factors: dict = {}
    for lhs, double, group_tokens, text in bars:
        if not lhs:
            reader.error(f"the random-effects term {text} has no effects before the bar")
        block_rhs = reader.wilkinson(lhs)
        has_intercept, terms, texts = reader.terms_of(block_rhs)
        if double:
            blocks = [RandomBlock(True, (), "1")] if has_intercept else []
            blocks += [RandomBlock(False, (t,), f"0 + {s}") for t, s in zip(terms, texts, strict=True)]
        else:
            if not has_intercept and not terms:
                reader.error(f"the random-effects term {text} has no effects")
            blocks = [RandomBlock(has_intercept, tuple(terms), block_rhs)]
        for name, columns in _grouping(group_tokens, reader, text):
            entry = factors.setdefault(frozenset(columns), [name, columns, [], text])
            entry[2].extend(blocks)
    random_factors = tuple(RandomFactor(n, c, tuple(b), t) for n, c, b, t in factors.values())

    terms = {shown: term for shown, term in reader.hidden}
    parsed = ParsedFormula(
        formula, response, intercept, tuple(fixed), random_factors, terms, fixed_rhs, tuple(reader.hidden)
    )
    for factor in random_factors:  # the same effect twice for one grouping factor would not be identified
        seen = []
        for block in factor.blocks:
            for item in ([()] if block.intercept else []) + [frozenset(t) for t in block.terms]:
                if item in seen:
                    label = "the intercept" if item == () else ":".join(sorted(item))
                    reader.error(f"{label} appears in two random-effects terms of {factor.name!r}")
                seen.append(item)
        used = [c for c in factor.columns if c in parsed.fixed_variables]
        if used:
            reader.error(f"the grouping factor {used[0]!r} also appears as a fixed effect")
    random_columns = [
        c for f in random_factors for c in (*f.columns, *parsed.columns_of(t for b in f.blocks for t in b.terms))
    ]
    if response is not None and response in parsed.fixed_variables + random_columns:
        reader.error(f"the response {response!r} also appears on the right-hand side")
    return parsed


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

    Factors are categorical columns used bare and any column in ``C()``. Categories a pandas
    categorical declares but no row holds are left out, so the result,
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
    grouping = {c for factor in parsed.random_factors for c in factor.columns}
    levels = {}
    for var, given in _categorical_columns(parsed, data).items():
        if var == parsed.response or var in grouping or given is not None:
            continue  # levels written in C(..., levels=[...]) are fixed already
        if data[var].notna().any():
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


def _categorical_columns(parsed: ParsedFormula, data: pd.DataFrame) -> dict:
    """Columns coded as factors (categorical columns used bare, and any column in C()) -> levels C() gives."""
    out: dict = {}
    for _, term in parsed.hidden:
        column = term.column
        if column is None or column not in data.columns:
            continue
        if term.wrapper == "C" or (term.wrapper is None and _is_categorical(data[column])):
            given = dict(term.options).get("levels")
            if given is not None or column not in out:
                out[column] = given
    return out


def _reference_of(term: Term, levels: list, column: str):
    """The level a C(..., Treatment(reference)) names, matched as written or as text (the CLI's strings)."""
    contrast = dict(term.options).get("contrasts")
    if contrast is None or contrast[0] != "Treatment" or not contrast[1]:
        return None
    wanted = contrast[1][0][1]
    if wanted in levels:
        return levels[levels.index(wanted)]
    as_text = [lev for lev in levels if _level_label(lev) == str(wanted) or str(lev) == str(wanted)]
    if len(as_text) != 1:
        raise ValueError(
            f"reference level {wanted!r} of column {column!r} in {term.text!r} is not among its levels {levels}"
        )
    return as_text[0]


def _check_known(series: pd.Series, levels: list) -> None:
    unseen = series.notna() & ~series.isin(levels)
    if unseen.any():
        bad = list(pd.unique(series[unseen]))[:5]
        raise ValueError(f"column {series.name!r} has levels not seen at fit: {bad} (known levels: {levels})")


def _factor_values(parsed: ParsedFormula, data: pd.DataFrame, levels: dict, undefined=None) -> pd.DataFrame:
    """The placeholder columns formulaic reads: each factor's values, computed by the expression evaluator.

    ``undefined``: None raises on a term that is not finite; a boolean array (one per row) is set
    where a term is not finite instead, and those values are set to 0 (rows the caller discards).
    """
    values = {}
    for k, (_, term) in enumerate(parsed.hidden):
        column = term.column
        if column is not None and column in levels and (term.wrapper == "C" or _is_categorical(data[column])):
            order = list(levels[column])
            reference = _reference_of(term, order, column)
            if reference is not None:
                order = _with_reference(order, reference, column)
            _check_known(data[column], order)
            values[f"_t{k}_"] = pd.Categorical(data[column].to_numpy(), categories=order)
            continue
        for name in term.value.names:
            if _is_categorical(data[name]) and not pd.api.types.is_bool_dtype(data[name].dtype):
                raise TypeError(
                    f"term {term.text!r} of formula {parsed.formula!r} computes with the categorical column {name!r}; "
                    "categorical columns enter as factors (bare, or in C())"
                )
        computed = term.value.evaluate(
            {j: data[name].to_numpy(dtype=float) for j, name in enumerate(term.value.names)}, n_rows=len(data)
        )
        bad = ~np.isfinite(computed)
        if bad.any() and undefined is not None:
            undefined |= bad
            computed = np.where(bad, 0.0, computed)
        elif bad.any():
            rows = list(data.index[bad][:5])
            raise ValueError(
                f"term {term.text!r} of formula {parsed.formula!r} is not finite in {int(bad.sum())} rows "
                f"(first: {rows})"
            )
        values[f"_t{k}_"] = computed
    return pd.DataFrame(values, index=pd.RangeIndex(len(data)))


def _peel(name: str, exprs: list[str]) -> list[str] | None:
    """Split formulaic's column name ``e1[l1]:e2[l2]`` into the labels of the factors ``exprs``."""
    if not name.startswith(exprs[0]):
        return None
    rest = name[len(exprs[0]) :]
    if len(exprs) == 1:
        return [rest] if rest == "" or (rest[0] == "[" and rest[-1] == "]") else None
    at = rest.find(":" + exprs[1])
    while at >= 0:
        label = rest[:at]
        if label == "" or (label[0] == "[" and label[-1] == "]"):
            tail = _peel(rest[at + 1 :], exprs[1:])
            if tail is not None:
                return [label, *tail]
        at = rest.find(":" + exprs[1], at + 1)
    return None


def _coefficient_names(spec, parsed: ParsedFormula, values: pd.DataFrame) -> list[str]:
    """R's names of formulaic's columns: (Intercept), variable + level, a:b, transformed terms as written."""
    names = []
    for structure in spec.structure:
        for column in structure.columns:
            names.append(_r_name(column, structure.scoped_terms, parsed, values))
    return names


def _r_name(column: str, scoped_terms, parsed: ParsedFormula, values: pd.DataFrame) -> str:
    for scoped in scoped_terms:
        factors = list(scoped.factors)
        if not factors:
            if column == "Intercept":
                return "(Intercept)"
            continue
        labels = _peel(column, [f.factor.expr for f in factors])
        if labels is None:
            continue
        pieces = []
        for scoped_factor, label in zip(factors, labels, strict=True):
            k = int(_HIDDEN.search(scoped_factor.factor.expr).group(1))
            level = label[1:-1]
            if scoped_factor.reduced and level.startswith("T."):
                level = level[2:]
            placeholder = values[f"_t{k}_"]
            if isinstance(placeholder.dtype, pd.CategoricalDtype) and pd.api.types.is_bool_dtype(
                placeholder.cat.categories.dtype
            ):
                level = {"True": "TRUE", "False": "FALSE"}.get(level, level)
            pieces.append(parsed.hidden[k][0] + level)
        return ":".join(pieces)
    return column  # not reached for formulaic's names; kept rather than failing a fit over a label


def _shown_value(parsed: ParsedFormula, k: int) -> str:
    """What placeholder k stands for in formulaic's text: the whole factor, or the value inside its wrapper."""
    shown, term = parsed.hidden[k]
    return shown if term.wrapper in (None, "I") else term.value.text


def _matrix(rhs: str, values: pd.DataFrame, spec, parsed: ParsedFormula):
    """formulaic's model matrix of the module-written ``rhs`` (or of a stored spec, for new data)."""
    try:
        if spec is None:
            matrix = model_matrix(rhs, values, context={}, na_action="raise")
        else:
            matrix = spec.get_model_matrix(values, context={})
    except Exception as exc:  # formulaic's messages show the placeholders: show the user's terms instead
        message = _HIDDEN.sub(lambda m: _shown_value(parsed, int(m.group(1))), str(exc).splitlines()[0])
        raise ValueError(f"formula {parsed.formula!r}: {message}") from None
    return matrix.to_numpy(dtype=float), _coefficient_names(matrix.model_spec, parsed, values), matrix.model_spec


def build_design(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    levels: dict | None = None,
    group_levels: pd.Index | dict | None = None,
    reference_levels: dict | None = None,
    require_response: bool = True,
    missing: str = "raise",
    category_levels: dict | None = None,
    state: dict | None = None,
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
    group_levels : Index or dict, default=None
        Cluster labels from a previous design: clusters of ``data`` not among them get code -1.
        A dict maps each grouping factor's name to its labels (several factors); None learns
        them from ``data``.
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
    state : dict, default=None
        ``Design.state`` of a previous design: new data are coded with its contrasts and the
        state of its stateful transforms (``scale``, ``poly``, splines).

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        Missing columns or values, unseen levels, non-finite transformed terms.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2, 3, 4], "f": ["b", "a", "c", "a"], "x": [0.5, 1, 2, 3]})
    >>> build_design(parse_formula("y ~ f*x"), df).fixed_names
    ['(Intercept)', 'fb', 'fc', 'x', 'fb:x', 'fc:x']
    >>> build_design(parse_formula('y ~ C(f, Treatment("c")) + np.log(x)'), df).fixed_names
    ['(Intercept)', 'fa', 'fb', 'np.log(x)']
    """
    if not isinstance(parsed, ParsedFormula):
        raise TypeError(f"parsed must be a ParsedFormula (from parse_formula), got {type(parsed).__name__}")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame holding the formula's columns, got {type(data).__name__}")
    group_columns = list(dict.fromkeys(c for factor in parsed.random_factors for c in factor.columns))
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
        if v not in group_columns and not (_is_categorical(data[v]) or pd.api.types.is_numeric_dtype(data[v].dtype))
    ]
    if unusable:
        raise TypeError(
            f"columns {', '.join(unusable)} of formula {parsed.formula!r} are neither numeric nor categorical; "
            "convert them first (e.g. dates to elapsed days)"
        )
    infinite = [
        v
        for v in used
        if v not in group_columns
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

    categorical = _categorical_columns(parsed, data)
    if levels is None:
        levels = {}
        for var in parsed.variables:
            if var in (parsed.response, *group_columns):
                continue
            if var in categorical:
                given = categorical[var] if categorical[var] is not None else category_levels.get(var)
                if given is not None:
                    levels[var] = _given_levels(data[var], given, reference_levels.get(var))
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
                    f"{var!r}; convert it to a categorical first (or write C({var}))"
                )
    state = dict(state or {})
    values = _factor_values(parsed, data, levels)
    X, fixed_names, spec = _matrix(parsed.rhs, values, state.get("fixed"), parsed)
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

    design = Design(
        y=y,
        X=X,
        fixed_names=fixed_names,
        levels=levels,
        dropped_levels=_unused_categories(data, levels),
        state={"fixed": spec},
    )
    if not parsed.random_factors:
        return design
    stored = state.get("random_factors", [None] * len(parsed.random_factors))
    known = group_levels if isinstance(group_levels, dict) or group_levels is None else {None: group_levels}
    for k, factor in enumerate(parsed.random_factors):
        given = None
        if known is not None:
            given = known.get(factor.name, known.get(None) if len(parsed.random_factors) == 1 else None)
        design.factors.append(_factor_design(factor, values, data, parsed, stored[k], given))
    design.state["random_factors"] = [f.specs for f in design.factors]
    if len(design.factors) == 1:  # one grouping factor: its arrays stand on the design itself
        only = design.factors[0]
        design.Z, design.random_names, design.blocks = only.Z, only.random_names, only.blocks
        design.groups, design.group_levels = only.groups, only.group_levels
    return design


def _factor_design(
    factor: RandomFactor, values: pd.DataFrame, data: pd.DataFrame, parsed: ParsedFormula, specs, group_levels
) -> FactorDesign:
    """Random-effects design and cluster codes of one grouping factor."""
    cols, names, blocks, new_specs = [], [], [], []
    specs = specs if specs is not None else [None] * len(factor.blocks)
    for i, block in enumerate(factor.blocks):
        Zb, nb, block_spec = _matrix(block.rhs, values, specs[i], parsed)
        blocks.append(np.arange(len(names), len(names) + len(nb)))
        cols.append(Zb)
        names.extend(nb)
        new_specs.append(block_spec)
    columns = list(factor.columns)
    labels = data[columns[0]]
    if len(columns) > 1:  # a combined factor g:h, labelled as R's interaction() does
        labels = labels.astype(str)
        for column in columns[1:]:
            labels = labels + ":" + data[column].astype(str)
    if group_levels is None:
        codes, uniques = pd.factorize(labels, sort=True)
        group_levels = pd.Index(uniques, name=factor.name)
    else:
        codes = group_levels.get_indexer(labels)
    return FactorDesign(
        name=factor.name,
        Z=np.column_stack(cols),
        random_names=names,
        blocks=blocks,
        groups=np.asarray(codes, dtype=np.intp),
        group_levels=group_levels,
        specs=new_specs,
    )


def fixed_design_at(
    parsed: ParsedFormula, data: pd.DataFrame, levels: dict, state: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-effects design of rows with stored codings, and which rows are defined.

    For a sampler that evaluates the model at candidate values of a variable: ``levels`` and
    ``state`` are those of a :class:`Design` built before (:func:`build_design`), ``data`` holds
    the formula's variables (no missing values). A row where a term is not finite (``np.log``
    of a value <= 0) is returned as undefined instead of raising; its design row is meaningless.

    Parameters
    ----------
    parsed : ParsedFormula
    data : DataFrame
        The formula's variables at the rows wanted.
    levels : dict
        ``Design.levels`` of the design built before.
    state : dict
        ``Design.state`` of that design (its ``"fixed"`` model spec is used).

    Returns
    -------
    X : ndarray of shape (n, p)
    defined : ndarray of bool, shape (n,)
    """
    undefined = np.zeros(len(data), dtype=bool)
    values = _factor_values(parsed, data, levels, undefined)
    X, _, _ = _matrix(parsed.rhs, values, state["fixed"], parsed)
    return X, ~undefined
