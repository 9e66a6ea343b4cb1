"""The running example every chapter measures: the digits data, the small CNN and ResNet-18, plain training loops."""
