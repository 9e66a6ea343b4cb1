"""Chapter 3, hardware acceleration: the precision sweep, GPU-only measurements, torch.compile timing, exercises."""
