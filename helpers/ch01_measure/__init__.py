"""Chapter 1, measuring: the phases of a training step, busy cores, the benchmark-loop exercise."""
