"""Priors of the random-effects normal models (pan's inverse-Wishart priors, and the weak default).

Shared by the one-factor sampler (random_effects.py) and the several-factors sampler
(random_effects_factors.py).
"""

from __future__ import annotations

from numbers import Real

import numpy as np

#: Scale of the default ("weak") prior of Psi relative to pan's standardised one: IW(q, 0.05 var(y) D).
#: Pan's Dinv = var(y) is worth one pseudo-cluster whose effect has the TOTAL variance of y; with
#: few clusters and a low ICC it dominates Psi's posterior (J = 30, ICC 0.1: tau^2 of the completed
#: data +12% with sporadic, +38% with systematic missingness). At 0.05 var(y) the same cells are
#: within 0.3% and 8% (Monte Carlo SE 2.6% and 3.7%), and the floor it puts under Psi (about
#: 0.05 var(y) / J) still keeps the sampler from collapsing onto Psi = 0.
_WEAK_PSI_SCALE = 0.05

#: The "weak" prior's scale of sigma^2, as a share of var(y): IW(1, s var(y)), one pseudo-observation
#: whose residual has s times the variance of y. pan's numbers on the standardised y (s = 1) make the
#: posterior of sigma^2 about (var(y) + RSS) / n, which for a well-predicted y and few rows is far from
#: RSS / n: 20 clusters x 5 rows, y = 2x + u + e with var(e) 0.09 (about 2% of var(y)), y 30% missing:
#: the completed data's residual variance +37% (MC SE 4%, 12 replications, m = 10). At 0.05 var(y),
#: as Psi's, the prior still keeps sigma^2 away from 0 when the fit is exact.
_WEAK_SIGMA_SCALE = 0.05


def prior_values(prior, q, sd_y, sd_z, suff=None, name="y"):
    """(a, Binv, c, Dinv) of the inverse-Wishart priors, in the sampler's units.

    ``sd_y`` and ``sd_z`` are the SDs of the rescaled y and random-slope columns, so the
    "weak" and "scaled" priors are built in the sampler's units directly. Numbers given on the data's own
    scale ("pan", a dict) are converted exactly (powers of two, see
    :meth:`skmlmi._kernels.MixedCrossProducts.rescale`): IW(c, Dinv) for Psi becomes IW(c, Dinv_kl 2^-(d_k + d_l)) for
    the rescaled Psi, d_k the exponent of random effect k, and Binv becomes Binv 2^(-2 e_y).
    """
    if isinstance(prior, dict) or prior == "pan":
        a, Binv, c, Dinv = given_prior(prior, q)
        if suff is None:
            return a, Binv, c, Dinv
        d = suff.effect_exponents()
        with np.errstate(over="ignore", under="ignore"):
            Binv_s = float(np.ldexp(Binv, -2 * suff.y_exponent))
            Dinv_s = np.ldexp(Dinv, -(d[:, None] + d[None, :]))
        diagonal = np.diag(Dinv_s)
        if not (np.isfinite(Binv_s) and Binv_s > 0 and np.all(np.isfinite(Dinv_s)) and np.all(diagonal > 0)):
            raise ValueError(
                f"RandomEffectsNormal for {name!r}: the prior's fixed numbers (prior={prior!r}) are on the data's "
                f"own scale, and at the scale of {name!r} and its random-slope predictors (SD about "
                f"2^{suff.y_exponent} and 2^{(suff.y_exponent - d[1:]).tolist()}) they over- or underflow; "
                "use prior='weak' (or 'scaled'), which is defined relative to the data's scale."
            )
        return a, Binv_s, c, Dinv_s
    # "scaled": pan's numbers applied to y / sd(y) and z_k / sd(z_k); "weak": Psi's scale a twentieth of that
    scale = np.concatenate([[1.0], 1.0 / np.asarray(sd_z, dtype=float) ** 2]) if q > 1 else np.ones(1)
    psi_scale, sigma_scale = (_WEAK_PSI_SCALE, _WEAK_SIGMA_SCALE) if prior == "weak" else (1.0, 1.0)
    return 1.0, sigma_scale * sd_y**2, float(q), psi_scale * sd_y**2 * np.diag(scale[:q])


def check_prior(prior) -> None:
    """A dict prior's keys and numbers, checked with the parameters (before any chain runs)."""
    if not isinstance(prior, dict):
        return
    unknown = set(prior) - {"a", "Binv", "c", "Dinv"}
    if unknown:
        raise ValueError(f"unknown prior keys {sorted(map(str, unknown))}; use a, Binv, c, Dinv")
    for key in ("a", "Binv", "c"):
        value = prior.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"prior[{key!r}] must be a positive number, got {value!r}")
    try:
        Dinv = np.asarray(prior.get("Dinv", 1.0), dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"prior['Dinv'] must be a number or a square matrix, got {prior['Dinv']!r:.60}") from None
    if Dinv.ndim not in (0, 2) or Dinv.ndim == 2 and Dinv.shape[0] != Dinv.shape[1] or not np.isfinite(Dinv).all():
        raise ValueError(f"prior['Dinv'] must be a finite number or square matrix, got shape {Dinv.shape}")


def given_prior(prior, q):
    """(a, Binv, c, Dinv) given on the data's own scale: pan's numbers or a dict."""
    if isinstance(prior, dict):
        unknown = set(prior) - {"a", "Binv", "c", "Dinv"}
        if unknown:
            raise ValueError(f"unknown prior keys {sorted(unknown)}; use a, Binv, c, Dinv")
        a = float(prior.get("a", 1.0))
        Binv = float(prior.get("Binv", 1.0))
        c = float(prior.get("c", q))
        Dinv = np.asarray(prior.get("Dinv", 1.0), dtype=float)
        Dinv = Dinv * np.eye(q) if Dinv.ndim == 0 else Dinv
        if Dinv.shape != (q, q):
            raise ValueError(f"prior Dinv must be a scalar or of shape ({q}, {q}), got {Dinv.shape}")
        if a <= 0 or Binv <= 0 or c <= q - 1 or np.any(np.linalg.eigvalsh(Dinv) <= 0):
            raise ValueError("prior needs a > 0, Binv > 0, c > q - 1 and a positive-definite Dinv")
        return a, Binv, c, Dinv
    return 1.0, 1.0, float(q), np.eye(q)  # pan's defaults
