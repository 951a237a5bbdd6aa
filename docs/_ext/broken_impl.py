"""A deliberately wrong implementation of the ioreq suite, for the docs.

Room: documentation tooling. It speaks the implementation protocol and
answers ioreq cases as an implementation would that takes ``INPROCESS`` for
a state gone bad (it crashes the domain instead of waiting on). The
implementers' page runs ``hvmspec conform --impl`` on it when the site is
built, to show a real divergence report and its minimal reproducer.
"""

import json
import sys

from spec import ioreq
from spec.suites import ioreq as suite

real = ioreq.vmm_wait_outcome
ioreq.vmm_wait_outcome = lambda state: ioreq.WAIT_CRASH if state == ioreq.STATE_IOREQ_INPROCESS \
    else real(state)

for line in sys.stdin:
    message = json.loads(line)
    if message["op"] == "hello":
        reply = {"op": "hello", "protocol": 1, "name": "broken (INPROCESS crashes)",
                 "suites": ["ioreq"]}
    elif message["op"] == "run":
        reply = {"op": "result", "id": message["case"]["id"],
                 "events": suite.expected(message["case"])}
    else:
        break
    print(json.dumps(reply), flush=True)
