"""impl through the implementation protocol: the worked example.

Room: impl's side of :mod:`hvmspec.protocol`: ``python -m impl.adapter``
reads hvmspec's JSON lines on stdin and answers on stdout, running each case
on impl's own code: the ``uart`` suite on :class:`impl.uart.Uart`, the
``system`` suite on :func:`impl.machine.run_guest`. It imports the spec's
interface only (:mod:`spec.trace`, the case formats of
:mod:`spec.suites.system` and :mod:`spec.suites.uart` with the latter's
:func:`~spec.suites.uart.drive`, which runs a case's steps against any
UART), never a suite's expected answers. An
implementation in any other language does the same in its own way; see
``adapters/js/`` for one in JavaScript.
"""

from __future__ import annotations

import json
import sys

from spec import trace
from spec.suites.system import answer, image_of, run_args, validate
from spec.suites.uart import Clock, drive

NAME = "hvmspec impl (Unicorn)"


def run_uart(case: dict) -> list[dict]:
    from impl.uart import Uart
    events: list[dict] = []
    clock = Clock()

    def emit(event) -> None:
        if isinstance(event, trace.SerialOut):
            events.append({"serial": event.byte})

    uart = Uart(emit, lambda level: events.append({"irq": level}), clock,
                bytes.fromhex(case["input"]))
    return drive(case, events, clock, lambda offset: uart.read(offset, 1),
                 lambda offset, value: uart.write(offset, 1, value), uart.due, uart.timer)


def run_system(case: dict) -> list[dict]:
    from impl.machine import run_guest
    validate(case)
    return answer(run_guest(image_of(case), **run_args(case)))


RUNNERS = {"uart": run_uart, "system": run_system}


def main(stdin=sys.stdin, stdout=sys.stdout) -> int:
    for line in stdin:
        message = json.loads(line)
        op = message.get("op")
        if op == "hello":
            reply = {"op": "hello", "protocol": 1, "name": NAME,
                     "suites": [s for s in message.get("suites", []) if s in RUNNERS]}
        elif op == "run":
            case = message["case"]
            try:
                reply = {"op": "result", "id": case["id"],
                         "events": RUNNERS[message["suite"]](case)}
            except Exception as exc:   # noqa: BLE001 - told to hvmspec, the next case runs
                reply = {"op": "error", "id": case.get("id"),
                         "message": f"{type(exc).__name__}: {exc}"}
        elif op == "bye":
            return 0
        else:
            reply = {"op": "error", "id": None, "message": f"unknown op {op!r}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
