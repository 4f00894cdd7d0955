"""Cells of the case-study notebooks (see build.py). ``KEY:`` lines are the numbers the
tests compare with the committed outputs."""

POPMIS = [
    ("md", """
# Case study 1: popularity of pupils in schools (popmis)

Why clustering matters. `popmis` (R package mice) holds 2000 pupils in 100 schools; the
popularity score `popular` is missing for 848 pupils (MAR). The analysis model is the
random-intercept model `popular ~ sex + texp + (1 | school)`. We compare three
imputation strategies: ignoring the schools, school fixed effects, and a multilevel
(random-effects) model, as in the tutorial's first case study.
"""),
    ("code", """
import warnings
import matplotlib
matplotlib.use("Agg")
import numpy as np
import pandas as pd
from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsNormal
from skmlmi.datasets import load_popmis
from skmlmi import diagnostics
warnings.simplefilter("ignore")
pd.set_option("display.precision", 4)
data = load_popmis()[["school", "popular", "sex", "texp"]]
data.describe()
"""),
    ("md", "## 1. The missing data: pattern, per-cluster missingness, correlations, ICC"),
    ("code", """
pattern = diagnostics.plot_pattern(data)
pattern.table
"""),
    ("code", """
by_cluster = diagnostics.plot_missing_by_cluster(data, "school")
by_cluster.table.head()
"""),
    ("code", """
diagnostics.plot_corr(data.drop(columns="school"), missingness=True).table
"""),
    ("code", """
icc_observed = diagnostics.icc(data, "school")
print("KEY: ICC of observed popularity", round(icc_observed["popular"], 3))
icc_observed
"""),
    ("md", """
## 2. Three imputation strategies

Role codes as in mice: `0` not used, `1` fixed effect (the school column coded 1 means
school fixed effects), `2` random slope, `-2` cluster identifier. `popular` holds whole
numbers; like R's methods we impute it as continuous.
"""),
    ("code", """
strategies = {
    "ignoring schools": ({"popular": PredictiveMeanMatching()}, {"school": {"popular": 0}}),
    "school fixed effects": ({"popular": PredictiveMeanMatching()}, {"school": {"popular": 1}}),
    "multilevel": ({"popular": RandomEffectsNormal()}, {"school": {"popular": -2}, "sex": {"popular": 2}}),
}
imputers = {
    label: MultilevelIterativeImputer(methods=methods, predictor_matrix=matrix, n_imputations=20, max_iter=10,
                                      column_kinds={"popular": "continuous"}, random_state=2022)
    for label, (methods, matrix) in strategies.items()
}
diagnostics.plot_predictor_matrix(imputers["multilevel"].fit(data, groups="school")).figure
"""),
    ("md", "## 3. Convergence of the multilevel chains"),
    ("code", """
imp = imputers["multilevel"]
diagnostics.plot_trace(imp).figure
"""),
    ("code", """
convergence = diagnostics.convergence_table(imp)
print("KEY: final split-R-hat", round(float(convergence["rhat"].iloc[-1]), 2))
assert convergence["rhat"].iloc[-1] < 1.1
convergence.tail(3)
"""),
    ("md", "## 4. Observed and imputed values"),
    ("code", """
sets = imp.fit_transform_all(data, groups="school")
diagnostics.plot_imputed(data, sets, ["popular"], groups="school").figure
"""),
    ("md", "## 5. Pooled analyses, side by side with the complete cases"),
    ("code", """
analysis = LinearMixedModel("popular ~ sex + texp + (1 | school)")
complete = LinearMixedModel("popular ~ sex + texp + (1 | school)", missing="drop").fit(data)
poolers = {label: MIPooler(imputer, analysis).fit(data, groups="school") for label, imputer in imputers.items()}
for label, pooler in poolers.items():
    print(f"== {label}")
    print(pooler.summary_[["estimate", "std_error", "statistic", "df", "p_value", "riv", "fmi"]].round(4))
"""),
    ("code", """
components = pd.DataFrame({"complete cases": complete.variance_components_}
                          | {label: p.variance_components_ for label, p in poolers.items()}).T
for label, row in components.iterrows():
    print(f"KEY: ICC {label}", round(row["ICC|school"], 2))
assert components.loc["ignoring schools", "ICC|school"] < 0.3
assert abs(components.loc["multilevel", "ICC|school"] - components.loc["complete cases", "ICC|school"]) < 0.05
components
"""),
    ("md", """
Ignoring the schools halves the intraclass correlation (about 0.20 instead of 0.50, R's
mice gives 0.20 too): every variance component and standard error downstream goes wrong
with it. School fixed effects keep the ICC (slightly overstated, 0.53, as R's dummy
approach); the multilevel model reproduces the complete-case ICC and R's 2l.pan (0.49).
"""),
]

NOTEBOOKS = {"01_popmis": POPMIS}

