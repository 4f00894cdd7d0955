"""The README's two set-up commands and CI stay in step."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = [line for block in _bash_blocks() for line in block.strip().splitlines()]
    assert commands == ["pip install . && skmlmi demo popmis", 'pip install -e ".[test]" && python -m pytest -n 2']


def test_ci_runs_the_readme_test_command():
    test_command = [line for block in _bash_blocks() for line in block.strip().splitlines()][1]
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_python_examples_run():
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        code = block.replace("n_imputations=20, max_iter=10", "n_imputations=3, max_iter=2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, "README.md", "exec"), {"print": lambda *args, **kwargs: None})


def test_readme_first_example_imputes_once_and_pools_those_imputations(monkeypatch):
    # The first example used to impute, then let MIPooler impute again: its pooled results must come from the
    # datasets it made (completed.analyse), with one run of the chains, and print a summary whose every column
    # shows (no "..." where pandas would cut a wide table).
    import warnings

    import skmlmi.imputer as imputer_module

    runs = []
    original = imputer_module.MultilevelIterativeImputer._run_chains
    monkeypatch.setattr(
        imputer_module.MultilevelIterativeImputer,
        "_run_chains",
        lambda self, chains: runs.append(len(chains)) or original(self, chains),
    )
    first = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)[0]
    printed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = first.replace("n_imputations=20, max_iter=10", "n_imputations=3, max_iter=2")
        exec(
            compile(code, "README.md", "exec"),
            {"print": lambda *args, **kwargs: printed.append(" ".join(map(str, args)))},
        )
    assert runs == [3]
    summary = "\n".join(printed)
    assert "fmi" in summary and "p_value" in summary and "..." not in summary
