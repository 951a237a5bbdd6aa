"""Benchmarks: engines measured side by side, in one run (``make bench``).

Room: measurement only. Imports the engines through :mod:`hvmspec.engines`.
"""
