"""The instruments every chapter measures with: clocks, rounds, claims, memory, cost, hardware, precision, accuracy."""
