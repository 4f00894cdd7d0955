"""Exceptions raised again with where they happened (a chain, an imputation), keeping their type."""

from __future__ import annotations


def in_context(error: Exception, where: str) -> Exception:
    """``error`` made again with ``where`` leading its message: the same type, the original its cause.

    An exception type whose constructor wants other arguments (``UnicodeDecodeError``)
    cannot be made again from a message; the original is returned with ``where`` added as
    a note (PEP 678), so that callers catching its type still catch it.
    """
    try:
        again = type(error)(f"{where}: {error}")
    except Exception:
        again = None
    if type(again) is not type(error):
        error.add_note(f"raised in {where}")
        return error
    again.__dict__.update(error.__dict__)  # attributes a caller may read (a custom error's fields)
    again.__cause__ = error
    return again
