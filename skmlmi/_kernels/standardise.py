"""Standardised designs: the affine map of [1, X] to [1, (X - center) / scale] and back.

Samplers work on predictors centred and scaled by two standard deviations (Gelman et al. 2008),
so that their priors do not depend on the units of X; draws and chain states keep the
standardised parameters and show them on the data's scale for inspection only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Standardiser",
    "standardised_to_original",
    "StandardisedParameters",
]


@dataclass
class Standardiser:
    """Affine map of the design [1, X] to [1, (X - center) / scale] and back.

    With A the (p+1, p+1) matrix such that [1, X_std] = [1, X] A, coefficients map as
    beta_original = A beta_std, random effects as b_original = A_z b_std and
    Psi_original = A_z Psi_std A_z' (A_z the rows and columns of the random part).
    """

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardiser:
        center = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
        sd = X.std(axis=0) if len(X) else np.ones(X.shape[1])
        # Gelman et al. (2008): scale by two standard deviations, so that a binary
        # predictor and a continuous one get comparable prior scales.
        scale = np.where(sd > 0, 2.0 * sd, 1.0)
        return cls(center, scale)

    def matrix(self) -> np.ndarray:
        p = len(self.center)
        a = np.eye(p + 1)
        a[0, 1:] = -self.center / self.scale
        a[1:, 1:] = np.diag(1.0 / self.scale)
        return a

    def design(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(X)), (X - self.center) / self.scale])

    def transfer(self, other: Standardiser) -> np.ndarray:
        """T with beta_other = T beta_self: coefficients standardised by ``self`` restandardised by ``other``.

        T = A_other^-1 A_self, written out (T_0k = (c_other - c_self)_k / s_self_k, T_kk = s_other_k /
        s_self_k) so that no original-scale intercept is formed: for a predictor shifted by 1e12 the
        intercept at x = 0 is a difference of numbers of order 1e12 times the slope, and going through
        it loses the intercept at the data. Random effects map with T's rows and columns of the random
        part, Psi as T_z Psi T_z'.
        """
        p = len(self.center)
        t = np.eye(p + 1)
        t[0, 1:] = (other.center - self.center) / self.scale
        t[1:, 1:] = np.diag(other.scale / self.scale)
        return t


def standardised_to_original(std: Standardiser, random: np.ndarray, beta, b, psi):
    """Standardised parameters on the data's scale (for inspection: the draws compute standardised).

    ``beta`` is (p + 1,) or (L, p + 1) (one row per non-reference category); ``b`` and ``psi``
    then stack L blocks of the random part, category-major.
    """
    a = std.matrix()
    az = a[np.ix_(random, random)]
    if np.ndim(beta) == 2:
        beta = beta @ a.T
        az = np.kron(np.eye(np.shape(beta)[0]), az)
    else:
        beta = a @ beta
    return beta, b @ az.T, az @ psi @ az.T


class StandardisedParameters:
    """``beta``, the effects and ``psi`` on the data's scale, from the standardised ones a draw or state holds.

    Draws and chain states keep the sampler's parameters, those of the standardised design
    ``std.design(X)``: on the data's scale a predictor shifted by 1e12 puts the intercepts at
    x = 0, 1e12 away from the data, where they are differences of numbers of order 1e12 times
    the slopes, and Psi becomes a near-singular matrix from which the random intercepts of new
    clusters cannot be drawn. These properties are for inspection only.
    """

    _effects = "b"

    def _original(self):
        random = np.r_[0, np.asarray(self.random_columns, dtype=int) + 1]
        effects = getattr(self, self._effects + "_std")
        return standardised_to_original(self.std, random, self.beta_std, effects, self.psi_std)

    @property
    def beta(self):
        return self._original()[0]

    @property
    def psi(self):
        return self._original()[2]
