"""Tests of helpers/support/logs.py."""

from helpers.support.logs import is_noise


def test_only_torch_s_native_noise_is_noise():
    assert is_noise("[W1205 17:00:00.123 USDT: probe started]")
    assert is_noise("gpuGetDeviceCount failed with code 100")
    assert not is_noise("[default0]: step 3 loss 0.41")
    assert not is_noise("")
