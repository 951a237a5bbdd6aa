"""The proofs prove, and their mutants fail."""

from unittest import mock

import pytest

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
    system.witness_depth = 8     # (the witnesses still need their runs)
    from proofs.kinduction import check
    assert check(system).result == "proved"


# --- XenStore ---------------------------------------------------------------------------

def _xenstore_check(name):
    return next(c for c in all_checks() if c.name == name)


def test_xenstore_mutants_counterexamples_name_the_steps():
    expected = {
        # the permission change under the transaction is a set_perms or another
        # party's write, whichever model Z3 gives first (it depends on what the
        # solver ran before); both are the bug
        "xenstore.access/mutant:commit_skips_written": ("tx_start", "tx_commit"),
        "xenstore.quota/mutant:inherit_without_owner": ("create",),
        "xenstore.quota/mutant:may_set_gives_away": ("set_perms",),
        "xenstore.serialisable/mutant:commit_checks_only_written":
            ("tx_start", "tx_read", "other_", "tx_commit"),
        "xenstore.serialisable/mutant:commit_ignores_absent":
            ("tx_start", "tx_read", "other_write", "tx_commit"),
    }
    for name, steps in expected.items():
        chk = _xenstore_check(name)
        assert chk.mutates.startswith("spec.xenstore.")
        lines = chk.run().counterexample
        text = "\n".join(lines)
        assert lines[0].startswith("initially") and lines[-1].endswith("breaks the property")
        for step in steps:
            assert step in text, (name, step, text)
        if "tx_commit" in steps:
            assert "tx_commit" in lines[-2], (name, text)


def test_xenstore_commit_skipping_written_nodes_commits_a_denied_write():
    # the transaction wrote a node (or created one under P) under permissions
    # that changed before the commit (a new list, or the node removed: the
    # commit would then create it under a parent that denies that)
    lines = _xenstore_check("xenstore.access/mutant:commit_skips_written").run().counterexample
    text = "\n".join(lines)
    assert "set_perms" in text or " rm C" in text
    assert "tx_write" in text or "tx_create" in text


def test_xenstore_proof_reads_the_inherit_the_store_calls():
    # The store creates nodes with spec.xenstore.perms.inherit; breaking that
    # very function breaks the proof (and the running store alike).
    from spec.xenstore import perms
    from spec.xenstore.store import Store
    from proofs import xenstore as xs_proofs
    broken = lambda parent_acl, creator, privileged: tuple(parent_acl)   # noqa: E731
    with mock.patch.object(perms, "inherit", broken):
        assert xs_proofs.run_check(xs_proofs.quota_system).result == "counterexample"
        store = Store()
        tools = store.connect()
        tools.mkdir("/local/domain/5")
        tools.set_perms("/local/domain/5", ["n0", "w5"])
        guest = tools.introduce(5, 1, 1)
        guest.write("/local/domain/5/x", "1")
        assert store.nodes["/local/domain/5/x"].acl[0].domid == 0    # charged to dom0
    assert xs_proofs.run_check(xs_proofs.quota_system).result == "proved"


def test_xenstore_proof_reads_the_commit_rule_the_store_calls():
    # A commit rule that checks only written nodes, patched into the module
    # the store calls: the running store commits a stale read, and the proof
    # finds it.
    from spec import bv
    from spec.xenstore import transaction
    from spec.xenstore.store import Store
    from proofs import xenstore as xs_proofs

    def only_written(checks):
        return bv.and_(*(bv.implies(written, bv.eq(seen, now))
                         for _read, written, seen, now in checks))
    with mock.patch.object(transaction, "conflict_free", only_written):
        assert xs_proofs.run_check(xs_proofs.serialisable_system).result == "counterexample"
        tools = Store().connect()
        tools.write("/a", "1")
        tx = tools.transaction_start()
        seen = tools.read("/a", tx)
        tools.write("/a", "2")                       # another writer, outside
        tools.write("/b", seen, tx)
        tools.transaction_end(tx, True)              # committed: /b copies a stale /a
        assert tools.read("/b") == "1" != tools.read("/a")


def test_xenstore_commit_rule_checks_what_was_read_not_what_was_written():
    from spec.xenstore import transaction
    assert transaction.conflict_free([(True, True, 3, 3), (False, False, 4, 9)])
    assert not transaction.conflict_free([(True, False, 3, 4)])
    assert not transaction.conflict_free([(True, True, 3, 4)])
    assert transaction.conflict_free([])


