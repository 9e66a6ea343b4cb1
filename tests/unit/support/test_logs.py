"""Tests of helpers/support/logs.py."""

import os

from helpers.support.logs import is_noise, quiet_profiler_logs


def test_only_torch_s_native_noise_is_noise():
    assert is_noise("[W1205 17:00:00.123 USDT: probe started]")
    assert is_noise("gpuGetDeviceCount failed with code 100")
    assert not is_noise("[default0]: step 3 loss 0.41")
    assert not is_noise("")


def test_quiet_profiler_logs_drops_only_the_noise(capfd):
    with quiet_profiler_logs():
        os.write(2, b"USDT:2026-01-01 probe\nERROR: gpuGetDeviceCount failed with code 35\na real warning\n")
    err = capfd.readouterr().err
    assert "a real warning" in err and "USDT" not in err and "gpuGetDeviceCount" not in err
