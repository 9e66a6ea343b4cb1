"""Amdahl's law as a testable prediction: the measured step against the prediction, and each premise checked."""

from __future__ import annotations

from helpers.core.claims import Ratio
from helpers.core.validate import require_instance, require_number

REST_TOLERANCE = 0.03  # "unchanged" means within 3% either way, with the whole interval inside


def prediction_position(predicted: float, ceiling: float, step: Ratio) -> str:
    """Where the step's measured interval lies: 'above the ceiling', 'inside', 'above' or 'below' the prediction."""
    if step.low > ceiling:
        return "above the ceiling"
    if step.low <= predicted <= step.high:
        return "inside"
    return "below" if predicted > step.high else "above"


def data_premise(data_inside: Ratio, data_alone: Ratio) -> str:
    """Whether the data phase inside the step gained what it gained alone: 'held', 'less' or 'more'."""
    if data_alone.median > data_inside.high:
        return "less"
    if data_alone.median < data_inside.low:
        return "more"
    return "held"


def amdahl_speedup(share: float, speedup: float) -> float:
    """Amdahl's law: the whole's speed-up when a share of its time gets `speedup` times faster."""
    require_number("share", share, minimum=0, maximum=1)
    require_number("speedup", speedup, strictly_positive=True)
    return 1 / ((1 - share) + share / speedup)


def amdahl_verdict(*, share: float, step: Ratio, data_inside: Ratio, data_alone: Ratio, rest: Ratio) -> str:
    """The check of an Amdahl prediction from (share p, data_alone s), in sentences chosen by what was measured."""
    predicted, ceiling = amdahl_speedup(share, data_alone.median), amdahl_speedup(share, float("inf"))
    for name, ratio in (("step", step), ("data_inside", data_inside), ("data_alone", data_alone), ("rest", rest)):
        require_instance(name, ratio, Ratio)
    position = prediction_position(predicted, ceiling, step)
    lines = [f"Prediction {predicted:.2f}x (ceiling {ceiling:.2f}x); the whole step measured {step}: " + {
        "above the ceiling": "the whole interval lies above the ceiling, which speeding up the data phase "
                             "alone cannot do.",
        "inside": "the prediction lies inside the measured interval.",
        "below": "the step gained less than predicted.",
        "above": "the step gained more than predicted."}[position]]
    if position != "above the ceiling" and step.median > ceiling:
        lines.append(f"Its median ({step.median:.2f}x) lies above the ceiling, which a faster data phase alone "
                     "cannot reach: look at the premises.")
    data = data_premise(data_inside, data_alone)
    lines.append(f"Premise 1, the data phase keeps its speed-up inside the step: {data_inside} inside against "
                 f"{data_alone.median:.1f}x alone: " + {
                     "held": "held.", "less": "broke, it gained less inside the step than alone.",
                     "more": "broke, it gained more inside the step than alone."}[data])
    if data != "held":
        inside = amdahl_speedup(share, data_inside.median)
        lines.append(f"Fed with the speed-up the data phase had inside the step, Amdahl predicts {inside:.2f}x instead "
                     f"of {predicted:.2f}x" + (f": with p = {share:.1%}, both s are large enough that the ceiling, "
                                              "not s, decides the prediction." if abs(inside / predicted - 1) < 0.05
                                              else "."))
    lines.append(f"Premise 2, the rest of the step is unchanged (within {REST_TOLERANCE:.0%}): {rest}: "
                 + rest_premise_reading(rest))
    if data == "held" and rest_premise(rest) == "held":
        lines.append("Both premises held, so this run tests the law: " + (
            "Amdahl's law, fed with p and s measured beforehand, predicted the step." if position == "inside" else
            "yet the prediction missed; p was measured in another run than the comparison, so look there first."))
    else:
        lines.append(explain_the_miss(share, step, data, data_inside, rest))
    return "\n".join(lines)


def rest_premise(rest: Ratio) -> str:
    """'held' when the whole interval lies within the tolerance of 1.0 (an equivalence test), 'faster' or 'slower'
    when it lies wholly on one side of 1.0, and 'not shown' when it is too wide to tell."""
    if 1 - REST_TOLERANCE <= rest.low and rest.high <= 1 + REST_TOLERANCE:
        return "held"
    return {"gain": "faster", "loss": "slower"}.get(rest.gain, "not shown")


def rest_premise_reading(rest: Ratio) -> str:
    """The sentence for premise 2's outcome."""
    return {"held": "held: the whole interval lies within the tolerance.",
            "faster": "broke, the rest of the step got faster too.",
            "slower": "broke, the rest of the step got slower.",
            "not shown": f"not shown: the interval is too wide to tell a change of {REST_TOLERANCE:.0%} from none "
                         f"(the rest's time could have changed by {1 / rest.high - 1:+.0%} to {1 / rest.low - 1:+.0%})."
            }[rest_premise(rest)]


def explain_the_miss(share: float, step: Ratio, data: str, data_inside: Ratio, rest: Ratio) -> str:
    """The step accounted for by both premises as measured, which way each broken premise moved it, and whether
    the accounting closes within the rest's interval (the widest uncertainty in it)."""
    def account(rest_speedup: float) -> float:
        return 1 / ((1 - share) / rest_speedup + share / data_inside.median)

    accounted, low, high = account(rest.median), account(rest.low), account(rest.high)
    closes = (f" Across the rest's interval the accounting spans {low:.2f} to {high:.2f}x, "
              + ("which holds the measured step: it closes within this run's noise." if low <= step.median <= high
                 else "which misses the measured step: something else changed too (p itself was measured in "
                      "another run)."))
    moves = [{"less": "the data phase's smaller gain inside the step lowers the result",
              "more": "the data phase's larger gain inside the step raises it", "held": ""}[data],
             {"faster": "the faster rest raises it", "slower": "the slower rest lowers it",
              "not shown": "the rest's change cannot be told from noise", "held": ""}[rest_premise(rest)]]
    lifted = (" Only a faster rest of the step can lift it above the ceiling 1/(1-p)."
              if step.median > amdahl_speedup(share, float("inf")) else "")
    return (f"A premise broke or could not be shown, so this run does not test the law's arithmetic. Fed with both "
            f"premises as measured (data phase {data_inside.median:.1f}x, rest {rest.median:.2f}x), the same formula "
            f"gives {accounted:.2f}x against the measured {step.median:.2f}x: "
            + "; ".join(m for m in moves if m) + "." + closes + lifted
            + " That is an accounting of where the time went, not a prediction.")