def test_xenstore_commit_checks_the_node_quota_on_the_counts_now():
    # What xenstore.quota found: a transaction checked only its snapshot's
    # counts, so a domain creating nodes elsewhere while it was open could
    # commit past its quota. Xen checks again at the commit (acc_fix_domains).
    from spec.xenstore import quota
    from spec.xenstore.errors import XenstoreError
    from spec.xenstore.store import Store
    store = Store(quotas=quota.Quotas(nodes=4))
    tools = store.connect()
    tools.mkdir("/local/domain/5")
    tools.set_perms("/local/domain/5", ["n5"])
    guest = tools.introduce(5, 1, 1)
    guest.mkdir("/local/domain/5/x")
    guest.mkdir("/local/domain/5/y")                 # dom5 owns 3 of 4
    tx = guest.transaction_start()
    guest.write("/local/domain/5/a", "1", tx)        # 4 in the transaction's count
    guest.write("/local/domain/5/x/b", "1")          # 4 in the store's
    with pytest.raises(XenstoreError) as refused:
        guest.transaction_end(tx, True)
    assert refused.value.errno == "ENOSPC"
    assert store.owned[5] == 4 and "/local/domain/5/a" not in store.nodes
    # within the quota, the same commit goes through; the tools are not limited
    guest.rm("/local/domain/5/x/b")
    tx = guest.transaction_start()
    guest.write("/local/domain/5/a", "1", tx)
    guest.transaction_end(tx, True)
    assert store.owned[5] == 4
    tx = tools.transaction_start()
    tools.write("/local/domain/5/c", "1", tx)        # charged to dom5, the directory's owner
    tools.transaction_end(tx, True)
    assert store.owned[5] == 5


def test_xenstore_induction_alone_proves_for_every_length():
    from proofs import xenstore as xs_proofs
    from proofs.kinduction import check
    for factory in (xs_proofs.access_system, xs_proofs.quota_system,
                    xs_proofs.serialisable_system):
        system = factory()
        system.witness_depth = system.witness_depth or system.depth
        system.depth = 0
        assert check(system).result == "proved", system.name


# --- the vacuity guard ------------------------------------------------------------------

def _guarded(**changes):
    import dataclasses
    from proofs import evtchn as evtchn_proofs
    return dataclasses.replace(evtchn_proofs.ports_system(), **changes)


def test_a_proof_whose_initial_states_are_empty_is_vacuous():
    """An init no state satisfies makes every property hold: the guard says so."""
    import z3
    from proofs.kinduction import check
    outcome = check(_guarded(init=lambda s: z3.BoolVal(False)))
    assert outcome.result == "vacuous" and "no run" in outcome.detail


def test_a_proof_whose_case_never_arises_is_vacuous():
    """A step relation that forbids the masked send (the property's
    antecedent) leaves the masking property proved about nothing."""
    import z3
    from proofs.kinduction import check
    system = _guarded()
    real = system.step
    system.step = lambda s, i, t: z3.And(real(s, i, t), i["act"] != 0)
    outcome = check(system)
    assert outcome.result == "vacuous" and "a send to a masked port" in outcome.detail


def test_a_proof_with_no_witness_is_vacuous_and_fails_check():
    from proofs.kinduction import check
    assert check(_guarded(witnesses=())).result == "vacuous"


def test_every_induction_check_reports_its_witness_runs():
    """Each proof names the cases its properties are about, and hvmspec
    check shows a run from the initial states reaching each."""
    from proofs import evtchn as e, interrupts as irqs, ioreq as io, mapcache as mc, \
        xenstore as xs
    systems = [io.protocol_system, io.hostile_system, e.ports_system, e.table_system,
               mc.budget_system,
               mc.locked_system, mc.stale_system, mc.address_space_system, mc.lru_system,
               mc.invalidate_system, mc.engine_system, xs.access_system,
               xs.quota_system, xs.serialisable_system, irqs.only_evtchn, irqs.never_lost,
               irqs.priority, irqs.level_release]
    for factory in systems:
        assert factory().witnesses, factory.__name__
    from proofs.kinduction import check
    outcome = check(mc.stale_system())
    assert outcome.result == "proved"
    [(case, run)] = outcome.witnesses
    assert "stale" in case and run[0].startswith("initially")
    assert run[-1] == "the last step is the case" and "stale" in run[-2]


# --- interrupts ----------------------------------------------------------------------------

def _interrupt_check(name):
    from proofs import interrupt_checks
    return next(c for c in interrupt_checks() if c.name == name)


