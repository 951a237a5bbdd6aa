"""Event channels on both engines: the same calls give the same bits and the
same Xen error codes (spec.evtchn and impl.xen are independent code)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from impl import xen as impl_xen
from spec import evtchn as spec_evtchn

OPS = ("alloc_unbound", "bind_interdomain", "bind_virq", "send", "close", "mask", "unmask",
       "take")


def _spec_state(x, dom):
    d = x.domain(dom)
    ports = range(len(d.channels))
    return ([p for p in ports if spec_evtchn.is_pending(d.bits, p)],
            [p for p in ports if spec_evtchn.is_masked(d.bits, p)], d.bits.sel, d.bits.upcall,
            [spec_evtchn.STATE_NAMES[c.state] for c in d.channels[1:]])


def _impl_state(x, dom):
    bits = x.bits[dom]
    ports = range(len(x.ports[dom]))
    return ([p for p in ports if bits.pending >> p & 1], [p for p in ports if bits.mask >> p & 1],
            bits.sel, bits.upcall, [e[0] for e in x.ports[dom][1:]])


def _call(engine, op, a, b, c):
    try:
        if op == "take":
            if engine == "spec":
                return ("ok", OBJ["spec"].take_pending(OBJ["spec"].domain(a), b))
            return ("ok", OBJ["impl"].take(a, b))
        fn = getattr(OBJ[engine], op)
        args = {"alloc_unbound": (a, b % 3), "bind_interdomain": (a, b % 3, c),
                "bind_virq": (a, c), "send": (a, b), "close": (a, b), "mask": (a, b),
                "unmask": (a, b)}[op]
        return ("ok", fn(*args))
    except (spec_evtchn.EvtchnError, impl_xen.EvtchnError) as exc:
        return ("error", exc.errno)


OBJ: dict = {}


# domains 0 and 1 (and now and then 2, which does not exist), ports 0-3
DOMS = st.integers(0, 2).map(lambda d: d % 2 if d < 2 else 2) | st.sampled_from((0, 1))


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), DOMS, st.integers(0, 3),
                          st.integers(0, 25)), max_size=30))
def test_the_same_calls_give_the_same_bits_and_errors(calls):
    OBJ["spec"] = spec_evtchn.EventChannels(lambda e: None)
    OBJ["impl"] = impl_xen.EventChannels(lambda e: None)
    for dom in (0, 1):
        OBJ["spec"].add_domain(dom)
        OBJ["impl"].add_domain(dom)
    for engine in ("spec", "impl"):                 # two connected pairs to start from
        for _ in range(2):
            remote = OBJ[engine].alloc_unbound(1, 0)
            OBJ[engine].bind_interdomain(0, 1, remote)
    for op, a, b, c in calls:
        results = [_call(engine, op, a, b, c) for engine in ("spec", "impl")]
        assert results[0] == results[1], (op, a, b, c, results)
        for dom in (0, 1):
            assert _spec_state(OBJ["spec"], dom) == _impl_state(OBJ["impl"], dom), (op, a, b, c)


ALPHABET = [(op, dom, port, 0) for op, dom in (("send", 0), ("mask", 1), ("unmask", 1),
                                               ("take", 1), ("close", 0), ("close", 1),
                                               ("send", 1))
            for port in (1, 2)]


def test_every_short_sequence_on_two_connected_pairs():
    """All sequences of three calls from a small alphabet (14 calls on two
    connected pairs): masks, sends, unmasks, takes and closes in every order."""
    import itertools
    for calls in itertools.product(ALPHABET, repeat=3):
        OBJ["spec"] = spec_evtchn.EventChannels(lambda e: None)
        OBJ["impl"] = impl_xen.EventChannels(lambda e: None)
        for engine in ("spec", "impl"):
            for dom in (0, 1):
                OBJ[engine].add_domain(dom)
            for _ in range(2):
                OBJ[engine].bind_interdomain(0, 1, OBJ[engine].alloc_unbound(1, 0))
        for op, a, b, c in calls:
            results = [_call(engine, op, a, b, c) for engine in ("spec", "impl")]
            assert results[0] == results[1], (calls, results)
            for dom in (0, 1):
                assert _spec_state(OBJ["spec"], dom) == _impl_state(OBJ["impl"], dom), calls


def test_ports_in_different_selector_words_give_the_same_bits():
    """Ports 1, 63, 64 and 129 of dom1 (selector words 0, 0, 1 and 2): masks,
    sends, unmasks and takes across words give both engines the same pending,
    mask and selector words and the same upcall."""
    engines = {"spec": spec_evtchn.EventChannels(lambda e: None),
               "impl": impl_xen.EventChannels(lambda e: None)}
    local = {}
    for name, x in engines.items():
        for dom in (0, 1):
            x.add_domain(dom)
        pairs = {}
        for _ in range(130):
            remote = x.alloc_unbound(1, 0)
            pairs[remote] = x.bind_interdomain(0, 1, remote)
        local[name] = pairs
    calls = [("mask", 64), ("send", 64), ("send", 1), ("send", 129), ("take", 1),
             ("unmask", 64), ("take", 129), ("take", 64), ("send", 63), ("mask", 63),
             ("take", 63)]
    for op, port in calls:
        for name, x in engines.items():
            if op == "send":
                x.send(0, local[name][port])
            elif op == "take":
                x.take_pending(x.domain(1), port) if name == "spec" else x.take(1, port)
            else:
                getattr(x, op)(1, port)
        assert _spec_state(engines["spec"], 1) == _impl_state(engines["impl"], 1), (op, port)
    bits = engines["spec"].domain(1).bits
    assert [p for p in range(130) if spec_evtchn.is_masked(bits, p)] == [63]
