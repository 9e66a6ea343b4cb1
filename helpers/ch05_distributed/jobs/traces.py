"""Reading a profile's collectives: the events of a finished torch.profiler run, and what their dtypes weigh.

The jobs read the chrome trace the profiler writes: each event names its operator, thread, start and
duration, and with record_shapes=True the shapes and dtypes of its inputs.
"""

import json
import tempfile
from pathlib import Path

from torch.profiler import profile

# The dtype names the trace writes, and the bytes of one element of each.
TRACE_TYPE_BYTES = {"float": 4, "double": 8, "c10::BFloat16": 2, "c10::Half": 2}


def trace_events(prof: profile) -> list[dict]:
    """The events of a finished profile, from its chrome trace (a file that the profiler writes)."""
    with tempfile.TemporaryDirectory() as folder:
        trace_path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace_path))
        return json.loads(trace_path.read_text())["traceEvents"]
