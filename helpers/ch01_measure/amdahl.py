"""Amdahl's law as a testable prediction: the measured step against the prediction, and each premise checked."""

from __future__ import annotations

from helpers.core.claims import Ratio
from helpers.core.validate import require_instance, require_number


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


def amdahl_verdict(*, predicted: float, ceiling: float, step: Ratio, data_inside: Ratio, data_alone: Ratio,
                   rest: Ratio) -> str:
    """The check of an Amdahl prediction, in sentences chosen by what was measured."""
    require_number("predicted", predicted, strictly_positive=True)
    require_number("ceiling", ceiling, minimum=predicted)
    for name, ratio in (("step", step), ("data_inside", data_inside), ("data_alone", data_alone), ("rest", rest)):
        require_instance(name, ratio, Ratio)
    position = prediction_position(predicted, ceiling, step)
    lines = [f"Prediction {predicted:.2f}x (ceiling {ceiling:.2f}x); the whole step measured {step}: " + {
        "above the ceiling": "the whole interval lies above the ceiling, which speeding up the data phase "
                             "alone cannot do.",
        "inside": "the prediction lies inside the measured interval.",
        "below": "the step gained less than predicted.",
        "above": "the step gained more than predicted."}[position]]
    data = data_premise(data_inside, data_alone)
    lines.append(f"Premise 1, the data phase keeps its speed-up inside the step: {data_inside} inside against "
                 f"{data_alone.median:.1f}x alone: " + {
                     "held": "held.", "less": "broke, it gained less inside the step than alone.",
                     "more": "broke, it gained more inside the step than alone."}[data])
    lines.append(f"Premise 2, the rest of the step is unchanged: {rest}: " + {
        "no gain": "held, within this run's noise.", "gain": "broke, the rest of the step got faster too.",
        "loss": "broke, the rest of the step got slower."}[rest.gain])
    if data == "held" and rest.gain == "no gain":
        lines.append("Both premises held, so this run tests the law: " + (
            "Amdahl's law, fed with p and s measured beforehand, predicted the step." if position == "inside" else
            "yet the prediction missed; p was measured in another run than the comparison, so look there first."))
    else:
        lines.append("A premise broke, so this run does not test the law's arithmetic: the gap between prediction "
                     "and measurement is the broken premise's doing, and it is itself worth knowing.")
    return "\n".join(lines)
