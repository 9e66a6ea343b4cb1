"""Tests of helpers/core/validate.py."""

import pytest

from helpers.core.validate import require_callable, require_choice, require_instance, require_int, require_number


def test_require_int_accepts_ints_and_rejects_bools_floats_and_small_values():
    assert require_int("workers", 3, minimum=0) == 3
    with pytest.raises(TypeError, match="workers must be an int"):
        require_int("workers", 2.5)
    with pytest.raises(TypeError):
        require_int("workers", True)
    with pytest.raises(ValueError, match=r"workers must be an int >= 0, got -1"):
        require_int("workers", -1, minimum=0)


def test_require_number_bounds_and_nan():
    assert require_number("ratio", 0.5, minimum=0, maximum=1) == 0.5
    with pytest.raises(ValueError, match=r"ratio must be <= 1"):
        require_number("ratio", 1.5, maximum=1)
    with pytest.raises(ValueError, match="NaN"):
        require_number("ratio", float("nan"))
    with pytest.raises(ValueError, match="> 0"):
        require_number("seconds", 0, strictly_positive=True)
    with pytest.raises(TypeError, match="must be a number"):
        require_number("ratio", "half")


def test_require_choice_lists_the_allowed_values():
    assert require_choice("precision", "bf16", ["fp32", "bf16"]) == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of 'fp32', 'bf16'; got 'fp8'"):
        require_choice("precision", "fp8", ["fp32", "bf16"])


def test_require_callable_and_instance():
    assert require_callable("fn", len) is len
    with pytest.raises(TypeError, match="fn must be callable"):
        require_callable("fn", 3)
    with pytest.raises(TypeError, match="model must be a int or str, got float"):
        require_instance("model", 1.0, (int, str))
