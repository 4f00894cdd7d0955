"""Warnings that point at the user's own line, however deep in the package they are raised."""

from __future__ import annotations

import os
import sys
import warnings

import joblib
import sklearn

#: Folders whose frames stand between a user's call and a warning raised inside the package: the
#: package itself and the libraries its estimators are called through (scikit-learn's wrappers of
#: fit and transform, joblib's dispatch of the chains run in this process).
_INTERNAL = tuple(os.path.dirname(module.__file__) + os.sep for module in (sys.modules[__package__], sklearn, joblib))


def with_column(column, reason: str) -> str:
    """An event's reason led by its column's name, unless the reason names the column first itself
    (``"'popular': ..."`` was warned as ``"popular: 'popular': ..."``)."""
    return reason if reason.startswith((f"{column!r}", f"{column}:")) else f"{column}: {reason}"


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the first frame outside the package and the libraries it is called through.

    A fixed ``stacklevel`` is right for one call path only: the same event warned from ``fit``,
    ``fit_transform`` or a Pipeline pointed at ``sklearn/base.py`` or at the package's own lines.
    (Python 3.12's ``skip_file_prefixes`` does this; the package supports 3.11.)
    """
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
