"""Build and execute the case-study notebooks from the cell lists in specs.py.

Run from anywhere (one command rebuilds all three, a few minutes on 2 cores)::

    python notebooks/build.py            # or: python notebooks/build.py 03_mnar_heckman

It writes notebooks/NAME.ipynb with outputs and prints each notebook's KEY lines. The
kernel imports skmlmi from this checkout (the repository root is put first on its
PYTHONPATH), whatever copy of skmlmi the environment has installed.

The notebooks are generated rather than hand-edited so that their code stays reviewable
as plain Python. tests/test_notebooks.py executes each notebook afresh and checks that
its assertions hold and that every ``KEY: label = value (MC SE se)`` line agrees with the
committed one within four combined Monte Carlo standard errors: the numbers come from
Markov chains, which turn last-bit differences between machines (BLAS kernels chosen at
run time) into different draws, so a fresh run on another machine agrees in distribution,
not digit for digit.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def kernel_environment() -> None:
    """Make kernels started from this process import skmlmi from this checkout."""
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def key_lines(notebook) -> list[str]:
    """The ``KEY:`` lines a notebook printed, in order."""
    lines = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                lines += re.findall(r"^KEY: .*$", output["text"], flags=re.M)
    return lines


def _cells(spec):
    cells = []
    for kind, text in spec:
        text = text.strip("\n")
        cells.append(nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text))
    return cells


def build(name: str, spec, timeout: int = 900) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = _cells(spec)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    kernel_environment()
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    nbformat.write(notebook, HERE / f"{name}.ipynb")
    return notebook


def main(names):
    from specs import NOTEBOOKS

    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise SystemExit(f"unknown notebooks {unknown}; choose from {sorted(NOTEBOOKS)}")
    for name in names or NOTEBOOKS:
        notebook = build(name, NOTEBOOKS[name])
        print("built", name)
        for line in key_lines(notebook):
            print("   ", line)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(sys.argv[1:])