def test_interrupt_checks_cover_the_pair_and_the_channel():
    """The interrupt proofs and their mutants, among them a polling VMM, a
    silent qemu-dm, an equal-priority preemption, a lowered level line
    ignored, a missing cascade and a spurious IRQ put in service (each
    gives its counterexample in test_every_check_gives_what_it_expects)."""
    from proofs import interrupt_checks
    names = {c.name for c in interrupt_checks()}
    for name in ("only_evtchn", "never_lost", "priority", "level_release",
                 "only_evtchn/mutant:polling_vmm", "only_evtchn/mutant:silent_dm",
                 "never_lost/mutant:silent_dm", "never_lost/mutant:no_cascade",
                 "never_lost/mutant:ignores_nested",
                 "priority/mutant:equal_priority_preempts", "priority/mutant:spurious_sets_isr",
                 "level_release/mutant:apply_ignores_cleared"):
        assert f"interrupts.{name}" in names, name
    assert {"pic.ocw", "pic.ocw/mutant:specific_eoi_ignores_line",
            "pic.ocw/mutant:set_priority_makes_highest"} <= names
    assert {"pic.icw", "pic.icw/mutant:icw1_keeps_imr", "pic.icw/mutant:icw2_keeps_low_bits",
            "pic.icw/mutant:icw3_in_single_mode", "pic.icw/mutant:icw4_without_ic4",
            "pic.read", "pic.read/mutant:poll_without_ack", "pic.read/mutant:poll_without_flag",
            "pic.read/mutant:read_ignores_select", "pic.read/mutant:ris_without_rr",
            "pic.ports", "pic.ports/mutant:elcr_unmasked", "pic.ports/mutant:elcr_master_mask",
            "pic.ports/mutant:data_port_bit_1", "pic.ports/mutant:slave_is_elcr_only",
            "pic.lines", "pic.lines/mutant:negative_edge_keeps_irq2",
            "pic.lines/mutant:negative_edge_next_line", "pic.reset",
            "pic.reset/mutant:reset_masks_all", "pic.reset/mutant:reset_expects_icw2"} <= names


def test_the_pic_programming_counterexamples_show_the_bytes_and_registers():
    single = _interrupt_check("pic.icw/mutant:icw3_in_single_mode").run()
    assert single.result == "counterexample"
    assert "to the command port" in single.counterexample[1]
    assert "after byte 5" in single.counterexample[-2]
    elcr = _interrupt_check("pic.ports/mutant:elcr_unmasked").run().counterexample
    assert "port 0x4d0" in elcr[2] or "port 0x4d1" in elcr[2]
    poll = _interrupt_check("pic.read/mutant:poll_without_ack").run().counterexample
    assert "OCW3 0x" in poll[1] and "poll=False" in poll[2]


def test_the_interrupt_proof_starts_from_the_power_on_elcr():
    """The shared lines' initial ELCR copy (irq.QUIET) is part of the
    proof: a wrong one breaks the base case (the gap survivors.toml had)."""
    from proofs import interrupts
    from spec import irq
    with mock.patch.object(irq, "QUIET", irq.GlobalIodata(1 << 9, 0, 0, 0)):
        outcome = interrupts.run_check(interrupts.level_release)
    assert outcome.result == "unknown" and "initial states" in outcome.detail


def test_the_guests_pic_port_accesses_run_the_proved_functions():
    """The VMM's port handler writes and reads the pair through
    spec.pic.io_write/io_read: the proof's ELCR mutant, patched into the
    module, changes what the running VMM copies into the shared lines, and
    a poll read acknowledges through spec.pic.read."""
    from proofs import interrupts
    from spec import pic
    vmm = _vmm([])
    vmm._pic_access(0x4D0, 2, "out", 0xFFFF)
    assert vmm.lines.bits.elcr == 0xDEF8
    with mock.patch.object(pic, "elcr_write", interrupts._ELCR_UNMASKED):
        vmm._pic_access(0x4D0, 2, "out", 0xFFFF)
    assert vmm.lines.bits.elcr == 0xFFFF
    vmm.pic.apply_lines(1 << 3, 0)
    with mock.patch.object(pic, "read", wraps=pic.read) as read:
        vmm._pic_access(0x20, 1, "out", 0x0C)           # OCW3: poll
        assert vmm._pic_access(0x20, 1, "in", 0) == 0x83
        vmm._pic_access(0x20, 1, "out", 0x0B)           # OCW3: read the ISR
        assert vmm._pic_access(0x20, 1, "in", 0) == 1 << 3
        vmm._pic_access(0x20, 1, "out", 0x0C)
        assert vmm._pic_access(0x21, 1, "in", 0) == 0   # nothing left: the poll answers 0
    assert read.call_count == 3


