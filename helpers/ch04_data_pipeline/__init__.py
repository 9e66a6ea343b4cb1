"""Chapter 4, the data pipeline: the digits as image files and caches, DataLoader measurements, exercises."""
