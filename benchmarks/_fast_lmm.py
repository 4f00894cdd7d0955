"""A fast random-intercept linear mixed model (REML) for the simulation studies.

The validation scripts fit ``y ~ X + (1 | g)`` thousands of times; the package's
:class:`skmlmi.analysis.LinearMixedModel` is general (formulas, random slopes, several
blocks) and takes about 0.1 s per fit on 750 rows. This one fits only the random-intercept
model, from per-cluster sums, by profiling the REML criterion over gamma = tau^2 / sigma^2
(Harville 1977): with w_j = gamma / (1 + n_j gamma),

    A = sum_j X_j'X_j - w_j s_j s_j',  b = sum_j X_j'y_j - w_j s_j t_j,  (s_j = X_j'1, t_j = 1'y_j)
    beta(gamma) = A^-1 b,  r(gamma) = y'y - sum_j w_j t_j^2 - b'beta,  sigma^2 = r / (n - p),
    -2 REML(gamma) = (n - p) log sigma^2 + sum_j log(1 + n_j gamma) + log|A| + const,

so each evaluation costs O(J p^2) and a fit about a millisecond. tests/test_fast_lmm.py checks it
against LinearMixedModel to 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize


@dataclass
class RandomInterceptFit:
    coef: np.ndarray  # (p,), intercept first when the design has one
    cov: np.ndarray  # (p, p) covariance of coef (REML sigma^2 A^-1)
    tau2: float
    sigma2: float
    df_resid: int

    @property
    def icc(self) -> float:
        return self.tau2 / (self.tau2 + self.sigma2)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))


def fit_random_intercept(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> RandomInterceptFit:
    """REML fit of y = X beta + u_g + e (X holds the intercept column if one is wanted)."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    codes = np.unique(groups, return_inverse=True)[1]
    J = codes.max() + 1
    n, p = X.shape
    n_j = np.bincount(codes, minlength=J).astype(float)
    s = np.stack([np.bincount(codes, weights=X[:, k], minlength=J) for k in range(p)], axis=1)  # (J, p)
    t = np.bincount(codes, weights=y, minlength=J)
    XX, Xy, yy = X.T @ X, X.T @ y, y @ y
    scale = yy / n if yy > 0 else 1.0

    def parts(log_gamma):
        gamma = np.exp(log_gamma)
        w = gamma / (1.0 + n_j * gamma)
        A = XX - (s * w[:, None]).T @ s
        b = Xy - (s * w[:, None]).T @ t
        L = np.linalg.cholesky(A)
        beta = np.linalg.solve(A, b)
        r = yy - np.sum(w * t**2) - b @ beta
        return gamma, A, beta, max(r, 1e-300 * scale), L

    def criterion(log_gamma):
        gamma, _, _, r, L = parts(log_gamma)
        return (n - p) * np.log(r / (n - p)) + np.sum(np.log1p(n_j * gamma)) + 2 * np.sum(np.log(np.diag(L)))

    result = optimize.minimize_scalar(criterion, bounds=(-25.0, 12.0), method="bounded", options={"xatol": 1e-9})
    gamma, A, beta, r, _ = parts(result.x)
    sigma2 = r / (n - p)
    return RandomInterceptFit(beta, sigma2 * np.linalg.inv(A), gamma * sigma2, sigma2, n - p)