def test_interrupt_counterexamples_name_the_steps():
    polling = _interrupt_check("interrupts.only_evtchn/mutant:polling_vmm").run().counterexample
    # qemu-dm raised a line inside its pass (no send yet) and the VMM took it
    assert "qemu-dm: IRQ" in polling[1] and "end of pass" not in polling[1]
    assert "port=-" in polling[1] and "INJECTED" in polling[-2]
    silent = _interrupt_check("interrupts.never_lost/mutant:silent_dm").run().counterexample
    assert "end of pass" in silent[1] and "port=- " in silent[1]
    assert "VM entry" in silent[-2] and "INJECTED" not in silent[-2]
    # the injected line (or, for a slave line, the master's IRQ2) was in service
    equal = _interrupt_check("interrupts.priority/mutant:equal_priority_preempts").run()
    before, last = equal.counterexample[-3:-1]
    line = int(last.split("INJECTED IRQ")[1].split()[0])
    in_service = before.split("isr={")[1].split("}")[0].split(",")
    assert str(line) in in_service or (line >= 8 and "2" in in_service), (before, last)
    spurious = _interrupt_check("interrupts.priority/mutant:spurious_sets_isr").run()
    assert "INJECTED IRQ15 (spurious)" in spurious.counterexample[-2]
    cascade = _interrupt_check("interrupts.never_lost/mutant:no_cascade").run()
    assert "VM entry" in cascade.counterexample[-2]


def _vmm(notifications: list[bool]):
    from spec import ioreq, irq
    from spec.vmm import Vmm
    from spec.vmx import HardwareVcpu
    vmm = Vmm(1, [HardwareVcpu(1 << 20)], ioreq.SharedIopage(), [], notify=lambda port: None,
              emit=lambda event: None, crash=lambda msg, rip: None, lines=irq.SharedLines(),
              take_irq_event=lambda: notifications.pop(0) if notifications else False)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1),
                        (0xA0, 0x11), (0xA1, 0x28), (0xA1, 2), (0xA1, 1), (0x21, 0), (0xA1, 0)):
        vmm.pic.io_write(port, value)
    return vmm


def test_the_engine_runs_the_assist_the_proof_checks():
    """Vmm takes qemu-dm's lines only with a notification, through
    spec.irq.assist: the proof's polling_vmm mutant, patched into the
    module, makes the running VMM take them without one."""
    from proofs import interrupts
    from spec import irq
    vmm = _vmm([False])
    assert vmm.lines.set_irq(12, 1)
    assert vmm.can_wake(0) is None and vmm.pic.pair.slave.irr == 0      # IF = 0
    assert vmm.lines.bits.raised == 1 << 12
    vmm = _vmm([False])
    vmm.lines.set_irq(12, 1)
    with mock.patch.object(irq, "assist", interrupts._polling_vmm):
        vmm.can_wake(0)
    assert vmm.pic.pair.slave.irr == 1 << 4 and vmm.pic.pair.master.irr == 1 << 2
    assert vmm.lines.bits.raised == 0


def test_the_guests_pic_writes_go_through_the_proved_decoder():
    from spec import pic
    p = pic.VirtualPic(lambda event: None)
    with mock.patch.object(pic, "ocw", wraps=pic.ocw) as ocw:
        p.io_write(0x21, 0xFB)                  # OCW1
        p.io_write(0xA0, 0x20)                  # OCW2: EOI
        p.io_write(0x20, 0x68)                  # OCW3: special mask mode
    assert [c.args[1:] for c in ocw.call_args_list] == [(True, 0xFB), (False, 0x20),
                                                       (False, 0x68)]
    assert p.pair.master.imr == 0xFB and p.pair.master.special_mask


# --- the glue the engines run is the glue that is proved (issue 19) ---------------------

def _check(name):
    return next(c for c in all_checks() if c.name == name)


def test_every_event_channel_operation_of_the_engine_is_the_proved_function():
    """The reference's sends, masks, unmasks and takes all go through
    spec.evtchn.port_rule, the function evtchn.2l runs on Z3 words."""
    from spec import evtchn
    calls = []
    real = evtchn.port_rule

    def spy(state, port, rule, ports=evtchn.MAX_PORTS):
        calls.append((port, rule.__name__))
        return real(state, port, rule, ports)
    xen = evtchn.EventChannels(lambda e: None)
    for dom in (0, 1):
        xen.add_domain(dom)
    remote = xen.alloc_unbound(1, 0)
    local = xen.bind_interdomain(0, 1, remote)
    with mock.patch.object(evtchn, "port_rule", spy):
        xen.mask(1, remote)
        xen.send(0, local)
        xen.unmask(1, remote)
        xen.take_pending(xen.domain(1), remote)
    assert calls == [(remote, "mask_2l"), (remote, "set_pending_2l"), (remote, "unmask_2l"),
                     (remote, "take_2l")]


