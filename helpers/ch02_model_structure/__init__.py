"""Chapter 2, model structure: depthwise separable layers, channel pruning, the architecture zoo, the roofline."""
