"""The contract every conditional model honours, checked over all of them.

Models are discovered, not listed, so a new model file is checked as soon as it exists.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional.base import (
    ROLE_NAMES,
    TARGET_KINDS,
    BaseConditionalImputer,
    Draw,
    DrawContext,
)
from skmlmi.conditional.registry import all_models

MODELS = all_models()


def _problem(model_class, kind, seed=0, n_clusters=12, size=15):
    """A small problem the model can fit: y of the given kind, predictors, clusters."""
    rng = np.random.default_rng(seed)
    n = n_clusters * size
    groups = np.repeat(np.arange(n_clusters), size)
    effect = rng.normal(scale=0.8, size=n_clusters)
    cluster_level = model_class.__module__.endswith("cluster_level")
    x = rng.normal(size=n)
    if cluster_level:
        x = rng.normal(size=n_clusters)[groups]
    linear = x + effect[groups] + (0 if cluster_level else rng.normal(scale=0.7, size=n))
    if kind == "binary":
        y = (linear > 0).astype(float)
    elif kind == "categorical":
        y = np.digitize(linear, [-0.7, 0.7]).astype(float)
    elif kind == "integer":
        y = rng.poisson(np.exp(1 + 0.4 * linear)).astype(float)  # counts: valid for Poisson models too
    else:
        y = linear
    observed = rng.random(n) < 0.7
    if cluster_level:
        observed = (rng.random(n_clusters) < 0.7)[groups]
    X = x[:, None]
    roles = np.array([2 if 2 in model_class.accepted_roles else 1])
    uses_groups = model_class.requires_groups or model_class.uses_groups_if_given
    context = DrawContext(
        target="y",
        kind=kind,
        n_categories={"binary": 2, "categorical": 3}.get(kind, 0),
        n_clusters=n_clusters if uses_groups else 0,
    )
    return y, observed, X, roles, (groups if uses_groups else None), context


def _kind(model_class):
    for kind in ("continuous", "binary", "categorical", "integer"):
        if kind in model_class.target_kinds:
            return kind
    raise AssertionError(f"{model_class.__name__} declares no target kind")


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_capabilities_are_declared(model_class):
    assert model_class.target_kinds and set(model_class.target_kinds) <= TARGET_KINDS
    assert set(model_class.accepted_roles) <= set(ROLE_NAMES)
    assert isinstance(model_class.requires_groups, bool) and isinstance(model_class.handles_systematic, bool)
    model = model_class()
    assert isinstance(model, BaseConditionalImputer)
    clone(model)._validate_params()


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_draw_and_sample_shapes_and_values(model_class):
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind)
    draw, state = model_class().draw(y, observed, X, roles, groups, np.random.default_rng(1), None, context)
    assert isinstance(draw, Draw)
    rows = ~observed
    values = draw.sample(X[rows], None if groups is None else groups[rows], np.random.default_rng(2))
    assert values.shape == (rows.sum(),) and np.isfinite(values).all()
    if kind in ("binary", "categorical"):
        assert set(np.unique(values)) <= set(range(context.n_categories))
    pickle.loads(pickle.dumps(draw))
    # the state goes back in at the next visit (warm start)
    model_class().draw(y, observed, X, roles, groups, np.random.default_rng(3), state, context)


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_seeded_draws_are_reproducible(model_class):
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind, seed=4)
    outputs = []
    for _ in range(2):
        rng = np.random.default_rng(11)
        draw, _ = model_class().draw(y, observed, X, roles, groups, rng, None, context)
        outputs.append(draw.sample(X, groups, rng))
    np.testing.assert_array_equal(*outputs)


@pytest.mark.parametrize("model_class", [c for c in MODELS if c.requires_groups], ids=lambda c: c.__name__)
def test_unseen_clusters_are_imputed(model_class):
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind, seed=5)
    draw, _ = model_class().draw(y, observed, X, roles, groups, np.random.default_rng(1), None, context)
    unseen = np.full(10, groups.max() + 3)
    values = draw.sample(X[:10], unseen, np.random.default_rng(2))
    assert values.shape == (10,) and np.isfinite(values).all()


@pytest.mark.parametrize("model_class", [c for c in MODELS if c.handles_systematic], ids=lambda c: c.__name__)
def test_systematically_missing_cluster_is_imputed(model_class):
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind, seed=6)
    observed = observed & (groups != 0)
    draw, _ = model_class().draw(y, observed, X, roles, groups, np.random.default_rng(1), None, context)
    rows = groups == 0
    values = draw.sample(X[rows], groups[rows], np.random.default_rng(2))
    assert np.isfinite(values).all()


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_unsupported_role_code_is_an_error(model_class):
    unsupported = sorted(set(ROLE_NAMES) - set(model_class.accepted_roles) - {0, 1, -2})
    if not unsupported:
        pytest.skip("accepts every predictor role")
    kind = _kind(model_class)
    y, observed, X, _, groups, context = _problem(model_class, kind)
    with pytest.raises(ValueError, match=f"role code {unsupported[0]}"):
        model_class().draw(y, observed, X, np.array([unsupported[0]]), groups, np.random.default_rng(0), None, context)


# --------------------------------------------------------------------------- hostile inputs, used directly
@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_direct_draws_check_rng_rows_and_finite_inputs(model_class):
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind)
    model = model_class()
    with pytest.raises(TypeError, match="needs rng, a numpy.random.Generator"):
        model.draw(y, observed, X, roles, groups, 0, None, context)
    with pytest.raises(ValueError, match="no observed values of 'y'"):
        model.draw(y, np.zeros_like(observed), X, roles, groups, np.random.default_rng(0), None, context)
    X_nan = X.copy()
    X_nan[np.flatnonzero(observed)[0], 0] = np.nan
    with pytest.raises(ValueError, match="predictor 'x0' has missing or infinite values in the observed rows"):
        model.draw(y, observed, X_nan, roles, groups, np.random.default_rng(0), None, context)
    if groups is not None:
        with pytest.raises(ValueError, match="groups has shape"):
            model.draw(y, observed, X, roles, groups[:5], np.random.default_rng(0), None, context)


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.__name__)
def test_direct_draws_validate_the_parameters(model_class):
    name = next(iter(model_class._parameter_constraints))
    kind = _kind(model_class)
    y, observed, X, roles, groups, context = _problem(model_class, kind)
    model = model_class().set_params(**{name: "not a valid value"})
    with pytest.raises(ValueError, match=f"The '{name}' parameter of {model_class.__name__}"):
        model.draw(y, observed, X, roles, groups, np.random.default_rng(0), None, context)


def test_a_model_without_hyperparameters_needs_no_parameter_constraints():
    class Constant(BaseConditionalImputer):
        target_kinds = frozenset({"continuous"})

        def _draw(self, y, observed, X, roles, groups, rng, state, context):
            raise NotImplementedError("the maths")

    with pytest.raises(NotImplementedError, match="the maths"):
        Constant().draw(np.zeros(4), np.ones(4, bool), np.ones((4, 1)), np.ones(1, int), None, np.random.default_rng(0))
    data = pd.DataFrame({"x": [1.0, 2, 3, 4, 5], "y": [1.5, np.nan, 3.2, 2.1, 5.7]})
    imputer = MultilevelIterativeImputer(methods={"y": Constant()}, n_imputations=1, max_iter=1)
    with pytest.raises(NotImplementedError, match="the maths"):  # reached: the imputer validated the model
        imputer.fit(data)
