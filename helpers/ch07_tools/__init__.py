"""Chapter 7, tools: profiler tables and the trace timeline, ONNX Runtime sessions, the TensorRT path, exercises."""