def test_event_channel_glue_mutants_fail_across_words():
    """A word's upcall written back as the vcpu's loses the upcall another
    word still needs: a take in one word drops the upcall, the selector word
    still non-zero."""
    lines = _check("evtchn.2l/mutant:upcall_of_the_word").run().counterexample
    assert lines[0].endswith("upcall=1") and "take port" in lines[1], lines
    assert lines[1].endswith("upcall=0") and " sel=0x0 " not in lines[1], lines
    for name in ("word_of_32_ports", "selector_of_the_bit", "upcall_from_pending"):
        assert _check(f"evtchn.2l/mutant:{name}").run().result == "counterexample", name


def test_every_table_operation_of_the_engine_is_a_proved_rule():
    """EventChannels runs the table rules evtchn.table checks: each
    operation calls its rule once, on the world of every domain."""
    from spec import evtchn
    rules = ("alloc_unbound_rule", "bind_interdomain_rule", "bind_virq_rule", "close_rule",
             "remove_rule", "send_target", "virq_port")
    calls, depth = [], [0]

    def spy(name):
        real = getattr(evtchn, name)

        def rule(world, *args):                 # the outermost rule of each operation
            if not depth[0]:
                calls.append((name, tuple(d.dom for d in world)))
            depth[0] += 1
            try:
                return real(world, *args)
            finally:
                depth[0] -= 1
        return rule
    xen = evtchn.EventChannels(lambda e: None)
    for dom in (0, 1):
        xen.add_domain(dom)
    with mock.patch.multiple(evtchn, **{name: spy(name) for name in rules}):
        remote = xen.alloc_unbound(1, 0)
        local = xen.bind_interdomain(0, 1, remote)
        xen.bind_virq(0, evtchn.VIRQ_DOM_EXC)
        xen.send(0, local)
        xen.send_virq(0, evtchn.VIRQ_DOM_EXC)
        xen.close(0, local)
        xen.remove_domain(1)
    assert calls == [(name, (0, 1)) for name in ("alloc_unbound_rule", "bind_interdomain_rule",
                                                 "bind_virq_rule", "send_target", "virq_port",
                                                 "close_rule", "remove_rule")]


def test_a_table_mutant_breaks_the_running_engine_too():
    """The proof's mutants, patched into spec.evtchn, break the engine the
    same way: the highest free port is handed out, a closed port's peer
    stays bound."""
    from proofs import evtchn as proofs_evtchn
    from spec import evtchn
    mutants = {m[0]: m for m in proofs_evtchn.TABLE_MUTANTS}

    def engine():
        xen = evtchn.EventChannels(lambda e: None)
        for dom in (0, 1):
            xen.add_domain(dom)
        ports = [xen.alloc_unbound(1, 0) for _ in range(3)]
        xen.close(1, ports[0])
        return xen, ports
    xen, ports = engine()
    assert xen.alloc_unbound(1, 0) == ports[0] == 1
    _n, name, highest = mutants["highest_free_port"]
    with mock.patch.object(evtchn, name, highest):
        xen, ports = engine()
        assert xen.alloc_unbound(1, 0) == 4
    _n, name, keeps = mutants["close_keeps_peer"]
    with mock.patch.object(evtchn, name, keeps):
        xen, ports = engine()
        local = xen.bind_interdomain(0, 1, ports[1])
        xen.close(0, local)
        assert xen.domain(1).channels[ports[1]].state == evtchn.ECS_INTERDOMAIN


def test_table_counterexamples_name_the_operation():
    """A table mutant's counterexample is one step, from a state the
    strengthening allows, naming the operation and both tables."""
    lines = _check("evtchn.table/mutant:unbound_for_itself").run().counterexample
    assert lines[0].startswith("initially") and "step 1: close(dom" in lines[1], lines
    assert lines[-1] == "the last step breaks the property"
    reserved = _check("evtchn.table/mutant:reserved_is_free").run().counterexample
    assert "step 1: " in reserved[1] and "[R " in reserved[0], reserved
    bits = _check("evtchn.port_bits/mutant:clear_keeps_mask").run().counterexample
    assert bits[0].startswith("port 0x") and "clear_port" in bits[2], bits


def test_the_table_proof_is_vacuous_without_its_cases():
    """A step relation that never removes a domain leaves remove_domain's
    obligation proved about nothing: the guard says which witness is missing."""
    import dataclasses
    import z3
    from proofs import evtchn as proofs_evtchn
    from proofs.kinduction import check
    system = proofs_evtchn.table_system()
    real = system.step
    system = dataclasses.replace(system, step=lambda s, i, t: z3.And(real(s, i, t),
                                                                      i["act"] != 5))
    outcome = check(system)
    assert outcome.result == "vacuous" and "removing a domain" in outcome.detail


