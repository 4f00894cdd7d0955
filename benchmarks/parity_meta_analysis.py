"""Parity of skmlmi.meta_analysis with R's mixmeta on the shared reference cases.

Run: python benchmarks/parity_meta_analysis.py  (needs ../shared/reference beside the repository)

Prints, for every case (univariate, bivariate) x method (REML, ML, method of moments) x
term (pooled coefficients with their SEs, entries of Psi), skmlmi's value, mixmeta's, and
the error under the issue's rule: relative, or absolute where mixmeta's value is below 1e-2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import SHARED

from skmlmi.meta_analysis import meta_analysis


def error(value: float, reference: float) -> float:
    """The parity rule's error: relative, or absolute for reference values below 1e-2."""
    return abs(value - reference) if abs(reference) < 1e-2 else abs(value - reference) / abs(reference)


def main() -> None:
    reference = SHARED / "reference"
    inputs = pd.read_csv(reference / "meta_analysis_inputs.csv")
    cases = pd.read_csv(reference / "meta_analysis_cases.csv")
    S = np.zeros((len(inputs), 2, 2))
    S[:, 0, 0], S[:, 1, 1] = inputs["s11"], inputs["s22"]
    S[:, 1, 0] = S[:, 0, 1] = inputs["s21"]
    rows = []
    for (case, method), part in cases.groupby(["case", "method"], sort=False):
        if case == "univariate":
            fit = meta_analysis(inputs["y_univariate"].to_numpy(), inputs["s_univariate"].to_numpy(), method=method)
        else:
            fit = meta_analysis(inputs[["y1", "y2"]].to_numpy(), S, method=method)
        for row in part.itertuples():
            if row.term.startswith("coef"):
                j = int(row.term[4:]) - 1
                pairs = [
                    (row.term, fit.coefficients[0, j], row.estimate),
                    (row.term + " SE", fit.standard_errors[0, j], row.std_error),
                ]
            else:
                a, b = int(row.term[3]) - 1, int(row.term[4]) - 1
                pairs = [(row.term, fit.psi[a, b], row.estimate)]
            for term, ours, theirs in pairs:
                rows.append(
                    {
                        "case": case,
                        "method": method,
                        "term": term,
                        "skmlmi": ours,
                        "mixmeta": theirs,
                        "error": error(ours, theirs),
                        "converged": fit.converged,
                    }
                )
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 160):
        print(table.to_string(index=False))
    print(f"\nlargest error {table['error'].max():.2g} (target 1e-4); all converged: {bool(table['converged'].all())}")


if __name__ == "__main__":
    main()
