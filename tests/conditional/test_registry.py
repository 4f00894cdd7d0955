"""The registry of conditional models: discovery, names, capabilities, the default table, the docs."""

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmlmi.conditional as conditional
from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsNormal, RandomEffectsPMM
from skmlmi.conditional.base import TARGET_KINDS, BaseConditionalImputer
from skmlmi.conditional.registry import (
    COUNT_MODELS,
    DEFAULT_MODELS,
    KINDS,
    all_models,
    default_model,
    find_models,
    make_model,
    r_method_names,
    resolve_name,
)
from skmlmi.predictors import default_method
from skmlmi.recommend import _choose

HERE = Path(__file__).parent
DOCS = HERE.parents[1] / "docs"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


# --------------------------------------------------------------------------- discovery
def test_discovery_finds_every_exported_model_and_nothing_else():
    exported = {
        name
        for name in conditional.__all__
        if isinstance(getattr(conditional, name), type)
        and issubclass(getattr(conditional, name), BaseConditionalImputer)
        and name != "BaseConditionalImputer"
    }
    assert {cls.__name__ for cls in all_models()} == exported
    assert len(exported) >= 17


def test_every_public_model_class_in_the_package_is_exported():
    # a model defined in a conditional/ file but not exported would escape discovery (and the contract tests)
    defined = {
        cls.__name__
        for cls in _subclasses(BaseConditionalImputer)
        if cls.__module__.startswith("skmlmi.conditional.") and not cls.__name__.startswith("_")
    }
    assert defined == {cls.__name__ for cls in all_models()}


def test_every_model_declares_what_the_registry_reads():
    for cls in all_models():
        assert cls.target_kinds and cls.target_kinds <= TARGET_KINDS, cls
        assert isinstance(cls.cluster_level, bool) and isinstance(cls.handles_systematic, bool), cls
        assert isinstance(cls.r_names, dict), cls
        for r_name, settings in cls.r_names.items():
            assert isinstance(r_name, str) and isinstance(settings, dict), cls
            cls(**settings)._validate_params()  # the settings an R name implies are valid hyperparameters
    assert set(KINDS) == TARGET_KINDS


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", [cls.__name__ for cls in all_models()])
def test_a_class_name_makes_that_model_with_its_defaults(name):
    model = make_model(name)
    assert type(model).__name__ == name and model.get_params() == type(model)().get_params()


@pytest.mark.parametrize(
    ("r_name", "expected"),
    [
        ("pmm", "PredictiveMeanMatching()"),
        ("norm", "BayesianNormal()"),
        ("logreg", "BayesianLogistic()"),
        ("polyreg", "Polytomous()"),
        ("2l.pan", "RandomEffectsNormal()"),
        ("2l.lmer", "RandomEffectsNormal()"),
        ("2l.norm", "RandomEffectsNormal(heteroscedastic=True)"),
        ("2l.pmm", "RandomEffectsPMM()"),
        ("2l.bin", "RandomEffectsLogistic()"),
        ("2lonly.norm", "ClusterLevelNormal()"),
        ("2lonly.pmm", "ClusterLevelPMM()"),
        ("2lonly.mean", "ClusterMean()"),
        ("2l.2stage.norm", "TwoStageNormal()"),
        ("2l.2stage.pmm", "TwoStagePMM()"),
        ("2l.2stage.bin", "TwoStageLogistic()"),
        ("2l.2stage.pois", "TwoStagePoisson()"),
        ("2l.2stage.heckman", "HeckmanSelection()"),
        ("2l.glm.pois", "RandomEffectsPoisson()"),  # added with the model (not in the command line's old table)
    ],
)
def test_an_r_name_makes_the_model_the_command_line_always_gave(r_name, expected):
    # the command line's alias table before the registry, kept name for name
    assert repr(make_model(r_name)) == expected
    assert r_method_names()[r_name] == expected


def test_the_r_names_are_exactly_the_ones_the_command_line_accepted_and_the_new_models():
    assert len(r_method_names()) == 18  # the command line's 17, and 2l.glm.pois (RandomEffectsPoisson)


