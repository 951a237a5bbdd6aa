"""The uart suite: COM1's 16550A register by register, on a virtual clock.

Room: interface (the case format, ``#/$defs/uart-case`` of the schema of
:mod:`spec.suites`) and the expected answers, computed with
:class:`spec.devices.uart.Uart16550`. Imports :mod:`spec.devices.uart`,
:mod:`spec.trace`, :mod:`spec.suites`.

A case::

    {"id": str, "input": hex, "steps": [step, ...]}     (one step or more)

``input`` is what a sender on the other end of the line will send: one byte
each character time while the guest holds RTS (``MCR`` bit 1), as
:mod:`spec.devices.uart` describes. The clock starts at 0 ns. Steps:

``{"op": "read", "offset": 0..7}``
    a byte read of the register at that offset (DLAB selects the divisor
    at 0 and 1);
``{"op": "write", "offset": 0..7, "value": 0..255}``
    a byte write;
``{"op": "wait", "ns": n}``
    the clock advances by ``n`` ns; every timer of the UART that falls due
    on the way fires at its own time (a received byte, the character
    timeout), in order.

The answer, in the order things happened: ``{"read": offset, "value": v}``
for each read, ``{"serial": byte}`` for each byte the transmitter sent
(``SerialOut``), ``{"irq": level}`` each time the UART drove its interrupt
line.
"""

from __future__ import annotations

import random

from spec import trace
from spec.suites import check_case

NAME = "uart"
#: one character time at 9600 baud (the power-on divisor 12), in ns
CHAR_9600 = -(-10 * 12 * 1_000_000_000 // 115_200)


def validate(case: dict, path: str = "$") -> None:
    """Refuse a case that is not of this format (the schema's
    ``#/$defs/uart-case``), naming the field under ``path``."""
    check_case(case, NAME, path)


class Clock:
    """The suite's virtual clock, in ns from 0."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def drive(case: dict, events: list[dict], clock: Clock, read, write, due, fire) -> list[dict]:
    """Run ``case``'s steps against a UART given by its operations:
    ``read(offset)``, ``write(offset, value)``, ``due()`` (its next timer
    deadline or None) and ``fire(now)`` (its timers due by ``now``). The
    UART itself appends its ``serial`` and ``irq`` events to ``events``;
    this adds the reads, and moves the clock from deadline to deadline
    through each wait. (How a case runs, for any implementation's UART;
    what the UART answers is the implementation's.)"""
    for step in case["steps"]:
        if step["op"] == "read":
            events.append({"read": step["offset"], "value": read(step["offset"])})
        elif step["op"] == "write":
            write(step["offset"], step["value"])
        else:
            end = clock.now + step["ns"]
            while (deadline := due()) is not None and deadline <= end:
                clock.now = max(clock.now, deadline)
                fire(clock.now)
            clock.now = end
    return events


def expected(case: dict) -> list[dict]:
    """The reference model's events for ``case``."""
    from spec.devices.uart import Uart16550    # here: impl's adapter imports drive()
    validate(case)
    events: list[dict] = []
    clock = Clock()

    def emit(event: trace.Event) -> None:
        if isinstance(event, trace.SerialOut):
            events.append({"serial": event.byte})

    uart = Uart16550("com1", emit, irq=lambda level: events.append({"irq": level}),
                     clock=clock, input=bytes.fromhex(case["input"]))
    return drive(case, events, clock, lambda offset: uart.io_read(offset, 1),
                 lambda offset, value: uart.io_write(offset, 1, value), uart.next_deadline,
                 uart.expire)


#: register traffic that reaches the interesting states often
_COMMON = [
    ("write", 0, 0x41), ("write", 0, 0x42), ("read", 0, 0), ("read", 2, 0), ("read", 5, 0),
    ("read", 6, 0), ("write", 2, 0x01), ("write", 2, 0x41), ("write", 2, 0xC1),
    ("write", 2, 0x07), ("write", 4, 0x10), ("write", 4, 0x12), ("write", 4, 0x1B),
    ("write", 4, 0x02), ("write", 4, 0x0B), ("write", 1, 0x0F), ("write", 1, 0x05),
    ("write", 1, 0x00), ("write", 3, 0x83), ("write", 3, 0x03), ("wait", 0, CHAR_9600),
    ("wait", 0, 4 * CHAR_9600), ("wait", 0, 20 * CHAR_9600), ("wait", 0, 1),
]


def generate(rng: random.Random, count: int) -> list[dict]:
    cases = []
    for n in range(count):
        steps = []
        for _ in range(rng.randint(5, 60)):
            if rng.random() < 0.75:
                op, offset, value = rng.choice(_COMMON)
            else:
                op = rng.choice(("read", "write", "wait"))
                offset, value = rng.randrange(8), rng.randrange(256)
                if op == "wait":
                    value = rng.randrange(1, 6 * CHAR_9600)
            if op == "read":
                steps.append({"op": "read", "offset": offset})
            elif op == "write":
                steps.append({"op": "write", "offset": offset, "value": value})
            else:
                steps.append({"op": "wait", "ns": value})
        data = bytes(rng.randrange(256) for _ in range(rng.choice((0, 0, 3, 20))))
        cases.append({"id": f"uart-{n:04d}", "input": data.hex(), "steps": steps})
    return cases
