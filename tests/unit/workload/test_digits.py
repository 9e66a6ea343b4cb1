"""Tests of helpers/workload/digits.py."""

import numpy as np

from helpers.workload.digits import digits_tensors


def test_digits_tensors_are_sklearns_digits():
    from sklearn.datasets import load_digits
    x, y = digits_tensors()
    digits = load_digits()
    np.testing.assert_allclose(x.numpy(), digits.data / 16, rtol=0, atol=1e-7)
    assert y.tolist() == digits.target.tolist()