def test_the_engine_check_names_the_call_where_the_engine_leaves_the_rules():
    """evtchn.engine: the engine is the rules; an engine whose send_virq
    never raises the VIRQ gives a counterexample naming that call."""
    from proofs import evtchn as proofs_evtchn
    from spec import evtchn
    assert _check("evtchn.engine").run().result == "proved"
    with mock.patch.object(evtchn.EventChannels, "send_virq", lambda self, dom, virq: None):
        outcome = proofs_evtchn.engine_rule()
    assert outcome.result == "counterexample"
    assert outcome.counterexample[0].startswith("send_virq(0, 3)"), outcome.counterexample


def test_a_source_mutant_names_a_line_the_code_has():
    from proofs.kinduction import source_mutant
    from spec import mapcache
    missing = source_mutant(mapcache, "lru_current", "return True", "return False", "")
    with pytest.raises(ValueError, match="has 0 lines"):
        missing(mapcache.EMPTY, 0)
    broken = source_mutant(mapcache, "lru_current",
                           "return bv.and_(evictable(e), bv.eq(e.stamp, stamp))",
                           "return evictable(e)", "doc")
    entry = mapcache.Entry(True, 1, 0, 0, False, 7)
    assert mapcache.lru_current(entry, 3) is False and broken(entry, 3) is True


def test_the_evicted_window_is_proved_least_recently_used():
    assert _check("mapcache.lru").run().result == "proved"
    lines = _check("mapcache.lru/mutant:lru_evicts_mru").run().counterexample
    assert any(line.lstrip().startswith("step 1: map") for line in lines), lines


def test_the_run_time_invalidation_reaches_exactly_its_range():
    assert _check("mapcache.invalidate").run().result == "proved"
    lines = _check("mapcache.invalidate/mutant:invalidate_off_by_one").run().counterexample
    assert "invalidate" in "\n".join(lines)


def test_the_engines_slices_and_heaps_are_proved_against_the_whole_table():
    outcome = _check("mapcache.engine").run()
    assert outcome.result == "proved", outcome
    assert [name for name, _run in outcome.witnesses] == [
        "a full-budget miss that evicts", "a miss that reuses a freed entry"]
    for name in ("heap_not_refreshed", "lru_reader_ignores_stamp", "slice_slot_off_by_one"):
        outcome = _check(f"mapcache.engine/mutant:{name}").run()
        assert outcome.result == "counterexample", (name, outcome)


# --- the instruction emulator through the MMIO layer (proofs.x86_rmw) ----------------------

def test_the_rmw_proof_runs_the_layer_the_vmm_runs():
    """The VMM's MMIO emulation and the proof call the same attempt and
    replay key; breaking the replay key breaks the proof."""
    from proofs import x86_rmw
    from spec import mmio, vmm
    assert vmm.attempt is mmio.attempt and vmm.access_key is mmio.access_key
    import itertools
    counter = itertools.count()
    with mock.patch.object(mmio, "access_key", lambda req: (next(counter),)):
        outcome = x86_rmw.prove("add", 32)          # no completed access ever replays
    assert outcome.result == "counterexample"
    assert outcome.counterexample[1].startswith("the emulation failed: replayed device access")


def test_a_straddling_rmw_sends_two_reads_then_two_writes_clipped_at_the_page():
    import z3

    from proofs import x86_rmw
    code = x86_rmw.assemble("adc dword ptr [ebx], ecx", 32)
    regs = {r: z3.BitVec(r, 64) for r in ("rax", "rcx", "rdx", "rsp", "rbp", "rsi", "rdi")}
    regs.update({f"r{n}": 0 for n in range(8, 16)}, rbx=0xFEBF0FFE)
    run = x86_rmw.through_vmm(code, 32, regs, z3.BitVec("rflags", 64),
                              device=lambda req: z3.BitVec(f"d{req.addr:x}", 8 * req.size))
    assert [(ioreq.DIR_NAMES[r.dir], r.addr, r.size) for r in run.sent] == [
        ("read", 0xFEBF0FFE, 2), ("read", 0xFEBF1000, 2),
        ("write", 0xFEBF0FFE, 2), ("write", 0xFEBF1000, 2)]
    assert run.attempts == 5 and run.cpu is not None


def test_the_rmw_mutants_give_concrete_operands():
    by_name = {c.name: c for c in all_checks()}
    cmp = by_name["x86.rmw.cmp/16/mutant:cmp_reversed"].run()
    assert cmp.result == "counterexample"
    assert cmp.counterexample[0].startswith("cmp byte ptr [bx], cl (16-bit) at 0xf00: "
                                            "the operand = 0x")
    assert "cl = 0x" in cmp.counterexample[0] and "CF differs from the SDM" in cmp.counterexample
    split = by_name["x86.rmw.or/32/mutant:straddle_not_split"].run()
    assert split.counterexample[1] == ("the ioreqs were [read 0xfebf0ffe+4, write 0xfebf0ffe+4] "
                                       "in 3 attempts")


