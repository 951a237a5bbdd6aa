"""The proofs prove, and their mutants fail."""

from unittest import mock

from proofs import all_checks, ioreq as ioreq_proofs
from spec import ioreq


def test_every_check_gives_what_it_expects():
    for chk in all_checks():
        outcome = chk.run()
        assert outcome.result == chk.expected, (chk.name, outcome)


def test_resume_on_inprocess_counterexample_is_readable():
    chk = next(c for c in all_checks() if c.name.endswith("resume_on_inprocess"))
    lines = chk.run().counterexample
    text = "\n".join(lines)
    assert lines[0].startswith("initially") and "NONE" in lines[0]
    assert "vmm_send" in text and "dm_accept" in text and "INPROCESS" in text
    assert "vmm_wake" in lines[-2] and "running" in lines[-2]


def test_the_proof_reads_the_spec_functions_that_run():
    # Breaking the function that the running VMM calls breaks the proof:
    # the check is over spec.ioreq itself, not over a copy.
    broken = lambda state: ioreq.WAIT_COMPLETE if not hasattr(state, "sort") else \
        __import__("z3").BitVecVal(ioreq.WAIT_COMPLETE, ioreq.WAIT_BITS)
    with mock.patch.object(ioreq, "vmm_wait_outcome", broken):
        outcome = ioreq_proofs.run_check(ioreq_proofs.protocol_system)
    assert outcome.result == "counterexample"


def test_induction_alone_proves_for_every_length():
    system = ioreq_proofs.protocol_system()
    system.depth = 0      # no bounded search: the verdict comes from induction
    from proofs.kinduction import check
    assert check(system).result == "proved"
