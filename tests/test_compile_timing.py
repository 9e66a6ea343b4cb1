import torch
from torch._dynamo.utils import counters

from helpers.compile_timing import forget_compiled_code


def test_after_forget_compiled_code_a_compile_is_served_by_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    forget_compiled_code()

    def double_relu(x):
        return torch.relu(x) * 2

    x = torch.randn(8)
    assert torch.equal(torch.compile(double_relu)(x), double_relu(x))  # cold: compiled and written to disk
    hits_before = counters["inductor"]["fxgraph_cache_hit"]
    forget_compiled_code()
    assert torch.equal(torch.compile(double_relu)(x), double_relu(x))  # warm: read back from disk
    assert counters["inductor"]["fxgraph_cache_hit"] == hits_before + 1
    forget_compiled_code()
