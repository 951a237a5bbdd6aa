"""The walking skeleton: hello's port I/O on both engines."""

from spec import dm_config, loader, trace
from spec.ioreq import STATE_NAMES
from tests.conftest import both, run

HELLO = "Hello from an unmodified guest\n...and this line left in a single rep outsb\n"


def test_serial_output(engine):
    result = run(engine, loader.load("hello"))
    assert result.serial == HELLO
    assert result.exit["reason"] == "poweroff"
    assert result.exit["domain"] == "destroyed"


def test_traces_equal_across_engines():
    result = both(loader.load("hello"))
    assert result.instructions > 0


def test_every_ioreq_goes_round_the_state_machine():
    events = loader.load("hello")
    result = run("reference", events)
    moves = [(e.old, e.new, e.by) for e in result.trace if isinstance(e, trace.IoreqTransition)]
    cycle = [("NONE", "READY", "vmm"), ("READY", "INPROCESS", "qemu-dm"),
             ("INPROCESS", "IORESP_READY", "qemu-dm"), ("IORESP_READY", "NONE", "vmm")]
    # every request completes the full cycle, except the power-off write, whose
    # domain is shut down before the vcpu can take the response
    assert len(moves) % 4 == 3
    for i in range(0, len(moves) - 3, 4):
        assert moves[i:i + 4] == cycle
    assert moves[-3:] == cycle[:3]
    assert set(STATE_NAMES.values()) == {m[1] for m in moves}


def test_rep_outsb_is_one_data_is_ptr_ioreq():
    result = run("reference", loader.load("hello"))
    sends = [e for e in result.trace if isinstance(e, trace.IoreqTransition)
             and e.new == "READY"]
    strings = [e for e in sends if e.data_is_ptr]
    assert len(strings) == 1
    line2 = "...and this line left in a single rep outsb\n"
    assert strings[0].count == len(line2) and strings[0].size == 1
    assert strings[0].addr == 0x3F8 and strings[0].dir == "write"
    exits = [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("string")]
    assert len(exits) == 1 and exits[0].info["rep"] is True


def test_exits_and_event_channels_pair_up():
    result = run("reference", loader.load("hello"))
    sends = [e for e in result.trace if isinstance(e, trace.EvtchnSend)]
    to_dm = [e for e in sends if e.dom == 1]
    to_vmm = [e for e in sends if e.dom == 0]
    io_exits = result.exits["io"]
    assert len(to_dm) == len(to_vmm) == io_exits
    assert all(e.remote_dom == 0 for e in to_dm) and all(e.remote_dom == 1 for e in to_vmm)


def test_poweroff_reaches_xend_which_destroys():
    # qemu-dm -> Xen (domain shutdown, VIRQ_DOM_EXC) -> xenstored fires
    # @releaseDomain -> xend looks at the domain and acts on on_poweroff
    result = run("reference", loader.load("hello"))
    tail = [e.to_json() for e in result.trace[-11:]]
    assert tail[0] == {"kind": "shutdown", "dom": 1, "reason": "poweroff", "by": "qemu-dm"}
    assert tail[1] == {"kind": "xenstore_watch", "client": "xend", "path": "@releaseDomain",
                       "token": "xend"}
    assert (tail[2]["old"], tail[2]["new"]) == ("running", "shutdown")
    assert tail[3]["kind"] == "mapcache_stats"      # qemu-dm exits with its domain
    assert tail[4] == {"kind": "device_stats", "unclaimed_reads": 0, "unclaimed_writes": 0,
                       "mmio_unclaimed_reads": 0, "mmio_unclaimed_writes": 0}
    # xend removes the domain's nodes and has Xen destroy it
    assert [(e["op"], e["path"]) for e in tail[5:8]] == [
        ("rm", "/local/domain/1"), ("rm", dm_config.vm_path("hello")),
        ("rm", "/local/domain/0/device-model/1")]
    assert (tail[8]["old"], tail[8]["new"], tail[8]["reason"]) == (
        "shutdown", "dying", "on_poweroff = destroy")
    # the dead domain: VIRQ_DOM_EXC again, xenstored forgets it and fires
    # @releaseDomain once more; xend sees it gone
    assert tail[9] == tail[1]
    assert (tail[10]["old"], tail[10]["new"], tail[10]["reason"]) == (
        "dying", "destroyed", "released")


def test_trace_roundtrips_through_json_lines(tmp_path):
    result = run("reference", loader.load("hello"))
    path = tmp_path / "t.jsonl"
    with open(path, "w") as f:
        trace.dump(result.trace, f)
    with open(path) as f:
        assert trace.load(f) == result.trace
