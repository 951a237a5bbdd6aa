"""Bundled guest programs: 16-bit assembly sources, one per file.

Room: data. Each ``<name>.s`` is a guest that ``hvmspec run <name>`` boots;
:mod:`spec.loader` assembles and places it. Guests only execute x86
instructions and know nothing of Xen, except ``balloon``, which makes the
hypercalls a balloon driver makes.
"""
