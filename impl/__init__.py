"""The optimised implementation of hvmspec, on Unicorn.

Room: a second, independent engine with the same observable behaviour as the
reference model in ``spec/``, written for speed rather than for reading.
It may import ``spec``'s *interface* only — the trace event types
(:mod:`spec.trace`), the platform constants (:mod:`spec.platform`), the guest
loader (:mod:`spec.loader`), the run result (:mod:`spec.result`) — and the
control plane that both engines share (:mod:`spec.xend`). Everything on the
guest's data path (exit decoding, ioreqs, event channels, the VMM, qemu-dm
and its devices) is written again here, so that conformance between the two
engines means something.

Modules:

* :mod:`impl.vcpu` — the vcpu on Unicorn: counts retired instructions per
  translated block (:mod:`impl.blocks`), and stops only at instructions
  that exit (:mod:`impl.exits`); guest memory by linear address is
  :mod:`impl.guest_linear`;
* :mod:`impl.xen` — event channels, the shared ioreq page and the VMM;
* :mod:`impl.qemu_dm` — the device model's ioreq loop and its devices;
* :mod:`impl.machine` — the host: domains, scheduling, ``run_guest``.
"""
