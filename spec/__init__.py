"""hvmspec's reference model of Xen full virtualization (HVM).

Room: ``spec/`` is the definition of correct behaviour. It is written to be
read: each module is one concept of ``DESIGN.md`` (ioreq, event channel, VMM,
qemu-dm, device, xend), its docstrings are the specification prose, and its
semantic functions are written over :mod:`spec.bv` so that ``proofs/`` checks
the very functions that run.

Interface modules, which ``impl/`` may import: :mod:`spec.platform`,
:mod:`spec.trace`, :mod:`spec.loader`, :mod:`spec.result` and the control plane
:mod:`spec.xend`. Everything else here is behaviour that ``impl/`` must
implement independently.
"""
