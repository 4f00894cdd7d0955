"""The shipped three-level and cross-classified datasets: R's exports, read with R's factor coding."""

import gzip
import hashlib
import re
from importlib import resources

import pandas as pd
import pytest

from skmlmi.datasets import load_egsingle, load_insteval, load_pastes

DATA = resources.files("skmlmi.datasets").joinpath("data")


@pytest.mark.parametrize("name", ["egsingle.csv.gz", "insteval.csv.gz", "pastes.csv"])
def test_shipped_files_are_the_r_exports_their_provenance_names(name):
    raw = DATA.joinpath(name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    provenance = DATA.joinpath("PROVENANCE.md").read_text()
    csv = name.removesuffix(".gz")
    recorded = re.search(rf"shared/data/{re.escape(csv)}`[^`]*?sha256\s+`([0-9a-f]{{64}})`", provenance, re.S)
    assert recorded is not None, f"PROVENANCE.md records no sha256 for {csv}"
    assert hashlib.sha256(raw).hexdigest() == recorded.group(1)


def test_egsingle_is_three_level_with_r_coding():
    data = load_egsingle()
    assert data.shape == (7230, 12)
    assert data.schoolid.nunique() == 60 and data.childid.nunique() == 1721
    # nested: every child in one school
    assert (data.groupby("childid", observed=True).schoolid.nunique() == 1).all()
    assert list(data.female.cat.categories) == ["Female", "Male"]
    assert list(data.black.cat.categories) == [0, 1]
    assert data.notna().all().all()


def test_insteval_is_crossed():
    data = load_insteval()
    assert data.shape == (73421, 7)
    assert data.s.nunique() == 2972 and data.d.nunique() == 1128
    assert (data.groupby("s", observed=True).d.nunique() > 1).mean() > 0.9  # students meet several lecturers
    assert data.studage.cat.ordered and list(data.studage.cat.categories) == [2, 4, 6, 8]
    assert list(data.service.cat.categories) == [0, 1]
    assert pd.api.types.is_integer_dtype(data.y)


def test_pastes_cask_labels_repeat_across_batches():
    data = load_pastes()
    assert data.shape == (60, 4)
    assert data.cask.nunique() == 3 and data["sample"].nunique() == 30
    assert (data.batch.astype(str) + ":" + data.cask.astype(str) == data["sample"].astype(str)).all()
