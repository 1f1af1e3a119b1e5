"""Faithful simulators of the messaging platforms, for the demo, the tests and the benchmarks."""
