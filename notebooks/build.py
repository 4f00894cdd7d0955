"""Build and execute the case-study notebooks from the cell lists below.

Run: python notebooks/build.py [name ...]   (writes notebooks/NAME.ipynb with outputs)

The notebooks are generated rather than hand-edited so that their code stays reviewable
as plain Python; tests/test_notebooks.py executes each notebook afresh and checks that its
assertions hold and that the key numbers it prints equal the committed outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def _cells(spec):
    cells = []
    for kind, text in spec:
        text = text.strip("\n")
        cells.append(nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text))
    return cells


def build(name: str, spec, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = _cells(spec)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    nbformat.write(notebook, HERE / f"{name}.ipynb")
    return notebook


def main(names):
    from specs import NOTEBOOKS

    for name in names or NOTEBOOKS:
        build(name, NOTEBOOKS[name])
        print("built", name)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(sys.argv[1:])