def test_settings_given_with_an_r_name_override_the_implied_ones():
    assert repr(make_model("2l.norm", n_gibbs=3)) == "RandomEffectsNormal(heteroscedastic=True, n_gibbs=3)"
    assert make_model("2l.norm", heteroscedastic=False).heteroscedastic is False
    cls, settings = resolve_name("2l.norm")
    settings["heteroscedastic"] = False  # a copy: the declaration is not changed through it
    assert make_model("2l.norm").heteroscedastic is True


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("randomeffectsnormal", "did you mean RandomEffectsNormal?"),
        ("RandomEffectNormal", "did you mean RandomEffectsNormal?"),
        ("2l.lmr", "did you mean 2l.lmer?"),
        ("2L.PMM", "did you mean 2l.pmm?"),
        ("BaseConditionalImputer", "abstract base class"),
    ],
)
def test_a_near_miss_is_a_value_error_with_did_you_mean_and_the_valid_names(name, hint):
    with pytest.raises(ValueError, match=re.escape(hint)) as info:
        make_model(name)
    message = str(info.value)
    assert f"unknown model {name!r}" in message
    assert all(cls.__name__ in message for cls in all_models())
    assert all(r_name in message for r_name in r_method_names())


def test_names_are_case_sensitive_and_only_names_are_names():
    with pytest.raises(ValueError, match="unknown model 'predictivemeanmatching'"):
        resolve_name("predictivemeanmatching")
    for not_a_model in ("Draw", "DrawContext", "ROLE_NAMES", "registry", ""):
        with pytest.raises(ValueError, match="unknown model"):
            resolve_name(not_a_model)
    with pytest.raises(TypeError, match="must be a string"):
        resolve_name(RandomEffectsNormal)


def test_an_r_name_belongs_to_one_model():
    owners = {}
    for cls in all_models():
        for r_name in cls.r_names:
            assert r_name not in owners, (r_name, owners.get(r_name), cls)
            owners[r_name] = cls
    assert "2l.pan" not in RandomEffectsPMM.r_names  # a subclass declares its own names


# --------------------------------------------------------------------------- capabilities
def test_capability_queries_read_the_declarations():
    names = lambda classes: {cls.__name__ for cls in classes}  # noqa: E731
    assert names(find_models("categorical")) == {
        "Polytomous",
        "RandomEffectsCategorical",
        "ClusterMean",
    }
    without_groups = names(find_models(groups=False))
    assert "PredictiveMeanMatching" in without_groups and "HeckmanSelection" in without_groups
    assert not without_groups & {"RandomEffectsNormal", "TwoStageNormal", "ClusterMean"}
    assert "PredictiveMeanMatching" not in names(find_models(groups=True))
    systematic = names(find_models(systematic=True))
    assert systematic == {cls.__name__ for cls in all_models() if cls.handles_systematic}
    assert not systematic & {"PredictiveMeanMatching", "BayesianNormal", "BayesianLogistic", "Polytomous"}
    assert names(find_models(cluster_level=True)) == {
        "ClusterLevelNormal",
        "ClusterLevelPMM",
        "ClusterLevelLogistic",
        "ClusterMean",
    }
    assert names(find_models("binary", systematic=True, cluster_level=False, groups=True)) == {
        "RandomEffectsLogistic",
        "RandomEffectsCategorical",
        "TwoStageLogistic",
        "HeckmanSelection",
    }
    assert names(find_models(role=-3)) == {"HeckmanSelection"}
    assert "PredictiveMeanMatching" not in names(find_models(role=2))


# --------------------------------------------------------------------------- the default table
def _frozen_defaults():
    lines = [line for line in (HERE / "default_models.csv").read_text().splitlines() if not line.startswith("#")]
    for row in csv.DictReader(lines):
        yield (
            row["kind"],  # "count": an integer column taken for counts (default_model(..., count=True))
            row["multilevel"] == "True",
            {"no": False, "whole": True, "partial": "partial"}[row["cluster_level"]],
            row["systematic"] == "True",
            row["meta_analysable"] == "True",
            row["model"],
        )


FROZEN = list(_frozen_defaults())


def test_the_frozen_table_covers_every_situation():
    assert len(FROZEN) == (4 + 1) * 2 * 3 * 2 * 2  # the four kinds, and integer columns of counts
    assert len({row[:5] for row in FROZEN}) == len(FROZEN)


