"""The ioreq suite: the shared ioreq page and its slot protocol, step by step.

Room: interface (the case format, ``#/$defs/ioreq-case`` of the schema of
:mod:`spec.suites`) and the expected answers, computed with
:mod:`spec.ioreq`'s own structure and state machine. Imports
:mod:`spec.ioreq`, :mod:`spec.suites`.

A case::

    {"id": str, "vcpus": 1..8, "steps": [step, ...]}     (one step or more)

Each step is one party acting on vcpu ``v``'s slot of one shared page
(``struct shared_iopage``); the VMM also keeps, privately, whether each vcpu
is waiting for its ioreq (the device model cannot forge that):

``{"by": "vmm", "op": "send", "vcpu": v, "ioreq": {...}}``
    The VMM sends an ioreq (fields ``addr``, ``data``, ``count``, ``size``,
    ``vp_eport``, ``dir``, ``df``, ``data_is_ptr``, ``type``, each within
    its field in the slot: 64, 64, 32, 32, 32, 1, 1, 1 and 8 bits; missing
    ones are 0). Allowed only into a ``NONE`` slot whose vcpu is not waiting:
    the fields are written, then the state ``READY``, and the vcpu waits
    (result ``sent``); otherwise nothing changes (``refused``).
``{"by": "dm", "op": "accept", "vcpu": v}``
    qemu-dm takes a ``READY`` request: ``INPROCESS`` (``accepted``), else
    ``refused``.
``{"by": "dm", "op": "respond", "vcpu": v, "data": d}``
    qemu-dm finishes an ``INPROCESS`` request: for a read (``dir`` 1) it
    writes ``data``, then the state ``IORESP_READY`` (``responded``); else
    ``refused``.
``{"by": "vmm", "op": "wake", "vcpu": v}``
    The event channel woke the VMM: for a vcpu that is not waiting,
    ``not waiting``; else by the state it reads: ``IORESP_READY`` →
    ``complete`` (it takes ``data``, frees the slot to ``NONE``, the vcpu
    runs on); ``READY``/``INPROCESS`` → ``block``; anything else →
    ``crash`` (Xen crashes the domain; every later step is ``crashed``).
``{"by": "dm", "op": "write_state", "vcpu": v, "state": 0..15}``
    A device model writes any value into the slot's state field
    (``written``): the page is shared with a less trusted party.

The answer: one event per step, ``{"step": i, "result": str, "data": int
or null, "slot": hex}``, where ``data`` is what a ``complete`` took and
``slot`` the vcpu's 32 bytes after the step (the layout of
``public/hvm/ioreq.h``, :class:`spec.ioreq.Ioreq`).
"""

from __future__ import annotations

import random

from spec import ioreq
from spec.suites import SuiteError, check_case

NAME = "ioreq"


def validate(case: dict, path: str = "$") -> None:
    """Refuse a case that is not of this format (the schema's
    ``#/$defs/ioreq-case``; and each step's vcpu below ``vcpus``), naming
    the field under ``path``."""
    check_case(case, NAME, path)
    for i, step in enumerate(case["steps"]):
        if step["vcpu"] >= case["vcpus"]:
            raise SuiteError(f"vcpu {step['vcpu']} of a case of {case['vcpus']} vcpus",
                             path=f"{path}.steps[{i}].vcpu")


def expected(case: dict) -> list[dict]:
    """The reference model's events for ``case``."""
    validate(case)
    page = ioreq.SharedIopage()
    waiting = [False] * case["vcpus"]
    crashed = False
    events = []
    for i, step in enumerate(case["steps"]):
        v, op = step["vcpu"], step["op"]
        result, data = "crashed", None
        if not crashed:
            state = page.state(v)
            if op == "send":
                sent = ioreq.vmm_send(ioreq.Slot(state, waiting[v]))
                result = "sent" if sent.enabled else "refused"
                if sent.enabled:
                    page.write_fields(v, ioreq.Ioreq(**step["ioreq"]))
                    page.set_state(v, sent.after.state)
                    waiting[v] = True
            elif op == "accept":
                accepted = ioreq.dm_accept(state)
                result = "accepted" if accepted.enabled else "refused"
                if accepted.enabled:
                    page.set_state(v, accepted.state)
            elif op == "respond":
                responded = ioreq.dm_respond(state)
                result = "responded" if responded.enabled else "refused"
                if responded.enabled:
                    if page.read(v).dir == ioreq.IOREQ_READ:
                        page.set_data(v, step["data"])
                    page.set_state(v, responded.state)
            elif op == "wake":
                if not waiting[v]:
                    result = "not waiting"
                else:
                    outcome = ioreq.vmm_wait_outcome(state)
                    result = ioreq.WAIT_NAMES[outcome]
                    if outcome == ioreq.WAIT_COMPLETE:
                        done = ioreq.vmm_complete(ioreq.Slot(state, True))
                        data = page.read(v).data
                        page.set_state(v, done.after.state)
                        waiting[v] = False
                    crashed = outcome == ioreq.WAIT_CRASH
            else:
                page.set_state(v, step["state"])
                result = "written"
        off = v * ioreq.IOREQ_SIZE
        events.append({"step": i, "result": result, "data": data,
                       "slot": page.raw[off:off + ioreq.IOREQ_SIZE].hex()})
    return events


def generate(rng: random.Random, count: int) -> list[dict]:
    """Cases that follow the protocol most of the time and stray from it
    (steps out of order, a forged state) some of the time."""
    cases = []
    for n in range(count):
        vcpus = rng.choice((1, 1, 2, 3))
        steps = []
        for _ in range(rng.randint(1, 24)):
            v = rng.randrange(vcpus)
            pick = rng.random()
            if pick < 0.3:
                size = rng.choice((1, 2, 4, 8))
                req = {"addr": rng.choice((0x3F8, 0x1F44, 0xFEB00000, rng.getrandbits(64))),
                       "data": rng.getrandbits(64), "count": rng.choice((1, 1, 4, 300)),
                       "size": size, "vp_eport": rng.randrange(1, 64),
                       "dir": rng.randrange(2), "df": rng.randrange(2),
                       "data_is_ptr": rng.randrange(2), "type": rng.choice((0, 1, 2, 8))}
                steps.append({"by": "vmm", "op": "send", "vcpu": v, "ioreq": req})
            elif pick < 0.5:
                steps.append({"by": "dm", "op": "accept", "vcpu": v})
            elif pick < 0.7:
                steps.append({"by": "dm", "op": "respond", "vcpu": v,
                              "data": rng.getrandbits(rng.choice((8, 16, 32, 64)))})
            elif pick < 0.93:
                steps.append({"by": "vmm", "op": "wake", "vcpu": v})
            else:
                steps.append({"by": "dm", "op": "write_state", "vcpu": v,
                              "state": rng.randrange(16)})
        cases.append({"id": f"ioreq-{n:04d}", "vcpus": vcpus, "steps": steps})
    return cases
