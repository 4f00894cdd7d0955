"""Seeded outputs of every conditional model, saved to compare two versions of the code bit for bit.

Run once with each version of skmlmi first on the path and compare the two files::

    PYTHONPATH=/path/to/old python benchmarks/compare_model_draws.py --save old.npz
    PYTHONPATH=/path/to/new python benchmarks/compare_model_draws.py --save new.npz
    python benchmarks/compare_model_draws.py --compare old.npz new.npz

Cases: ``fit_transform_all`` (m = 2, max_iter = 3) on popmis with the default models, and on a
small synthetic clustered data set with each model of :mod:`skmlmi.conditional` in turn as the
model of a target of a kind it imputes (the other columns with their defaults); plus direct calls
of every model's ``draw`` (three visits, the state fed back) with a random slope where the model
accepts one, a systematically missing cluster and a cluster unseen at fit, sampled afterwards.
A refactoring that keeps the random streams must reproduce every array exactly (same machine).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd


def _as_matrix(frame: pd.DataFrame) -> np.ndarray:
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.cat.codes
        columns[name] = pd.to_numeric(column, errors="coerce").astype(float)
    return pd.DataFrame(columns).to_numpy()


def _synthetic(seed: int = 0, n_clusters: int = 14, size: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_clusters * size
    g = np.repeat(np.arange(n_clusters), size)
    u = rng.normal(scale=0.8, size=n_clusters)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n) + 0.3 * u[g]
    lin = x1 + 0.5 * x2 + u[g]
    w = rng.normal(size=n_clusters)
    df = pd.DataFrame(
        {
            "g": g,
            "x1": x1,
            "x2": x2,
            "yc": lin + rng.normal(scale=0.7, size=n),
            "yb": (lin + rng.logistic(size=n) > 0).astype(float),
            "ycat": pd.Categorical(np.array(["a", "b", "c"])[np.digitize(lin + rng.normal(size=n), [-0.7, 0.7])]),
            "ycount": rng.poisson(np.exp(0.5 + 0.4 * lin)).astype(float),
            "zc": (w + 0.5 * u)[g],
            "zb": (w + u > 0).astype(float)[g],
        }
    )
    miss = rng.random((n, 5)) < 0.25
    for k, col in enumerate(["yc", "yb", "ycat", "ycount", "x2"]):
        df.loc[miss[:, k], col] = np.nan
    df.loc[g == 3, "yc"] = np.nan  # a systematically missing cluster
    cl_miss = rng.random(n_clusters) < 0.3
    df.loc[cl_miss[g], "zc"] = np.nan
    df.loc[(rng.random(n_clusters) < 0.3)[g], "zb"] = np.nan
    return df


_TARGET = {
    "continuous": "yc",
    "binary": "yb",
    "categorical": "ycat",
    "integer": "ycount",
}


def _imputer_cases(out: dict) -> None:
    from skmlmi import MultilevelIterativeImputer
    from skmlmi.conditional.registry import all_models
    from skmlmi.datasets import load_popmis

    popmis = load_popmis()[["school", "popular", "sex", "texp", "teachpop"]]
    sets = MultilevelIterativeImputer(n_imputations=2, max_iter=3, random_state=11).fit_transform_all(
        popmis, groups="school"
    )
    out["popmis/default"] = np.stack([_as_matrix(d) for d in sets])
    data = _synthetic()
    for model_class in all_models():
        kinds = [k for k in ("continuous", "binary", "categorical", "integer") if k in model_class.target_kinds]
        for kind in kinds:
            target = _TARGET[kind]
            if model_class.cluster_level:
                target = "zb" if kind == "binary" else "zc"
                if kind not in ("continuous", "binary"):
                    continue
            frame = data
            if model_class.__name__ == "HeckmanSelection" or model_class.__name__.startswith("TwoStage"):
                frame = data.drop(columns=["zc", "zb"])
            for ordered in (False, True) if kind == "categorical" else (False,):
                if ordered:
                    frame = frame.assign(ycat=frame["ycat"].cat.as_ordered())
                key = f"synthetic/{model_class.__name__}/{kind}{'/ordered' if ordered else ''}"
                imp = MultilevelIterativeImputer(
                    methods={target: model_class()}, n_imputations=2, max_iter=3, random_state=5
                )
                try:
                    sets = imp.fit_transform_all(frame, groups="g")
                    out[key] = np.stack([_as_matrix(d) for d in sets])
                except Exception as error:  # noqa: BLE001 - recorded: an error must stay the same error
                    out[key + "/error"] = np.array(f"{type(error).__name__}: {error}")


#: settings beyond the defaults that take another path through a model
_VARIANTS = {"RandomEffectsNormal": [{"heteroscedastic": True}], "HeckmanSelection": [{"pmm": True}]}


def _draw_cases(out: dict) -> None:
    from skmlmi.conditional.registry import all_models

    n_clusters, size = 12, 15
    for model_class in all_models():
        for settings in [{}, *_VARIANTS.get(model_class.__name__, [])]:
            _draw_case(out, model_class, settings, n_clusters, size)


def _draw_case(out: dict, model_class, settings: dict, n_clusters: int, size: int) -> None:
    from skmlmi.conditional.base import DrawContext

    for kind in ("continuous", "binary", "categorical", "integer"):
        if kind not in model_class.target_kinds:
            continue
        for slope in (False, True):
            if slope and 2 not in model_class.accepted_roles:
                continue
            rng = np.random.default_rng(3)
            n = n_clusters * size
            groups = np.repeat(np.arange(n_clusters), size)
            effect = rng.normal(scale=0.8, size=n_clusters)
            cluster_level = model_class.cluster_level
            x = rng.normal(size=(n, 2))
            if cluster_level:
                x = rng.normal(size=(n_clusters, 2))[groups]
            linear = x[:, 0] + effect[groups] + (0 if cluster_level else rng.normal(scale=0.7, size=n))
            if kind == "binary":
                y = (linear > 0).astype(float)
            elif kind == "categorical":
                y = np.digitize(linear, [-0.7, 0.7]).astype(float)
            elif kind == "integer":
                y = rng.poisson(np.exp(1 + 0.4 * linear)).astype(float)
            else:
                y = linear
            observed = rng.random(n) < 0.7
            if cluster_level:
                observed = (rng.random(n_clusters) < 0.7)[groups]
            if model_class.handles_systematic:
                observed[groups == 2] = False
            roles = np.array([2 if slope else 1, 1])
            uses_groups = model_class.requires_groups or model_class.uses_groups_if_given
            for ordered in (False, True) if kind == "categorical" else (False,):
                key = f"draw/{model_class.__name__}{settings or ''}/{kind}/{'slope' if slope else 'fixed'}"
                key += "/ordered" if ordered else ""
                draw_rng = np.random.default_rng(7)
                state, values = None, []
                try:
                    for _ in range(3):
                        context = DrawContext(
                            target="y",
                            kind=kind,
                            n_categories={"binary": 2, "categorical": 3}.get(kind, 0),
                            ordered=ordered,
                            n_clusters=n_clusters if uses_groups else 0,
                        )
                        draw, state = model_class(**settings).draw(
                            y, observed, x, roles, groups if uses_groups else None, draw_rng, state, context
                        )
                        values.append(draw.sample(x[~observed], groups[~observed] if uses_groups else None, draw_rng))
                        new_groups = np.full(5, n_clusters + 1) if uses_groups else None
                        values.append(draw.sample(x[:5], new_groups, draw_rng))
                    out[key] = np.concatenate(values)
                    out[key + "/events"] = np.array(" | ".join(context.events))
                except Exception as error:  # noqa: BLE001 - recorded: an error must stay the same error
                    out[key + "/error"] = np.array(f"{type(error).__name__}: {error}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", help="write the outputs of the skmlmi on the path to this .npz")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two saved files")
    args = parser.parse_args(argv)
    if args.save:
        out: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _imputer_cases(out)
            _draw_cases(out)
        np.savez(args.save, **out)
        print(f"{len(out)} arrays written to {args.save}")
        return 0
    old, new = (np.load(path) for path in args.compare)
    keys = sorted(set(old.files) | set(new.files))
    failures = 0
    for key in keys:
        if key not in old.files or key not in new.files:
            status = "only in " + ("old" if key in old.files else "new")
        else:
            a, b = old[key], new[key]
            same = a.shape == b.shape and (
                np.array_equal(a, b, equal_nan=True) if a.dtype.kind == "f" else np.array_equal(a, b)
            )
            status = "identical" if same else "DIFFERENT"
        failures += status != "identical"
        print(f"{status:>10}  {key}")
    print(f"{len(keys) - failures} of {len(keys)} identical")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
