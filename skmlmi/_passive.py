"""Derived (passive) columns and post-processing of draws: bounds and ``post`` callables.

A derived column is a deterministic function of other columns (BMI = weight / height^2,
mice's passive imputation ``"~ I(weight / height^2)"``). It is never imputed by a model;
the engine recomputes it after each visit of a column it depends on, so it is consistent
with its inputs in every completed dataset. It is given as

- a string expression over column names (``"weight / height ** 2"``,
  ``"log(`body weight`)"``), parsed and checked by :mod:`skmlmi._expressions` when the
  imputer is fitted and evaluated there with numpy: column names, numbers, arithmetic,
  comparisons, logic, ``a if condition else b`` and a fixed set of numpy functions, nothing
  else (the string is never executed as Python code); its dependencies are the columns it
  names; or
- a callable receiving a DataFrame of the current completed data and returning the
  column; it is recomputed after every visit (its dependencies are unknown), unless given
  as ``(callable, ["weight", "height"])``.

Bounds ``(low, high)`` are applied to each draw by redrawing the values that fall outside
(up to ``REDRAWS`` times, from the same posterior draw), then squeezing what is still
outside onto the bound (mice's ``squeeze``). Redrawing keeps the shape of the conditional
distribution inside the bounds (a truncated draw), where squeezing alone piles mass on
the bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._expressions import Expression, parse_expression

REDRAWS = 20


@dataclass
class DerivedColumn:
    column: int
    name: str
    compute: Callable | Expression
    depends_on: frozenset  # column indices; empty = unknown (recompute after every visit)
    # column index -> the categories of a binary or categorical input, indexed by its working codes 0..K-1:
    # an expression computes on their numbers, a callable receives them as labels (never the codes)
    categories: dict = field(default_factory=dict)

    def _input(self, W: np.ndarray, rows: np.ndarray, j: int, as_labels: bool):
        codes = W[rows, j]
        if j not in self.categories:
            return codes
        levels = self.categories[j]
        if as_labels:
            return pd.Categorical.from_codes(np.where(np.isnan(codes), -1, codes).astype(int), categories=levels)
        out = np.full(codes.shape, np.nan)
        known = ~np.isnan(codes)
        out[known] = np.asarray(levels, dtype=float)[codes[known].astype(int)]
        return out

    def values(self, W: np.ndarray, names: list, rows: np.ndarray) -> np.ndarray:
        """The derived values of the given rows from the working data (categorical inputs decoded)."""
        if isinstance(self.compute, Expression):
            out = self.compute.evaluate({j: self._input(W, rows, j, False) for j in self.compute.positions})
        else:
            used = sorted(self.depends_on) if self.depends_on else range(len(names))
            out = self.compute(pd.DataFrame({names[j]: self._input(W, rows, j, True) for j in used}))
        out = np.asarray(out, dtype=float).reshape(-1)
        if out.shape != (rows.size,):
            raise ValueError(f"derived[{self.name!r}] returned {out.shape[0]} values for {rows.size} rows.")
        return out


def parse_derived(derived: dict | None, columns: list, groups_column, codecs=None) -> list[DerivedColumn]:
    """Validate the ``derived`` parameter against the data's columns (``codecs``: their kinds and categories)."""
    out = []
    for name, spec in (derived or {}).items():
        if name not in columns:
            raise ValueError(f"derived names {name!r}, which is not a column of X.")
        if name == groups_column:
            raise ValueError(f"derived names the cluster column {name!r}.")
        depends: set = set()
        if isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0]):
            compute, given = spec
            unknown = [c for c in given if c not in columns]
            if unknown:
                raise ValueError(f"derived[{name!r}] depends on unknown columns {unknown}.")
            depends = {columns.index(c) for c in given}
        elif isinstance(spec, str):
            compute = parse_expression(spec, columns, label=f"derived[{name!r}]")
            if not compute.positions:
                raise ValueError(
                    f"derived[{name!r}] = {spec!r} uses no column; a derived column is computed from others."
                )
            depends = set(compute.positions)
        elif callable(spec):
            compute = spec
        else:
            raise TypeError(
                f"derived[{name!r}] must be an expression string, a callable, or (callable, [columns]); "
                f"got {type(spec).__name__}."
            )
        j = columns.index(name)
        if j in depends:
            raise ValueError(f"derived[{name!r}] depends on itself.")
        categories = _input_categories(codecs, depends or set(range(len(columns))), name, spec)
        out.append(DerivedColumn(j, str(name), compute, frozenset(depends), categories))
    order = _computation_order(out, columns)
    return sorted(out, key=lambda d: order[d.column])