MNAR = [
    ("md", """
# Case study 3: outcomes missing not at random (obesity and HIV)

When whether a value is observed depends on the value itself, every MAR imputation
model is biased. The Heckman selection model, fitted per cluster and combined across
clusters by random-effects meta-analysis (Munoz et al. 2023; micemd's
2l.2stage.heckman), imputes such outcomes given an exclusion restriction: a variable that
affects whether the value is observed but not the value itself (role code -3).
"""),
    ("code", """
import warnings
import numpy as np
import pandas as pd
from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import HeckmanSelection, RandomEffectsLogistic, RandomEffectsNormal
from skmlmi.datasets import interviewer_effect, load_hiv, load_obesity
warnings.simplefilter("ignore")


def pooled_mean(sets, column):
    \"\"\"Rubin's rules for the mean of a column: estimate and total standard error.\"\"\"
    q = np.array([s[column].astype(float).mean() for s in sets])
    u = np.array([s[column].astype(float).var(ddof=1) / len(s) for s in sets])
    return q.mean(), np.sqrt(u.mean() + (1 + 1 / len(q)) * q.var(ddof=1))


def compare(data, column, groups, exclusion, mar_model, m=10, max_iter=5):
    rows, imputers = {}, {}
    for label, model, code in (("Heckman (MNAR)", HeckmanSelection(), -3), ("MAR", mar_model, 1)):
        imp = MultilevelIterativeImputer(methods={column: model}, predictor_matrix={exclusion: {column: code}},
                                         n_imputations=m, max_iter=max_iter, random_state=2024)
        sets = imp.fit_transform_all(data, groups=groups)
        rows[label] = pooled_mean(sets, column)
        imputers[label] = imp
    table = pd.DataFrame(rows, index=["pooled mean", "SE"]).T
    table.loc["observed only"] = [data[column].astype(float).mean(), np.nan]
    return table, imputers
"""),
    ("md", """
## Obesity: weight missing for heavier respondents

`Weight` is missing for 790 of 2111 respondents (all of cluster 5); `Time` is the
exclusion restriction; `Cluster` the cluster. The other incomplete columns (Age, Height,
FAVC) get the default multilevel models.
"""),
    ("code", """
obesity = load_obesity()
table, imputers = compare(obesity, "Weight", "Cluster", "Time", RandomEffectsNormal())
heckman = imputers["Heckman (MNAR)"]
draw = heckman.final_draws_[0][heckman.visit_sequence_.index("Weight")]
print(getattr(draw, "inner", draw).cluster_table().round(3).to_string(index=False))
print("KEY: obesity Heckman mean weight", round(table.loc["Heckman (MNAR)", "pooled mean"], 1))
print("KEY: obesity MAR mean weight", round(table.loc["MAR", "pooled mean"], 1))
assert table.loc["Heckman (MNAR)", "pooled mean"] > table.loc["observed only", "pooled mean"]
table
"""),
    ("md", """
The estimated error correlations rho are negative in every estimable cluster: heavier
respondents are less likely to report their weight, so the Heckman imputations are
heavier than the MAR ones. Cluster 5 has no observed weight: its parameters come from the
population distribution of the meta-analysis (logged as systematically missing).

## HIV: status missing for those who refuse the test

The exclusion restriction is the interviewer's effect on consent: a random-intercept
logistic model of `hivconsent` on region and language, with the interviewer as random
effect, gives each interviewer's predicted effect (as in the tutorial). Region is the
cluster.
"""),
    ("code", """
hiv = load_hiv()
effect = interviewer_effect(hiv)
data = hiv[["hiv", "age", "marital", "condom", "smoke", "region"]].assign(interviewer_effect=effect.to_numpy())
table, imputers = compare(data, "hiv", "region", "interviewer_effect", RandomEffectsLogistic())
heckman = imputers["Heckman (MNAR)"]
draw = heckman.final_draws_[0][heckman.visit_sequence_.index("hiv")]
print(getattr(draw, "inner", draw).cluster_table().round(3).to_string(index=False))
print("KEY: hiv Heckman prevalence", round(table.loc["Heckman (MNAR)", "pooled mean"], 2))
print("KEY: hiv MAR prevalence", round(table.loc["MAR", "pooled mean"], 2))
assert table.loc["Heckman (MNAR)", "pooled mean"] > table.loc["MAR", "pooled mean"] + 0.03
table
"""),
    ("md", """
Under MAR the prevalence among those who refused the test is taken to equal that of
comparable people who took it (about 12-13%, the observed rate). The selection model
finds negative error correlations in most regions (people more likely to be positive are
less likely to consent) and a prevalence near 20%, the pattern the tutorial reports.
Regions whose likelihood is flat in rho are treated as systematically missing and get
their parameters from the meta-analysis.
"""),
]

NOTEBOOKS["03_mnar_heckman"] = MNAR
