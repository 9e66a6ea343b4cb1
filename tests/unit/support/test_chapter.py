import warnings

from helpers.support.chapter import hide_torch_internal_warnings


def test_torch_internal_warnings_are_hidden_and_no_others():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hide_torch_internal_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use TreeSpec", FutureWarning)
        warnings.warn("Warning: Profiler clears events at the end of each cycle.Only events", UserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", UserWarning)  # another category: shown
        warnings.warn("torch.cuda.amp.autocast is deprecated", FutureWarning)  # a learner's API: shown
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated",
                                                "torch.cuda.amp.autocast is deprecated"]