@pytest.mark.parametrize(("kind", "multilevel", "cluster_level", "systematic", "meta_analysable", "expected"), FROZEN)
def test_default_model_is_the_one_chosen_before_the_registry(
    kind, multilevel, cluster_level, systematic, meta_analysable, expected
):
    count = kind == "count"
    kind = "integer" if count else kind
    model = default_model(
        kind, multilevel, cluster_level, systematic=systematic, meta_analysable=meta_analysable, count=count
    )
    assert repr(model) == expected
    if not systematic and not count:  # the engine's fallback and suggest_predictors' path (they see no data)
        assert repr(default_method(kind, multilevel, bool(cluster_level), cluster_level == "partial")) == expected
    if multilevel:  # recommend_methods' path, from the statistics it computes
        level2 = bool(cluster_level)
        if level2:
            pattern = (
                ("sporadic+systematic" if systematic else "sporadic") if cluster_level == "partial" else "systematic"
            )
        else:
            pattern = "systematic" if systematic else "sporadic"
        n_sys = int(systematic or cluster_level is True)
        share_small = 0.0 if meta_analysable else 1.0
        chosen, reason = _choose(kind, pattern, level2, 10, share_small, n_sys, 100, 0.4, 5, 10, count)
        assert repr(chosen) == expected and reason


def test_the_defaults_for_systematic_missingness_handle_it():
    for situation, row in DEFAULT_MODELS.items():
        if situation != "single level":
            for name in row:
                assert make_model(name).handles_systematic, (situation, name)


def test_a_default_table_entry_that_contradicts_a_declaration_is_refused(monkeypatch):
    from skmlmi.conditional import registry

    monkeypatch.setitem(
        registry.DEFAULT_MODELS,
        "random effects",
        ("PredictiveMeanMatching",) * 2 + DEFAULT_MODELS["random effects"][2:],
    )
    with pytest.raises(RuntimeError, match="PredictiveMeanMatching.*cannot impute clusters in which"):
        default_model("continuous", True, systematic=True)
    with pytest.raises(ValueError, match="unknown column kind"):
        default_model("count", True)  # a count is an integer column: count=True
    with pytest.raises(ValueError, match="count=True is for integer columns"):
        default_model("continuous", True, count=True)
    monkeypatch.setitem(registry.COUNT_MODELS, "random effects", "PredictiveMeanMatching")
    with pytest.raises(RuntimeError, match=r"COUNT_MODELS\['random effects'\] names PredictiveMeanMatching"):
        default_model("integer", True, systematic=True, count=True)


def test_the_count_defaults_handle_systematic_missingness_and_impute_integers():
    for situation, name in COUNT_MODELS.items():
        assert situation in DEFAULT_MODELS and "integer" in make_model(name).target_kinds
        assert situation == "single level" or make_model(name).handles_systematic


# --------------------------------------------------------------------------- names in the imputer
def _clustered(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(30), 8)
    effect = rng.normal(size=30)[groups]
    x = rng.normal(size=groups.size)
    y = x + effect + rng.normal(scale=0.5, size=groups.size)
    count = rng.poisson(np.exp(0.3 * x + 0.3 * effect)).astype(float)
    frame = pd.DataFrame({"g": groups, "x": x, "y": y, "count": count})
    frame.loc[rng.random(groups.size) < 0.2, "y"] = np.nan
    frame.loc[rng.random(groups.size) < 0.2, "x"] = np.nan
    frame.loc[rng.random(groups.size) < 0.2, "count"] = np.nan
    return frame


def _completed(methods):
    imputer = MultilevelIterativeImputer(methods=methods, n_imputations=2, max_iter=2, random_state=1)
    return imputer, imputer.fit_transform_all(_clustered(), groups="g")


