"""Event channels: the 2-level pending/mask/selector rules and Xen's errors."""

import pytest

from spec import evtchn
from spec.evtchn import EventChannels, EvtchnError


@pytest.fixture
def xen():
    events = EventChannels(lambda e: None)
    for dom in (0, 1):
        events.add_domain(dom)
    return events


def _connect(xen):
    remote = xen.alloc_unbound(1, 0)
    local = xen.bind_interdomain(0, 1, remote)
    return local, remote


def test_send_sets_pending_selector_and_upcall(xen):
    local, remote = _connect(xen)
    xen.send(0, local)
    dom1 = xen.domain(1)
    assert evtchn.is_pending(dom1.bits, remote) and dom1.bits.upcall
    assert dom1.bits.sel == 1 << (remote // evtchn.BITS_PER_WORD)


def test_events_coalesce(xen):
    local, remote = _connect(xen)
    xen.send(0, local)
    xen.send(0, local)
    assert xen.take_pending(xen.domain(1), remote) is True
    assert xen.take_pending(xen.domain(1), remote) is False


def test_a_masked_port_raises_no_upcall_and_unmask_delivers_it(xen):
    local, remote = _connect(xen)
    xen.mask(1, remote)
    xen.send(0, local)
    dom1 = xen.domain(1)
    assert evtchn.is_pending(dom1.bits, remote) and evtchn.is_masked(dom1.bits, remote)
    assert not dom1.bits.upcall and dom1.bits.sel == 0
    xen.unmask(1, remote)
    assert dom1.bits.upcall and dom1.bits.sel == 1 << (remote // evtchn.BITS_PER_WORD)


def test_unmasking_a_port_with_nothing_pending_raises_nothing(xen):
    _local, remote = _connect(xen)
    xen.mask(1, remote)
    xen.unmask(1, remote)
    assert not xen.domain(1).bits.upcall


def test_close_returns_the_peer_to_unbound_and_sends_are_dropped(xen):
    local, remote = _connect(xen)
    xen.close(0, local)
    assert xen.domain(1).channels[remote].state == evtchn.ECS_UNBOUND
    xen.send(1, remote)                     # unbound: silently dropped, as in Xen
    assert xen.domain(0).bits.pending == 0
    # the port can be bound again by dom0
    assert xen.bind_interdomain(0, 1, remote) == local


@pytest.mark.parametrize("call,errno", [
    (lambda x: x.send(0, 99), "EINVAL"),                        # no such port
    (lambda x: x.close(0, 5), "EINVAL"),                        # beyond the table
    (lambda x: x.bind_interdomain(0, 1, 1), "EINVAL"),          # not unbound for us
    (lambda x: x.bind_virq(0, evtchn.NR_VIRQS), "EINVAL"),      # out of range
    (lambda x: x.alloc_unbound(0, 7), "ESRCH"),                 # no such domain
    (lambda x: x.send(7, 1), "ESRCH"),
])
def test_bad_calls_return_xens_error_codes(xen, call, errno):
    with pytest.raises(EvtchnError) as err:
        call(xen)
    assert err.value.errno == errno


def test_closing_a_free_port_and_binding_a_virq_twice(xen):
    port = xen.bind_virq(0, evtchn.VIRQ_DOM_EXC)
    with pytest.raises(EvtchnError) as err:
        xen.bind_virq(0, evtchn.VIRQ_DOM_EXC)
    assert err.value.errno == "EEXIST"
    xen.close(0, port)
    with pytest.raises(EvtchnError) as err:
        xen.close(0, port)
    assert err.value.errno == "EINVAL"


def test_sending_on_a_virq_port_is_einval(xen):
    port = xen.bind_virq(0, evtchn.VIRQ_DOM_EXC)
    with pytest.raises(EvtchnError) as err:
        xen.send(0, port)
    assert err.value.errno == "EINVAL"
