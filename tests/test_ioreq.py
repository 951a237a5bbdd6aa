"""The ioreq structure and the state machine's step functions, concretely."""

import pytest

from spec import ioreq


def test_struct_layout_matches_public_hvm_ioreq_h():
    req = ioreq.Ioreq(addr=0x1122334455667788, data=0x99AABBCCDDEEFF00, count=7, size=4,
                      vp_eport=5, state=ioreq.STATE_IOREQ_READY, data_is_ptr=1,
                      dir=ioreq.IOREQ_READ, df=1, type=ioreq.IOREQ_TYPE_PIO)
    raw = bytes(req.encode())
    assert len(raw) == 32
    assert raw[0:8] == (0x1122334455667788).to_bytes(8, "little")
    assert raw[8:16] == (0x99AABBCCDDEEFF00).to_bytes(8, "little")
    assert raw[16:20] == (7).to_bytes(4, "little")
    assert raw[20:24] == (4).to_bytes(4, "little")
    assert raw[24:28] == (5).to_bytes(4, "little")
    assert raw[30] == 0b0111_0001        # df | dir | data_is_ptr | state=1
    assert raw[31] == ioreq.IOREQ_TYPE_PIO
    assert ioreq.Ioreq.decode(raw) == req


@pytest.mark.parametrize("field,value", [("addr", 1 << 64), ("size", -1), ("state", 16),
                                         ("dir", 2), ("type", 256)])
def test_a_field_too_wide_for_the_structure_is_an_error(field, value):
    page = ioreq.SharedIopage()
    with pytest.raises(ValueError, match=f"ioreq field {field} = .* does not fit"):
        page.write_fields(0, ioreq.Ioreq(**{field: value}))
    assert page.raw == bytearray(4096)


def test_shared_page_keeps_state_apart_from_fields():
    page = ioreq.SharedIopage()
    page.set_state(1, ioreq.STATE_IOREQ_INPROCESS)
    page.write_fields(1, ioreq.Ioreq(addr=0x3F8, size=1, count=1, state=0))
    assert page.state(1) == ioreq.STATE_IOREQ_INPROCESS
    assert page.read(1).addr == 0x3F8
    assert page.read(0) == ioreq.Ioreq()


def test_the_four_transitions():
    send = ioreq.vmm_send(ioreq.Slot(ioreq.STATE_IOREQ_NONE, False))
    assert send.enabled and send.after == (ioreq.STATE_IOREQ_READY, True)
    assert ioreq.dm_accept(ioreq.STATE_IOREQ_READY) == (True, ioreq.STATE_IOREQ_INPROCESS)
    assert ioreq.dm_respond(ioreq.STATE_IOREQ_INPROCESS) == (True, ioreq.STATE_IORESP_READY)
    done = ioreq.vmm_complete(ioreq.Slot(ioreq.STATE_IORESP_READY, True))
    assert done.enabled and done.after == (ioreq.STATE_IOREQ_NONE, False)


@pytest.mark.parametrize("state", range(16))
def test_wait_outcome_for_every_state_value(state):
    expected = {ioreq.STATE_IORESP_READY: ioreq.WAIT_COMPLETE,
                ioreq.STATE_IOREQ_READY: ioreq.WAIT_BLOCK,
                ioreq.STATE_IOREQ_INPROCESS: ioreq.WAIT_BLOCK}.get(state, ioreq.WAIT_CRASH)
    assert ioreq.vmm_wait_outcome(state) == expected


def test_disabled_steps():
    assert not ioreq.vmm_send(ioreq.Slot(ioreq.STATE_IOREQ_NONE, True)).enabled
    assert not ioreq.vmm_send(ioreq.Slot(ioreq.STATE_IOREQ_READY, False)).enabled
    assert not ioreq.dm_accept(ioreq.STATE_IOREQ_INPROCESS).enabled
    assert not ioreq.dm_respond(ioreq.STATE_IOREQ_READY).enabled
    assert not ioreq.vmm_complete(ioreq.Slot(ioreq.STATE_IOREQ_INPROCESS, True)).enabled