@pytest.mark.parametrize(
    ("by_name", "by_instance"),
    [
        (
            {"y": "2l.pan", "x": "RandomEffectsPMM"},
            {"y": RandomEffectsNormal(), "x": RandomEffectsPMM()},
        ),
        (
            {"y": "2l.norm", "count": "2l.pmm"},
            {"y": RandomEffectsNormal(heteroscedastic=True), "count": RandomEffectsPMM()},
        ),
        ("2l.pmm", RandomEffectsPMM()),
    ],
)
def test_models_given_by_name_impute_bit_identically_to_the_instances(by_name, by_instance):
    named, from_names = _completed(by_name)
    _, from_instances = _completed(by_instance)
    for a, b in zip(from_names, from_instances, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert named.methods == by_name  # the constructor stores the names; they are resolved at fit
    assert all(isinstance(model, BaseConditionalImputer) for model in named.methods_.values())


def test_an_unknown_name_in_methods_is_a_value_error_at_fit_listing_the_valid_names():
    imputer = MultilevelIterativeImputer(methods={"y": "2l.pann"}, n_imputations=1, max_iter=1)
    assert imputer.methods == {"y": "2l.pann"}  # stored, not checked, by the constructor
    with pytest.raises(ValueError, match=r"methods\['y'\]: unknown model '2l.pann'; did you mean 2l.pan\?") as info:
        imputer.fit(_clustered(), groups="g")
    assert "RandomEffectsNormal" in str(info.value) and "2lonly.mean" in str(info.value)
    with pytest.raises(ValueError, match=r"methods: unknown model 'nonsense'"):
        MultilevelIterativeImputer(methods="nonsense", n_imputations=1, max_iter=1).fit(_clustered(), groups="g")


def test_a_named_model_is_checked_against_the_column_kind():
    with pytest.raises(ValueError, match="TwoStagePoisson cannot impute 'y', a continuous column"):
        MultilevelIterativeImputer(methods={"y": "2l.2stage.pois"}, n_imputations=1, max_iter=1).fit(
            _clustered(), groups="g"
        )


# --------------------------------------------------------------------------- the docs' model table
def _methods_table():
    """(R names, model names, right-hand text) per row of the Methods table in docs/coming_from_r.rst."""
    text = (DOCS / "coming_from_r.rst").read_text()
    section = text.split("\nMethods\n=======\n", 1)[1]
    rows, current = [], None
    for line in section.split(".. list-table::", 1)[1].splitlines()[1:]:
        if line and not line.startswith(" "):
            break  # the end of the table
        if line.startswith("   * - "):
            current = [line[7:], ""]
            rows.append(current)
        elif line.startswith("     - "):
            current[1] = line[7:]
        elif current is not None:
            current[1 if current[1] else 0] += " " + line.strip()
    out = []
    for left, right in rows[1:]:  # the first row is the header
        r_names = set(re.findall(r"``([0-9a-z.]+)``", left))
        models = set(re.findall(r"``([A-Z][A-Za-z]+)[(`]", right))
        out.append((r_names, models, right))
    return out


#: R names the table lists as related methods of other packages, which the names of ``methods``
#: and the command line do not accept (each differs somewhere from the model beside it).
RELATED_NOT_ACCEPTED = {
    "polr",  # an ordered model; Polytomous ignores the order
    "2l.continuous",  # miceadds' lme4-based approximate draws
    "2l.glm.norm",  # micemd's lme4-based approximate draws
    "2l.binary",  # miceadds' glmer-based approximate draws
    "2l.glm.bin",  # micemd's glmer-based approximate draws
    "2l.jomo",  # a joint model, for continuous targets too
    "2lonly.function",  # a wrapper around any single-level method
}


def test_the_docs_model_table_lists_every_model_and_r_name_and_nothing_else():
    table = _methods_table()
    assert table, "the Methods table of docs/coming_from_r.rst was not found"
    documented_models = set().union(*(models for _, models, _ in table))
    documented_r_names = set().union(*(r_names for r_names, _, _ in table))
    assert documented_models == {cls.__name__ for cls in all_models()}
    assert documented_r_names - RELATED_NOT_ACCEPTED == set(r_method_names())
    assert not RELATED_NOT_ACCEPTED & set(r_method_names())
    for r_name, spelled in r_method_names().items():
        row = next(row for row in table if r_name in row[0])
        model = spelled.partition("(")[0]
        assert model in row[1], (r_name, row)
        if not spelled.endswith("()"):  # implied settings are shown beside the model
            assert spelled in row[2].replace("``", ""), (r_name, row)


def test_the_models_page_describes_every_model():
    text = (DOCS / "models.rst").read_text()
    for cls in all_models():
        assert re.search(rf":class:`~skmlmi\.conditional\.(\w+\.)?{cls.__name__}`", text), cls.__name__
