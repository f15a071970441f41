"""Benchmarks of corps against raw-asyncio baselines; run `python -m benchmarks`."""
