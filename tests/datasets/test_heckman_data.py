"""make_heckman and interviewer_effect: arguments."""

import numpy as np
import pytest

from skmlmi.datasets import interviewer_effect, make_heckman


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rho": "a"}, "'rho' parameter of make_heckman"),
        ({"missing_prop": None}, "'missing_prop' parameter of make_heckman"),
        ({"exclusion": "yes"}, "'exclusion' parameter of make_heckman"),
        ({"random_state": "x"}, "'random_state' parameter of make_heckman"),
        ({"n_clusters": True}, "n_clusters must be a positive integer"),
        ({"n_clusters": 10**9, "cluster_size": 10**9}, "a simulator makes at most"),
    ],
)
def test_wrong_types_and_impossible_sizes_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_heckman(**kwargs)


def test_interviewer_effect_takes_one_adjustment_column_by_name():
    data = make_heckman(n_clusters=3, cluster_size=5, random_state=0).rename(columns={"cluster": "interviewer"})
    data = data.assign(consent=data["y"].notna().astype(int), region=np.arange(len(data)) % 2)
    with pytest.raises(ValueError, match=r"data has no column\(s\) \['regio'\]"):
        interviewer_effect(data, consent="consent", interviewer="interviewer", adjust="regio")
