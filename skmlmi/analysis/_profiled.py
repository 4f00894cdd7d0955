"""lme4's profiled criterion for linear mixed models with several grouping factors (nested or crossed).

The model is y = X beta + Z b + e with b = Lambda_theta u, u ~ N(0, sigma^2 I), e ~ N(0, sigma^2 I),
and Z = [Z_1, ..., Z_K] the random-effects designs of the K grouping factors (q_k effects per
cluster, J_k clusters). Lambda_theta is block diagonal: J_k copies of factor k's lower-triangular
q_k x q_k template T_k (Bates, Maechler, Bolker and Walker 2015, "Fitting linear mixed-effects
models using lme4", J. Stat. Softw. 67(1), sections 3.1-3.6). For given theta everything else is
profiled out: with A = Lambda' Z'Z Lambda + I,

    r^2(theta) = y'y - y'Z Lambda A^{-1} Lambda' Z'y - (beta-hat terms),
    -2 l_ML(theta)   = log|A| + n (1 + log(2 pi r^2 / n)),
    -2 l_REML(theta) = log|A| + log|X' V*^{-1} X| + (n - p) (1 + log(2 pi r^2 / (n - p))),

with X' V*^{-1} X = X'X - X'Z Lambda A^{-1} Lambda' Z'X (lme4's R_X' R_X).

lme4 factors A with CHOLMOD's sparse Cholesky. scipy has none, so A is factored by block
elimination instead, which needs no new dependency: the clusters of one grouping factor never
meet each other, so the diagonal block of A belonging to any one factor is block diagonal with
q_k x q_k blocks. The factor with the most effects (J_e q_e: the innermost level of a nested design,
the larger factor of a crossed one) is eliminated with batched q_e x q_e Cholesky factors
D_j = L_j L_j'; the Schur complement S = A_rr - C'C (C = L^{-1} A_er) on the other factors' effects
is small for nested designs (the outer levels) and the smaller factor's size for crossed ones, and is
factored densely (scipy.linalg.cho_factor), or by sparse LU when it has more than
``DENSE_LIMIT`` rows. Then log|A| = sum_j log|D_j| + log|S| and

    R' A^{-1} R = W'W + G' S^{-1} G,   W = L^{-1} R_e,  G = R_r - C'W.

Per evaluation the cost is O(J_e q_e^3) for the batched factors, the sparse products with
O(nnz(Z_e'Z_r)) entries, and O(m^3 / 3) for a dense S of order m = sum_{k != e} J_k q_k; the
cross-products are computed once. Nothing here knows about formulas or DataFrames.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import linalg as sparse_linalg

from .._kernels import SortedClusters
from .formula import Design, FactorDesign

#: Schur complements up to this order are factored densely (dense Cholesky: O(m^3 / 3) per evaluation; above it
#: a sparse LU, which pays off when the other factors' effects are many and their Schur complement stays sparse)
DENSE_LIMIT = 3000


class ThetaMap:
    """Lower-triangular relative covariance template T of one grouping factor (lme4's theta).

    Parameters
    ----------
    q : int
        Random effects per cluster.
    blocks : list of ndarray
        Column indices of the uncorrelated blocks (T is block diagonal over them).
    """

    def __init__(self, q: int, blocks: list[np.ndarray]):
        rows, cols = [], []
        for block in blocks:
            for jj, j in enumerate(block):
                for i in block[jj:]:
                    rows.append(i)
                    cols.append(j)
        self.rows, self.cols = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
        self.q = q
        self.is_diag = self.rows == self.cols
        self.bounds = [(0.0, None) if d else (None, None) for d in self.is_diag]

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def matrix(self, theta: np.ndarray) -> np.ndarray:
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta
        return lam


def _sparse_design(factor: FactorDesign) -> sparse.csr_matrix:
    """Z_k as an n x (J_k q_k) sparse matrix: row i holds Z_k[i] in the columns of its cluster."""
    n, q = factor.Z.shape
    cols = (factor.groups[:, None] * q + np.arange(q)[None, :]).ravel()
    indptr = np.arange(0, n * q + 1, q)
    return sparse.csr_matrix((factor.Z.ravel(), cols, indptr), shape=(n, factor.n_groups * q))


class MultiCrossProducts:
    """Cross-products of y = X beta + sum_k Z_k b_k + e, computed once per fit.

    Factors are ordered as lme4 orders its random-effects terms: by decreasing number of
    clusters (``order``). The eliminated factor ``e`` has the most effects J_k q_k.

    Parameters
    ----------
    design : Design
        A design with one or more grouping factors (``design.factors``).
    """

    def __init__(self, design: Design):
        factors = design.factors
        X = design.X
        y = design.y if design.y is not None else np.zeros(X.shape[0])
        self.n, self.p = X.shape
        self.factors = factors
        self.order = sorted(range(len(factors)), key=lambda k: -factors[k].n_groups)
        self.maps = [ThetaMap(f.Z.shape[1], f.blocks) for f in factors]
        offsets = np.cumsum([0] + [self.maps[k].size for k in self.order])
        self.theta_slices = {k: slice(int(offsets[i]), int(offsets[i + 1])) for i, k in enumerate(self.order)}
        self.n_theta = int(offsets[-1])
        self.is_diag = np.concatenate([self.maps[k].is_diag for k in self.order])
        self.bounds = [b for k in self.order for b in self.maps[k].bounds]
        self.e = max(self.order, key=lambda k: factors[k].n_groups * factors[k].Z.shape[1])
        self.rest = [k for k in self.order if k != self.e]
        Xy = np.column_stack([X, y])
        self.XyXy = Xy.T @ Xy
        fe = factors[self.e]
        cl = SortedClusters(fe.groups, fe.n_groups)
        Zs, Xys = fe.Z[cl.order], Xy[cl.order]
        self.ZeZe = cl.sums(Zs[:, :, None] * Zs[:, None, :])  # (J_e, q_e, q_e)
        self.ZeXy = cl.sums(Zs[:, :, None] * Xys[:, None, :])  # (J_e, q_e, p + 1)
        self.rest_sizes = [factors[k].n_groups * factors[k].Z.shape[1] for k in self.rest]
        if self.rest:
            Ze = _sparse_design(fe).tocsc()
            Zr = sparse.hstack([_sparse_design(factors[k]) for k in self.rest], format="csc")
            self.ZeZr = (Ze.T @ Zr).tocsr()  # (J_e q_e, m)
            self.ZrZr = (Zr.T @ Zr).tocsr()  # (m, m)
            self.ZrXy = np.asarray(Zr.T @ Xy)  # (m, p + 1)

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Factor k's template T_k from the concatenated theta (lme4's order)."""
        return [self.maps[k].matrix(theta[self.theta_slices[k]]) for k in range(len(self.factors))]

    def start(self) -> np.ndarray:
        """lme4's start: every T_k the identity."""
        return np.where(self.is_diag, 1.0, 0.0)


class FactoredSystem:
    """A = Lambda' Z'Z Lambda + I for given templates, factored by block elimination.

    Parameters
    ----------
    cp : MultiCrossProducts
    templates : list of ndarray
        T_k per factor (any q_k x q_k matrix with T_k T_k' = Psi_k / sigma^2).

    Raises
    ------
    numpy.linalg.LinAlgError
        When A is not numerically positive definite.
    """

    def __init__(self, cp: MultiCrossProducts, templates: list[np.ndarray]):
        self.cp = cp
        self.templates = templates
        Te = templates[cp.e]
        q_e = Te.shape[0]
        J_e = cp.ZeZe.shape[0]
        D = np.einsum("ki,jkl,lm->jim", Te, cp.ZeZe, Te) + np.eye(q_e)
        L = np.linalg.cholesky(D)
        self.logdet = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
        self.Linv = np.linalg.inv(L)  # (J_e, q_e, q_e), lower triangular
        self.C = None
        if not cp.rest:
            return
        self.Lam_r = sparse.block_diag(
            [sparse.kron(sparse.identity(cp.factors[k].n_groups), templates[k]) for k in cp.rest], format="csr"
        )
        Lam_e = sparse.kron(sparse.identity(J_e), Te, format="csr")
        Linv = sparse.bsr_matrix((self.Linv, np.arange(J_e), np.arange(J_e + 1)), shape=(J_e * q_e, J_e * q_e))
        self.C = (Linv @ (Lam_e.T @ cp.ZeZr @ self.Lam_r)).tocsr()
        m = self.Lam_r.shape[0]
        S = self.Lam_r.T @ cp.ZrZr @ self.Lam_r - self.C.T @ self.C + sparse.identity(m)
        if m <= DENSE_LIMIT:
            # the entries are finite by construction (bounded theta, finite data): skip scipy's finiteness scans
            self._cho = linalg.cho_factor(S.toarray(), lower=True, overwrite_a=True, check_finite=False)
            self.logdet += 2.0 * float(np.log(np.diag(self._cho[0])).sum())
            self._lu = None
        else:
            # SPD: no pivoting needed on the diagonal, a symmetric fill-reducing order
            self._lu = sparse_linalg.splu(
                S.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
            )
            diag = self._lu.U.diagonal()
            if np.any(diag <= 0):
                raise np.linalg.LinAlgError("the Schur complement is not positive definite")
            self.logdet += float(np.log(diag).sum())

    def solve_s(self, G: np.ndarray) -> np.ndarray:
        """S^{-1} G."""
        if self._lu is not None:
            return self._lu.solve(np.asarray(G, dtype=float))
        return linalg.cho_solve(self._cho, G, check_finite=False)

    def half(self, ZeK: np.ndarray, ZrK: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """W = L^{-1} Lambda_e' Z_e'K (flattened, (J_e q_e, k)) and G = Lambda_r' Z_r'K - C'W."""
        Te = self.templates[self.cp.e]
        Re = np.einsum("ki,jkp->jip", Te, ZeK)
        W = np.matmul(self.Linv, Re).reshape(-1, ZeK.shape[2])
        if self.C is None:
            return W, None
        return W, np.asarray(self.Lam_r.T @ ZrK) - np.asarray(self.C.T @ W)

    def quadratic(self, W: np.ndarray, G: np.ndarray | None) -> np.ndarray:
        """R' A^{-1} R for R = Lambda' Z'K: W'W + G' S^{-1} G."""
        out = W.T @ W
        if G is not None:
            out = out + G.T @ self.solve_s(G)
        return out

    def modes(self, W: np.ndarray, G: np.ndarray | None) -> list[np.ndarray]:
        """b = Lambda A^{-1} Lambda' Z'r per factor, as (J_k, q_k) arrays (W, G of one column r)."""
        cp = self.cp
        out: list = [None] * len(cp.factors)
        w = W[:, 0]
        if G is not None:
            u_r = self.solve_s(G[:, 0])
            w = w - self.C @ u_r
            start = 0
            for k, size in zip(cp.rest, cp.rest_sizes, strict=True):
                q = cp.factors[k].Z.shape[1]
                out[k] = u_r[start : start + size].reshape(-1, q) @ self.templates[k].T
                start += size
        q_e = self.Linv.shape[1]
        u_e = np.einsum("jki,jk->ji", self.Linv, w.reshape(-1, q_e))  # L^{-T} per cluster
        out[cp.e] = u_e @ self.templates[cp.e].T
        return out


def profiled_criterion(cp: MultiCrossProducts, theta: np.ndarray, reml: bool):
    """lme4's profiled REML criterion (or ML deviance) at theta, with beta-hat, sigma^2-hat, X'V*^{-1}X.

    Returns ``(criterion, beta, sigma2, XVX, system)``; the criterion is inf where A is not
    numerically positive definite.
    """
    try:
        system = FactoredSystem(cp, cp.templates(theta))
    except np.linalg.LinAlgError:
        return np.inf, None, None, None, None
    W, G = system.half(cp.ZeXy, cp.ZrXy if cp.rest else None)
    cross = system.quadratic(W, G)
    p = cp.p
    XVX = cp.XyXy[:p, :p] - cross[:p, :p]
    XVy = cp.XyXy[:p, p] - cross[:p, p]
    yVy = cp.XyXy[p, p] - cross[p, p]
    try:
        beta = np.linalg.solve(XVX, XVy)
    except np.linalg.LinAlgError:
        return np.inf, None, None, None, None
    r2 = max(float(yVy - beta @ XVy), 1e-300)
    n = cp.n
    if reml:
        sign, logdet_x = np.linalg.slogdet(XVX)
        if sign <= 0:
            return np.inf, None, None, None, None
        dof = n - p
        crit = system.logdet + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
        sigma2 = r2 / dof
    else:
        crit = system.logdet + n * (1.0 + np.log(2.0 * np.pi * r2 / n))
        sigma2 = r2 / n
    if not np.isfinite(crit):
        return np.inf, None, None, None, None
    return float(crit), beta, sigma2, XVX, system


def conditional_modes(cp: MultiCrossProducts, system: FactoredSystem, beta: np.ndarray) -> list[np.ndarray]:
    """Conditional modes (BLUPs) b_k of every factor at beta: Lambda A^{-1} Lambda' Z'(y - X beta)."""
    weights = np.r_[-beta, 1.0]  # Z'(y - X beta) = Z'[X y] (-beta, 1)
    ZeK = (cp.ZeXy @ weights)[:, :, None]
    ZrK = (cp.ZrXy @ weights)[:, None] if cp.rest else None
    W, G = system.half(ZeK, ZrK)
    return system.modes(W, G)


def marginal_loglik(cp: MultiCrossProducts, beta: np.ndarray, covs: list[np.ndarray], sigma2: float) -> float:
    """ML log-likelihood at beta, the factors' covariances Psi_k and sigma^2 (mitml's D3 evaluation).

    -2 l = n log(2 pi sigma^2) + log|A| + (r'r - R' A^{-1} R) / sigma^2, r = y - X beta,
    R = Lambda' Z'r, for any templates with T_k T_k' = Psi_k / sigma^2.
    """
    templates = []
    for cov in covs:
        rel = np.asarray(cov, float) / sigma2
        w, v = np.linalg.eigh((rel + rel.T) / 2.0)
        templates.append(v * np.sqrt(np.maximum(w, 0.0)))
    system = FactoredSystem(cp, templates)
    weights = np.r_[-beta, 1.0]
    rr = float(weights @ cp.XyXy @ weights)
    ZeK = (cp.ZeXy @ weights)[:, :, None]
    ZrK = (cp.ZrXy @ weights)[:, None] if cp.rest else None
    W, G = system.half(ZeK, ZrK)
    quad = rr - float(system.quadratic(W, G)[0, 0])
    return float(-0.5 * (cp.n * np.log(2.0 * np.pi * sigma2) + system.logdet + quad / sigma2))