def test_every_rmw_family_has_a_semantic_mutant_and_each_targets_its_own_check():
    from proofs import x86_rmw
    from proofs.x86_rmw_mutants import MUTANTS
    names = {c.name for c in all_checks()}
    for name, (op, mode), replaced, doc in MUTANTS:
        assert f"x86.rmw.{op}/{mode}" in names and doc, name
        assert name != "result_bit_flipped"
    families = {x86_rmw.FAMILIES[op].__name__ for _n, (op, _m), _r, _d in MUTANTS}
    assert families == {f.__name__ for f in x86_rmw.FAMILIES.values()}


def test_the_sdm_side_of_the_rmw_proof_gives_the_sdms_worked_values():
    """The proof's own SDM definitions, on values worked out by hand from the
    SDM's Operation sections."""
    import z3

    from proofs.x86_rmw import alu, double_shift, shift

    def ev(x):
        v = z3.simplify(x)
        return v.as_long() if z3.is_bv_value(v) else z3.is_true(v)

    t, f = z3.BoolVal(True), z3.BoolVal(False)
    r, fl = alu("sbb", z3.BitVecVal(0, 8), z3.BitVecVal(1, 8), t, 8)      # 0 - 1 - 1
    assert (ev(r), ev(fl["CF"]), ev(fl["OF"]), ev(fl["AF"])) == (0xFE, True, False, True)
    r, fl = alu("add", z3.BitVecVal(0x7F, 8), z3.BitVecVal(1, 8), t, 8)   # ADD ignores CF
    assert (ev(r), ev(fl["OF"]), ev(fl["AF"]), ev(fl["CF"])) == (0x80, True, True, False)
    r, fl, undefined = shift("rcl", z3.BitVecVal(0x80, 8), 1, f, 8)
    assert (ev(r), ev(fl["CF"]), ev(fl["OF"]), undefined) == (0x00, True, True, set())
    r, fl, _ = shift("rcr", z3.BitVecVal(0x01, 8), 1, t, 8)
    assert (ev(r), ev(fl["CF"]), ev(fl["OF"])) == (0x80, True, True)
    r, fl, undefined = shift("sar", z3.BitVecVal(0x80, 8), 3, f, 8)
    assert (ev(r), ev(fl["CF"]), undefined) == (0xF0, False, {"AF", "OF"})
    r, fl, _ = shift("rcl", z3.BitVecVal(0x01, 8), 9, t, 8)           # 9 mod 9: no rotation
    assert (ev(r), ev(fl["CF"])) == (0x01, True)
    r, fl, undefined = shift("shl", z3.BitVecVal(0x01, 16), 16, f, 16)
    assert ev(r) == 0 and "CF" in undefined
    r, fl, _ = double_shift("shld", z3.BitVecVal(0x1234, 16), z3.BitVecVal(0xABCD, 16), 4, 16)
    assert (ev(r), ev(fl["CF"])) == (0x234A, True)
    r, fl, _ = double_shift("shrd", z3.BitVecVal(0x1234, 16), z3.BitVecVal(0xABCD, 16), 4, 16)
    assert (ev(r), ev(fl["CF"])) == (0xD123, False)
    assert double_shift("shld", z3.BitVecVal(1, 16), z3.BitVecVal(1, 16), 17, 16)[0] is None


def test_the_proofs_page_names_every_rmw_mnemonic_and_mutant():
    from proofs import x86_rmw
    from proofs.x86_rmw_mutants import MUTANTS
    from tests.conftest import ROOT
    text = (ROOT / "docs" / "proofs.rst").read_text()
    section = text[text.index("The instruction emulator\n"):text.index("The results\n")]
    assert " ".join(x86_rmw.CHECKED) in " ".join(section.split())
    assert f"{len(x86_rmw.CHECKS)} checks)" in " ".join(section.split())
    for name, *_ in MUTANTS:
        assert f"``{name}``" in section, name


# --- the run-time cache's arithmetic (mapcache.span, mapcache.geometry) ---------------------

def test_the_bucket_span_of_an_access_is_proved_and_an_off_by_one_named():
    assert _check("mapcache.span").run().result == "proved"
    outcome = _check("mapcache.span/mutant:span_one_too_many").run()
    assert outcome.result == "counterexample"
    assert outcome.counterexample[0].startswith("not so: the span runs from the first byte")
    assert "gpa=" in outcome.counterexample[1] and "length=" in outcome.counterexample[1]
    wrapped = _check("mapcache.span/mutant:span_ignores_wrap").run()
    assert wrapped.result == "counterexample" and "no more" in wrapped.counterexample[0]