def _computation_order(derived: list[DerivedColumn], columns: list) -> dict[int, int]:
    """Each derived column's place in the order of computation: after the derived columns it is computed from
    (z = x + w after w = 2 x, whatever order ``derived`` lists them in). Columns that depend on each other in a
    circle (z from w, w from z) have no values to start from: an error naming the circle. Only stated inputs
    count (a callable's unstated ones are unknown); otherwise the order given is kept."""
    inputs = {d.column: set(d.depends_on) for d in derived}
    state: dict[int, int] = {}  # 1: on the current path, 2: placed
    order: dict[int, int] = {}

    def visit(column: int, path: list[int]) -> None:
        state[column] = 1
        for other in sorted(inputs[column] & inputs.keys()):
            if state.get(other) == 1:
                circle = path[path.index(other) :] + [other]
                raise ValueError(
                    "derived columns depend on each other in a circle: "
                    + " <- ".join(repr(columns[c]) for c in circle)
                    + " (each computed from the next): none has values to start from."
                )
            if other not in state:
                visit(other, path + [other])
        state[column] = 2
        order[column] = len(order)

    for d in derived:
        if d.column not in state:
            visit(d.column, [d.column])
    return order


def _input_categories(codecs, inputs, name, spec) -> dict:
    """The categories of the binary and categorical inputs whose working codes are not their values.

    An expression computes on numbers: a categorical input with numeric categories (``dept`` coded
    1..15) is read as its categories' numbers, so that ``dept == 2`` means category 2, not the third;
    one with text categories is an error (a callable receives them as labels).
    """
    if codecs is None:
        return {}
    categories = {}
    for j in sorted(inputs):
        codec = codecs[j]
        if codec.categories is None or codec.numeric_levels:  # numbers, or a binary stored as its own 0/1
            continue
        numeric = all(isinstance(c, int | float | np.number) and not isinstance(c, bool) for c in codec.categories)
        if isinstance(spec, str) and not numeric:
            raise ValueError(
                f"derived[{name!r}] = {spec!r} reads {codec.name!r}, a {codec.kind} column with the categories "
                f"{list(codec.categories)[:6]}: an expression computes on numbers. Use a callable, which "
                "receives the categories as labels, e.g. (lambda d: (d['x'] == 'yes') * d['age'], ['x', 'age'])."
            )
        categories[j] = np.asarray(codec.categories, dtype=float) if isinstance(spec, str) else list(codec.categories)
    return categories


def parse_bounds(bounds: dict | None, columns: list) -> dict[int, tuple[float, float]]:
    out = {}
    for name, pair in (bounds or {}).items():
        if name not in columns:
            raise ValueError(f"bounds names {name!r}, which is not a column of X.")
        try:
            low, high = (float(v) if v is not None else np.nan for v in pair)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bounds[{name!r}] must be a pair (low, high); use None for no bound.") from exc
        low = -np.inf if np.isnan(low) else low
        high = np.inf if np.isnan(high) else high
        if low > high:
            raise ValueError(f"bounds[{name!r}] = {pair}: low exceeds high.")
        out[columns.index(name)] = (low, high)
    return out


def parse_post(post: dict | None, columns: list) -> dict[int, Callable]:
    out = {}
    for name, fn in (post or {}).items():
        if name not in columns:
            raise ValueError(f"post names {name!r}, which is not a column of X.")
        if not callable(fn):
            raise TypeError(f"post[{name!r}] must be a callable taking and returning the imputed values.")
        out[columns.index(name)] = fn
    return out


def apply_bounds(values: np.ndarray, bounds: tuple[float, float], redraw: Callable[[np.ndarray], np.ndarray]):
    """Redraw values outside ``bounds`` (``redraw(index)`` gives new values), then squeeze.

    Returns the bounded values and how many had to be squeezed.
    """
    low, high = bounds
    values = np.array(values, dtype=float)
    outside = np.flatnonzero((values < low) | (values > high))
    for _ in range(REDRAWS):
        if outside.size == 0:
            break
        values[outside] = redraw(outside)
        outside = outside[(values[outside] < low) | (values[outside] > high)]
    squeezed = int(outside.size)
    np.clip(values, low, high, out=values)
    return values, squeezed
