"""Chapter 7's profiler pointed at generation: how many positions each step's projections multiplied.

Without a cache, every generated token sends the whole sequence so far through every Linear layer;
with one, a decode step sends one position. The profile records each call's input shapes, so the
count is read from what ran, not from the code we believe ran.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.profiler import profile

from helpers.support.logs import quiet_profiler_logs
from helpers.appA_language_model.model import Decoder


def positions_per_step(model: Decoder, generate: Callable[[], object]) -> list[int]:
    """Profile generate(); return, for each forward pass in order, the positions its first block's query-key-value
    projection multiplied (batch x sequence rows of its input)."""
    width = model.config.width
    with quiet_profiler_logs(), profile(record_shapes=True) as prof:
        generate()
    rows = [shapes[0][0] * shapes[0][1] for event in prof.events() if event.name == "aten::linear"
            for shapes in [event.input_shapes] if len(shapes) > 1 and shapes[1] == [3 * width, width]
            and len(shapes[0]) == 3]
    if not rows:
        raise ValueError("the profile recorded no query-key-value projection: did generate() run this model?")
    return rows[::model.config.layers]
