"""Data the project ships or generates for demos, tests and benchmarks."""
