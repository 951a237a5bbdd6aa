"""The hvmspec tool: the CLI, the engines' registry and the conformance runner.

Room: everything a user runs. Imports ``spec`` (the reference engine and the
interface), ``impl`` (the optimised engine) and ``proofs``.
"""
