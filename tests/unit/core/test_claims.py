"""Tests of helpers/core/claims.py."""

import numpy as np
import pytest

from helpers.core.claims import VERDICTS, Ratio, claims_table, make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.measure import Timing

ROUNDS = 8


def noisy(center: float, spread: float, seed: int) -> list[float]:
    """Per-round times scattered around center by a relative spread (a synthetic, repeatable measurement)."""
    return list(center * (1 + spread * np.random.default_rng(seed).uniform(-1, 1, ROUNDS)))


def claim_at_least(threshold: float, baseline: list[float], optimized: list[float]):
    return make_claim(1, "c", "optimized is faster", threshold=threshold, ratio=paired_ratio(baseline, optimized),
                      hardware="test machine")


def test_a_clearly_faster_variant_holds():
    claim = claim_at_least(2.0, noisy(10.0, 0.05, 1), noisy(3.0, 0.05, 2))
    assert 3.0 < claim.ratio.median < 3.7 and claim.ratio.low > 2.0
    assert claim.verdict == "holds" and claim.ratio.gain == "gain"


def test_a_clearly_slower_variant_does_not_hold():
    claim = claim_at_least(2.0, noisy(10.0, 0.05, 3), noisy(8.0, 0.05, 4))
    assert claim.ratio.high < 2.0
    assert claim.verdict == "does not hold here"


def test_indistinguishable_variants_are_inconclusive_and_no_gain():
    claim = claim_at_least(1.0, noisy(10.0, 0.2, 5), noisy(10.0, 0.2, 6))
    assert claim.ratio.low < 1.0 < claim.ratio.high
    assert claim.verdict == "inconclusive" and claim.ratio.gain == "no gain"


def test_an_at_most_claim_is_judged_from_the_other_side():
    slower = paired_ratio(noisy(10.0, 0.05, 7), noisy(20.0, 0.05, 8))  # about 0.5x
    assert make_claim(1, "c", "s", threshold=1.0, ratio=slower, hardware="h", direction="at most").verdict == "holds"
    assert make_claim(1, "c", "s", threshold=0.3, ratio=slower, hardware="h", direction="at most").verdict \
        == "does not hold here"


def test_rates_are_compared_the_other_way_round():
    ratio = paired_ratio([100.0, 100.0, 100.0], [200.0, 200.0, 200.0], higher_is_better=True)
    assert (ratio.median, ratio.low, ratio.high) == (2.0, 2.0, 2.0)


def test_the_interval_repeats_for_the_same_data():
    base, opt = noisy(10.0, 0.1, 9), noisy(5.0, 0.1, 10)
    assert paired_ratio(base, opt) == paired_ratio(base, opt)


def test_bad_measurements_and_claims_are_rejected():
    with pytest.raises(ValueError, match="one value per round"):
        paired_ratio([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3 paired rounds"):
        paired_ratio([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"optimized\[1\] must be > 0"):
        paired_ratio([1.0, 2.0, 3.0], [1.0, 0.0, 3.0])
    ratio = Ratio(2.0, 1.5, 2.5, 5)
    with pytest.raises(ValueError, match="direction must be one of 'at least', 'at most'"):
        make_claim(1, "c", "s", threshold=2.0, ratio=ratio, hardware="h", direction="about")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        make_claim(1, "c", "s", threshold=0.0, ratio=ratio, hardware="h")
    with pytest.raises(TypeError, match="ratio must be a Ratio"):
        make_claim(1, "c", "s", threshold=2.0, ratio=2.0, hardware="h")


def test_the_report_reads_the_verdict_it_got():
    holds = make_claim(1, "c", "s", threshold=1.2, ratio=Ratio(2.0, 1.5, 2.5, 5), hardware="h")
    fails = make_claim(1, "c", "s", threshold=3.0, ratio=Ratio(2.0, 1.5, 2.5, 5), hardware="h")
    readings = {"holds": "READ-HOLDS", "does_not_hold": "READ-FAILS"}
    assert "READ-HOLDS" in report_claim(holds, **readings).data and "holds" in holds.sentence()
    assert "READ-FAILS" in report_claim(fails, **readings).data and "does not hold here" in fails.sentence()
    with pytest.raises(ValueError, match="readings may only be"):
        report_claim(holds, maybe="x")


def test_a_bound_that_rounds_to_the_threshold_is_printed_with_three_decimals():
    close = make_claim(1, "c", "s", threshold=1.1, ratio=Ratio(1.28, 1.0996, 1.38, 12), hardware="h")
    assert close.verdict == "inconclusive" and "1.100 to 1.380x" in close.sentence()
    clear = make_claim(1, "c", "s", threshold=1.1, ratio=Ratio(1.28, 1.2, 1.38, 12), hardware="h")
    assert "1.20 to 1.38x" in clear.sentence()


def test_the_claims_table_has_one_row_per_claim_with_a_known_verdict():
    claims = [make_claim(1, f"c{i}", "s", threshold=t, ratio=Ratio(2.0, 1.5, 2.5, 5), hardware="h")
              for i, t in enumerate((1.2, 2.0, 3.0))]
    table = claims_table(claims + [claims[0].as_dict() | {"name": "from-json"}])
    assert list(table["verdict"]) == ["holds", "inconclusive", "does not hold here", "holds"]
    assert set(table["verdict"]) <= set(VERDICTS)
    assert table.loc[(1, "c0"), "threshold"] == "at least 1.2x"


def test_timing_ratio_pairs_the_rounds_of_two_timings():
    slow = Timing(0.02, 0.0, 3, 30, (0.020, 0.022, 0.021))
    fast = Timing(0.01, 0.0, 3, 30, (0.010, 0.011, 0.0105))
    assert timing_ratio(slow, fast).median == pytest.approx(2.0)
    with pytest.raises(TypeError, match="must be a Timing"):
        timing_ratio(0.02, fast)
