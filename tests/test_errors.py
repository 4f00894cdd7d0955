"""skmlmi._errors: an exception raised again with where it happened keeps its type and its cause."""

import pytest

from skmlmi._errors import in_context


class _Custom(ValueError):
    pass


def test_the_same_type_with_where_leading_the_message_and_the_original_as_cause():
    original = _Custom("bad value")
    original.column = "x"
    again = in_context(original, "chain 2, iteration 3")
    assert type(again) is _Custom and str(again) == "chain 2, iteration 3: bad value"
    assert again.__cause__ is original and again.column == "x"  # a custom error's fields survive


def test_a_type_that_cannot_be_made_from_a_message_is_returned_with_a_note():
    original = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    again = in_context(original, "chain 1, initialisation")
    assert again is original and "raised in chain 1, initialisation" in again.__notes__
    with pytest.raises(UnicodeDecodeError):
        raise again
