"""Tests of helpers/core/rounds.py."""



def test_round_order_alternates_so_that_no_variant_always_runs_first():
    from helpers.core.rounds import round_order
    assert round_order({"a": 1, "b": 2, "c": 3}, 0) == ["a", "b", "c"]
    assert round_order(["a", "b", "c"], 1) == ["c", "b", "a"]
    assert round_order(iter(["a", "b"]), 2) == ["a", "b"]