def test_a_lock_that_is_never_given_back_is_a_counterexample():
    """The liveness the safety proofs leave out (mapcache.locking): an
    unlock that does not take its lock keeps the window locked for ever."""
    assert _check("mapcache.locking").run().result == "proved"
    for mutant, claim in (("unlock_keeps_count", "unlock(lock(t)) is t"),
                          ("unlock_below_zero", ""), ("unlock_unmaps_fresh", "")):
        outcome = _check(f"mapcache.locking/mutant:{mutant}").run()
        assert outcome.result == "counterexample", mutant
        assert outcome.counterexample[0].startswith(f"not so: {claim}")
        assert "locks0=" in outcome.counterexample[1]


def test_the_budget_rules_and_the_refusals_numbers_are_proved():
    assert _check("mapcache.geometry").run().result == "proved"
    expected = {
        "fits_strict": "a budget fits exactly when it is at most the largest",
        "largest_is_whole_space": "the largest budget is the address space less the footprint",
        "shift_by_wrong_bitness": "64 KiB buckets on 32-bit, 1 MiB on 64-bit",
        "windows_round_up": "the windows are the whole buckets the budget holds",
        "legacy_strict": "map-everything fits exactly the guests the budget holds",
        "mib_by_1000": "MiB are whole and rounded down",
        "ram_below_4g": "a 6144 MiB guest's RAM is all in ram_buckets (32-bit)"}
    for name, claim in expected.items():
        outcome = _check(f"mapcache.geometry/mutant:{name}").run()
        assert outcome.result == "counterexample", (name, outcome)
        assert outcome.counterexample[0] == f"not so: {claim}", (name, outcome)


def test_the_cache_runs_the_index_reads_mapcache_engine_proves():
    """Breaking free_or_new, least or mapped_after (which the run-time
    cache's _first_free, _first_usable and _store call) breaks
    mapcache.engine: the proof reads the cache's own decisions."""
    from spec import mapcache as spec_mc
    from proofs import mapcache as mc_proofs

    def new_even_when_full(heap, made, windows):
        return spec_mc.Found(True, spec_mc.bv.ite(heap.found, heap.slot, made))

    def counts_nothing(mapped, old, new):
        return mapped
    for name, broken in (("free_or_new", new_even_when_full),
                         ("mapped_after", counts_nothing)):
        with mock.patch.object(spec_mc, name, broken):
            outcome = mc_proofs.run_check(mc_proofs.engine_system)
        assert outcome.result != "proved", name
    calls = []
    real = spec_mc.least
    with mock.patch.object(spec_mc, "least", lambda c: calls.append(1) or real(c)):
        cache = spec_mc.Mapcache(1 << 30, budget=2 << 16)
        cache.map(3)
        cache.map(3)
    assert len(calls) == 2


def test_the_directed_runs_reach_what_short_runs_cannot():
    """Two windows freed together and reused in turn: a free-heap reader
    that checks the heap's last element instead of its top hands out a slot
    that is mapped again, which no run of four operations shows (make
    mutate found it); mapcache.runtime's directed run names it."""
    import heapq

    from spec import mapcache as spec_mc

    def first_free_checks_last(self):
        while self._free and not spec_mc.free_current(self.entries[self._free[-1]]):
            heapq.heappop(self._free)
        heap = spec_mc.Found(bool(self._free), self._free[0] if self._free else 0)
        free = spec_mc.free_or_new(heap, len(self.entries), self.windows)
        if free.found and not heap.found:
            self.entries.append(spec_mc.EMPTY)
        return free

    with mock.patch.object(spec_mc.Mapcache, "_first_free", first_free_checks_last):
        outcome = _check("mapcache.runtime").run()
    assert outcome.result == "counterexample"
    assert outcome.counterexample[0] == ("32-bit qemu-dm, 3 windows: use 0, use 1, "
                                         "invalidate_all, use 2, use 3")


def test_the_run_time_class_is_run_against_the_whole_table():
    """mapcache.runtime runs the Mapcache class itself (its heaps are Python)
    on every short run; breaking the class's LRU reader or its store is a
    run that names the operations and the first difference."""
    outcome = _check("mapcache.runtime").run()
    from proofs.mapcache import DIRECTED
    assert outcome.result == "proved" and f"{3305 + len(DIRECTED)} runs" in outcome.detail
    broken = _check("mapcache.runtime/mutant:store_never_frees").run()
    assert broken.result == "counterexample"
    run, wrong = broken.counterexample
    assert run.startswith("32-bit qemu-dm, ") and "invalidate" in run
    assert "whole table" in wrong
