"""XenStore's semantics through :class:`spec.xenstore.Connection` objects.

Each test states what ``tools/xenstored`` (core.c, transaction.c, watch.c,
domain.c) answers, with the exact value or ``xs_wire.h`` error name. dom0's
connection is ``tools``; domain 5 is introduced with its home directory
``/local/domain/5`` owned by itself (as xend leaves it), domain 6 likewise.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec import trace
from spec.xenstore import Store, XenstoreError
from spec.xenstore.quota import Quotas
from spec.xenstore.store import DomainState, snapshot


def refused(errno: str, fn, *args, **kwargs) -> XenstoreError:
    """``fn(*args)`` is refused with ``errno``."""
    with pytest.raises(XenstoreError) as info:
        fn(*args, **kwargs)
    assert info.value.errno == errno, f"{fn.__name__}{args}: {info.value.errno} != {errno}"
    return info.value


def home(tools, domid: int) -> None:
    tools.mkdir(f"/local/domain/{domid}")
    tools.set_perms(f"/local/domain/{domid}", [f"n{domid}"])


@pytest.fixture
def events():
    return []


@pytest.fixture
def store(events):
    return Store(emit=events.append)


@pytest.fixture
def tools(store):
    return store.connect()


@pytest.fixture
def dom5(store, tools):
    home(tools, 5)
    return tools.introduce(5, 0x1234, 7)


@pytest.fixture
def dom6(store, tools):
    home(tools, 6)
    return tools.introduce(6, 0x5678, 8)


def recount(store: Store) -> dict[int, int]:
    """Nodes owned per domain, counted over the tree."""
    return dict(Counter(node.acl[0].domid for node in store.nodes.values()))


def owned(store: Store) -> dict[int, int]:
    return {domid: n for domid, n in store.owned.items() if n}


# --- paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/a b", "/a\tb", "/ä", "/a.b", "/a:b", "/a\0b", "/a//b", "//", "/a/", "/a/b/", "",
    "@introduceDomain", "@releaseDomain", "@x"])
def test_invalid_paths_are_einval(tools, path):
    for op in (tools.read, tools.mkdir, tools.rm, tools.directory):
        refused("EINVAL", op, path)
    refused("EINVAL", tools.write, path, "v")
    assert snapshot(tools.store) == {"/": ("", ("n0",))}


def test_every_valid_character(tools):
    name = "/AZaz09-_@"
    tools.write(name, "v")
    assert tools.read(name) == "v"
    assert tools.directory("/") == ["AZaz09-_@"]


def test_special_names_only_in_watches_and_permissions(tools):
    tools.watch("@introduceDomain", "i")
    tools.unwatch("@introduceDomain", "i")
    assert tools.get_perms("@releaseDomain") == ["n0"]
    tools.set_perms("@releaseDomain", ["n0", "r5"])
    assert tools.get_perms("@releaseDomain") == ["n0", "r5"]
    refused("ENOENT", tools.get_perms, "@nonesuch")
    refused("EINVAL", tools.write, "@releaseDomain", "x")


def test_absolute_path_limit_for_the_tools(tools):
    longest = "/" + "x" * 3071                      # XENSTORE_ABS_PATH_MAX bytes
    tools.write(longest, "v")
    assert tools.read(longest) == "v"
    refused("EINVAL", tools.write, longest + "y", "v")


def test_path_limit_for_a_domain(dom5, tools):
    """Below /local/domain/<id>/ a domain may name 2048 bytes
    (XENSTORE_REL_PATH_MAX); elsewhere the whole name counts."""
    dom5.write("a" * 2048, "v")
    assert tools.read("/local/domain/5/" + "a" * 2048) == "v"
    refused("EINVAL", dom5.write, "a" * 2049, "v")
    refused("EINVAL", dom5.write, "/local/domain/5/" + "b" * 2049, "v")
    refused("EINVAL", dom5.read, "/local/domain/6/" + "b" * 2049)
    refused("EINVAL", dom5.read, "/" + "c" * 2048)           # 2049 bytes, not below a home
    # the tools have no such limit below a home
    refused("ENOENT", tools.read, "/local/domain/5/" + "b" * 2049)


def test_relative_paths_of_a_domain(dom5, tools):
    dom5.write("device/vbd/768", "x")
    assert tools.read("/local/domain/5/device/vbd/768") == "x"
    assert dom5.read("/local/domain/5/device/vbd/768") == "x"
    assert dom5.directory("device") == ["vbd"]
    assert tools.get_domain_path(5) == dom5.get_domain_path(5) == "/local/domain/5"
    # the tools' own home is /local/domain/0
    tools.write("name", "Domain-0")
    assert tools.read("/local/domain/0/name") == "Domain-0"


# --- permissions ----------------------------------------------------------------------

def test_owner_gets_everything_whatever_the_list_says(dom5, tools):
    tools.write("/p", "v")
    tools.set_perms("/p", ["n5", "n6"])              # owner 5, no rights listed
    assert dom5.read("/p") == "v"
    dom5.write("/p", "w")
    dom5.set_perms("/p", ["n5", "r6"])
    assert tools.get_perms("/p") == ["n5", "r6"]


def test_later_entry_decides_then_default(dom5, dom6, tools):
    tools.write("/p", "v")
    tools.set_perms("/p", ["r0", "w5", "n6"])       # default read; 5 may only write
    refused("EACCES", dom5.read, "/p")
    dom5.write("/p", "by5")
    refused("EACCES", dom6.read, "/p")
    refused("EACCES", dom6.write, "/p", "x")
    tools.set_perms("/p", ["r0"])                    # the default decides for everyone
    assert dom6.read("/p") == "by5"
    refused("EACCES", dom6.write, "/p", "x")
    tools.set_perms("/p", ["b0", "r6", "w6"])        # the first entry naming 6 decides
    assert dom6.read("/p") == "by5"
    refused("EACCES", dom6.write, "/p", "x")
    dom5.write("/p", "default both")


def test_dom0_bypasses_every_list(tools, dom5):
    dom5.write("mine", "secret")
    dom5.set_perms("mine", ["n5"])
    assert tools.read("/local/domain/5/mine") == "secret"
    tools.write("/local/domain/5/mine", "seen")
    tools.set_perms("/local/domain/5/mine", ["n7"])
    assert tools.get_perms("/local/domain/5/mine") == ["n7"]


def test_missing_node_under_an_unreadable_ancestor_is_eacces(dom5, tools):
    """errno_from_parents: a missing node is ENOENT only if the nearest
    existing ancestor grants what was asked; never reveals existence."""
    tools.mkdir("/secret")                           # n0: nothing for domains
    refused("EACCES", dom5.read, "/secret/missing")
    refused("EACCES", dom5.read, "/secret/deeper/missing")
    refused("EACCES", dom5.directory, "/secret/missing")
    tools.write("/secret/there", "x")
    refused("EACCES", dom5.read, "/secret/there")
    tools.set_perms("/secret", ["n0", "r5"])
    refused("ENOENT", dom5.read, "/secret/missing")
    refused("ENOENT", dom5.read, "/secret/a/b/c")
    refused("EACCES", dom5.read, "/secret/there")    # the node's own list still says n0
    refused("ENOENT", dom5.read, "missing")          # in its home


def test_create_needs_write_on_nearest_existing_ancestor(dom5, tools):
    tools.mkdir("/ro")
    tools.set_perms("/ro", ["n0", "r5"])
    refused("EACCES", dom5.write, "/ro/a/b", "v")
    refused("EACCES", dom5.mkdir, "/ro/a")
    assert tools.directory("/ro") == []
    tools.set_perms("/ro", ["n0", "w5"])
    dom5.write("/ro/a/b", "v")
    assert tools.directory("/ro/a") == ["b"]
    refused("EACCES", dom5.read, "/ro/x")   # write on /ro does not grant read


def test_created_nodes_inherit_with_unprivileged_creator_as_owner(store, dom5, tools):
    tools.mkdir("/shared")
    tools.set_perms("/shared", ["n0", "b5", "r6"])
    dom5.write("/shared/a/b", "v")                   # creates /shared/a too
    assert tools.get_perms("/shared/a") == ["n5", "b5", "r6"]
    assert tools.get_perms("/shared/a/b") == ["n5", "b5", "r6"]
    tools.write("/shared/t", "v")                    # dom0 keeps the parent's list
    assert tools.get_perms("/shared/t") == ["n0", "b5", "r6"]
    assert store.owned[5] == 1 + 2                   # its home and the two it created
    assert owned(store) == recount(store)


def test_set_perms_rules(dom5, dom6, tools):
    tools.write("/p", "v")
    tools.set_perms("/p", ["n0", "b5"])
    e = refused("EACCES", dom5.set_perms, "/p", ["n0", "b5", "r6"])  # not the owner
    assert e.path == "/p"
    dom5.write("mine", "v")
    refused("EPERM", dom5.set_perms, "mine", ["n6"])           # may not give it away
    refused("EACCES", dom6.set_perms, "/local/domain/5/mine", ["n6"])
    dom5.set_perms("mine", ["n5", "r1", "r2", "r3", "r4"])     # five entries
    refused("ENOSPC", dom5.set_perms, "mine", ["n5", "r1", "r2", "r3", "r4", "r6"])
    tools.set_perms("/p", ["n0", "r1", "r2", "r3", "r4", "r6", "r7"])   # dom0: no quota
    refused("EINVAL", tools.set_perms, "/p", [])
    refused("EINVAL", tools.set_perms, "/p", ["x5"])
    refused("EINVAL", tools.set_perms, "/p", ["r65536"])
    refused("EINVAL", tools.set_perms, "/p", ["r"])
    refused("ENOENT", tools.set_perms, "/nope", ["n0"])
    assert tools.get_perms("/local/domain/5/mine") == ["n5", "r1", "r2", "r3", "r4"]


def test_get_perms_needs_read(dom5, tools):
    tools.write("/p", "v")
    refused("EACCES", dom5.get_perms, "/p")
    refused("EACCES", dom5.get_perms, "@releaseDomain")
    tools.set_perms("/p", ["n0", "r5"])
    assert dom5.get_perms("/p") == ["n0", "r5"]


def test_set_perms_changes_the_owner_charged(store, dom5, tools):
    before = store.owned[5]
    tools.write("/gift", "v")
    tools.set_perms("/gift", ["n5"])
    assert store.owned[5] == before + 1
    tools.set_perms("/gift", ["n0"])
    assert store.owned[5] == before
    assert owned(store) == recount(store)


# --- directories and rm --------------------------------------------------------------

def test_directory_lists_in_creation_order(tools):
    for name in ("zeta", "alpha", "mid", "0"):
        tools.write(f"/d/{name}", "")
    assert tools.directory("/d") == ["zeta", "alpha", "mid", "0"]
    tools.rm("/d/alpha")
    tools.write("/d/alpha", "back")
    assert tools.directory("/d") == ["zeta", "mid", "0", "alpha"]
    tools.write("/d/zeta", "rewritten")                # an existing child keeps its place
    assert tools.directory("/d") == ["zeta", "mid", "0", "alpha"]
    assert tools.directory("/d/zeta") == []
    refused("ENOENT", tools.directory, "/nope")


def test_write_creates_parents_with_empty_values(tools):
    tools.write("/a/b/c", "leaf")
    assert tools.read("/a") == "" and tools.read("/a/b") == ""
    assert tools.read("/a/b/c") == "leaf"
    tools.mkdir("/a/b")                                 # exists: unchanged
    assert tools.read("/a/b") == "" and tools.directory("/a/b") == ["c"]
    tools.write("/a/b", "now a value")
    assert tools.directory("/a/b") == ["c"]


def test_values_are_bytes(tools):
    tools.write("/bin", b"\x00\xff\x01 not utf-8")
    assert tools.read("/bin").encode("utf-8", "surrogateescape") == b"\x00\xff\x01 not utf-8"
    tools.write("/empty", "")
    assert tools.read("/empty") == ""


def test_rm_removes_the_subtree(store, tools):
    tools.write("/r/a/b", "1")
    tools.write("/r/a/c", "2")
    tools.write("/r/k", "3")
    tools.rm("/r/a")
    assert tools.directory("/r") == ["k"]
    for gone in ("/r/a", "/r/a/b", "/r/a/c"):
        refused("ENOENT", tools.read, gone)
    assert set(store.nodes) == {"/", "/r", "/r/k"}


def test_rm_missing(tools):
    tools.mkdir("/p")
    tools.rm("/p/missing")                             # the parent exists: fine
    refused("ENOENT", tools.rm, "/p/missing/deeper")
    refused("ENOENT", tools.rm, "/q/r")
    refused("EINVAL", tools.rm, "/")
    assert tools.directory("/") == ["p"]


def test_rm_needs_write(dom5, tools):
    tools.write("/p/c", "v")
    tools.set_perms("/p", ["n0", "r5"])
    tools.set_perms("/p/c", ["n0", "r5"])
    refused("EACCES", dom5.rm, "/p/c")
    refused("EACCES", dom5.rm, "/p/missing")           # nearest existing grants no write
    refused("EACCES", dom5.rm, "/p")
    tools.set_perms("/p/c", ["n0", "w5"])
    dom5.rm("/p/c")
    assert tools.directory("/p") == []


def test_rm_uncharges_every_owner(store, dom5, dom6, tools):
    tools.mkdir("/s")
    tools.set_perms("/s", ["n0", "b5", "b6"])
    dom5.write("/s/x/a", "")
    dom6.write("/s/x/b", "")
    assert store.owned[5] == 3 and store.owned[6] == 2
    tools.rm("/s/x")
    assert store.owned[5] == 1 and store.owned[6] == 1
    assert owned(store) == recount(store)


# --- transactions ---------------------------------------------------------------------

def test_transaction_sees_a_snapshot(tools, store):
    """The spec's transaction sees the store as it was at its start. (The
    xenstored of Xen <= 4.8 copied the database at the start; today's
    reads a node when the transaction first touches it. Both are
    serialisable: the commit rule refuses a transaction whose reads went
    stale.)"""
    tools.write("/t", "old")
    other = store.connect("other")
    tx = tools.transaction_start()
    other.write("/t", "new")
    other.write("/u", "created outside")
    assert tools.read("/t", tx) == "old"
    refused("ENOENT", tools.read, "/u", tx)
    assert tools.read("/t") == "new"
    tools.write("/t", "inside", tx)
    assert tools.read("/t", tx) == "inside"
    assert other.read("/t") == "new"               # nobody else sees it


def test_commit_eagain_when_something_read_changed(tools, store):
    other = store.connect("other")
    tools.write("/t", "0")
    tx = tools.transaction_start()
    assert tools.read("/t", tx) == "0"
    tools.write("/w", "written in tx", tx)
    other.write("/t", "1")
    refused("EAGAIN", tools.transaction_end, tx)
    refused("ENOENT", tools.read, "/w")            # nothing of it is kept
    assert tools.transactions == {}
    refused("ENOENT", tools.read, "/t", tx)        # the id is gone


def test_commit_eagain_when_a_missing_node_was_created(tools, store):
    other = store.connect("other")
    tools.mkdir("/d")
    tx = tools.transaction_start()
    refused("ENOENT", tools.read, "/d/m", tx)
    tools.write("/d/other", "x", tx)
    other.write("/d/m", "now it exists")
    refused("EAGAIN", tools.transaction_end, tx)
    assert tools.directory("/d") == ["m"]


def test_commit_eagain_when_a_listing_changed(tools, store):
    other = store.connect("other")
    tools.mkdir("/d")
    tx = tools.transaction_start()
    assert tools.directory("/d", tx) == []
    tools.write("/elsewhere", "x", tx)
    other.mkdir("/d/new")
    refused("EAGAIN", tools.transaction_end, tx)
    refused("ENOENT", tools.read, "/elsewhere")


def test_commit_succeeds_when_only_unrelated_nodes_changed(tools, store):
    other = store.connect("other")
    tools.write("/a", "1")
    tools.write("/b", "1")
    tx = tools.transaction_start()
    assert tools.read("/a", tx) == "1"
    tools.write("/a", "2", tx)
    other.write("/b", "2")
    tools.transaction_end(tx)
    assert tools.read("/a") == "2" and tools.read("/b") == "2"


def test_retry_loop_succeeds(tools, store):
    """Two clients increment a counter in transactions, one always
    interfering with the other's first attempt: every increment lands."""
    other = store.connect("other")
    tools.write("/counter", "0")
    attempts = 0
    for _ in range(5):
        while True:
            attempts += 1
            tx = tools.transaction_start()
            n = int(tools.read("/counter", tx))
            if attempts % 2:                             # the other client gets in first
                other.write("/counter", str(int(other.read("/counter")) + 1))
            tools.write("/counter", str(n + 1), tx)
            try:
                tools.transaction_end(tx)
                break
            except XenstoreError as exc:
                assert exc.errno == "EAGAIN"
    assert attempts == 10
    assert tools.read("/counter") == "10"


def test_abort_drops_everything(tools, store):
    tools.write("/keep", "v")
    before = snapshot(store)
    tx = tools.transaction_start()
    tools.write("/new/deep", "x", tx)
    tools.rm("/keep", tx)
    tools.set_perms("/new", ["n5"], tx)
    tools.transaction_end(tx, commit=False)
    assert snapshot(store) == before
    assert owned(store) == recount(store)


def test_transaction_commits_rm_and_create(tools, store):
    tools.write("/a/b", "1")
    tx = tools.transaction_start()
    tools.rm("/a", tx)
    tools.write("/c/d", "2", tx)
    tools.mkdir("/e", tx)
    tools.set_perms("/c/d", ["n0", "r5"], tx)
    tools.transaction_end(tx)
    assert snapshot(store) == {"/": ("", ("n0",)), "/c": ("", ("n0",)),
                               "/c/d": ("2", ("n0", "r5")), "/e": ("", ("n0",))}
    assert tools.directory("/") == ["c", "e"]
    assert owned(store) == recount(store) == {0: 4}


def test_unknown_transaction_is_enoent(tools):
    for op, args in ((tools.read, ("/",)), (tools.write, ("/x", "v")), (tools.mkdir, ("/x",)),
                     (tools.rm, ("/x",)), (tools.directory, ("/",)),
                     (tools.get_perms, ("/",)), (tools.set_perms, ("/x", ["n0"]))):
        refused("ENOENT", op, *args, tx=42)
    refused("ENOENT", tools.transaction_end, 42)
    assert tools.directory("/") == []


def test_transactions_are_per_connection(tools, store):
    other = store.connect("other")
    tx = tools.transaction_start()
    refused("ENOENT", other.read, "/", tx)
    refused("ENOENT", other.transaction_end, tx)
    tools.transaction_end(tx)


def test_transaction_ids(tools):
    ids = [tools.transaction_start() for _ in range(3)]
    assert ids == [1, 2, 3]
    for tx in ids:
        tools.transaction_end(tx, commit=False)


def test_watches_inside_a_transaction_fire_at_commit_once(tools, store):
    """queue_watches: one event per node changed, at the commit; a node
    that no longer exists is seen only by who could read it when the
    transaction first saw it (finalize_transaction), so one created and
    removed inside the transaction fires for nobody."""
    tools.write("/w/old", "")
    watcher = store.connect("watcher")
    watcher.watch("/w", "tok")
    assert watcher.take_events() == [("/w", "tok")]
    tx = tools.transaction_start()
    tools.write("/w/a", "1", tx)
    tools.write("/w/a", "2", tx)                       # the same node twice: one event
    tools.write("/w/b", "1", tx)
    tools.rm("/w/b", tx)                               # created and gone: no event
    tools.rm("/w/old", tx)
    assert watcher.take_events() == []
    tools.transaction_end(tx)
    assert watcher.take_events() == [("/w/a", "tok"), ("/w/old", "tok")]
    assert tools.read("/w/a") == "2"


def test_commit_of_a_removed_subtree_fires_like_rm(tools, store):
    tools.write("/r/a/b", "")
    watcher = store.connect("watcher")
    watcher.watch("/r", "r")
    watcher.watch("/r/a/b", "b")
    watcher.take_events()
    tx = tools.transaction_start()
    tools.rm("/r/a", tx)
    tools.transaction_end(tx)
    assert sorted(watcher.take_events()) == [("/r/a", "r"), ("/r/a/b", "b")]


def test_watch_events_at_commit_in_first_access_order(tools, store):
    watcher = store.connect("watcher")
    tools.write("/w/first", "0")
    tools.write("/w/second", "0")
    watcher.watch("/w", "tok")
    watcher.take_events()
    tx = tools.transaction_start()
    tools.read("/w/first", tx)
    tools.write("/w/second", "1", tx)
    tools.write("/w/first", "1", tx)
    tools.transaction_end(tx)
    assert watcher.take_events() == [("/w/first", "tok"), ("/w/second", "tok")]


def test_no_watch_events_on_abort_or_eagain(tools, store):
    tools.mkdir("/w")
    watcher = store.connect("watcher")
    watcher.watch("/w", "tok")
    watcher.take_events()
    tx = tools.transaction_start()
    tools.write("/w/a", "1", tx)
    tools.transaction_end(tx, commit=False)
    tx = tools.transaction_start()
    tools.read("/w", tx)
    tools.write("/w/a", "1", tx)
    store.connect("other").write("/w", "changed")      # fires once, now
    assert watcher.take_events() == [("/w", "tok")]
    refused("EAGAIN", tools.transaction_end, tx)
    assert watcher.take_events() == []


# --- watches --------------------------------------------------------------------------

def test_initial_firing_then_subtree_changes(tools, store):
    watcher = store.connect("watcher")
    watcher.watch("/vm", "tok")
    assert watcher.take_events() == [("/vm", "tok")]      # fires at once, node or not
    tools.write("/vm/1/name", "hvm")
    tools.mkdir("/vm/2")
    tools.mkdir("/vm/2")                                  # exists: no event
    tools.write("/vmx", "not below /vm")
    tools.set_perms("/vm/2", ["n0", "r5"])
    assert watcher.take_events() == [("/vm/1/name", "tok"), ("/vm/2", "tok"),
                                     ("/vm/2", "tok")]


def test_write_fires_only_the_named_node_not_created_parents(tools, store):
    watcher = store.connect("watcher")
    watcher.watch("/a/b", "exact parent")
    watcher.take_events()
    tools.write("/a/b/c/d", "v")                          # creates /a/b and /a/b/c too
    assert watcher.take_events() == [("/a/b/c/d", "exact parent")]


def test_rm_fires_root_as_subtree_descendants_exactly(tools, store):
    tools.write("/r/a/b", "1")
    tools.write("/r/a/c", "1")
    watcher = store.connect("watcher")
    for path, token in (("/", "root"), ("/r", "r"), ("/r/a", "a"), ("/r/a/b", "b")):
        watcher.watch(path, token)
    watcher.take_events()
    tools.rm("/r/a")
    got = watcher.take_events()
    assert sorted(got) == sorted([("/r/a", "root"), ("/r/a", "r"), ("/r/a", "a"),
                                  ("/r/a/b", "b")])
    assert got[-3:] == [("/r/a", "root"), ("/r/a", "r"), ("/r/a", "a")]  # root last


def test_rm_of_missing_node_fires_nothing(tools, store):
    tools.mkdir("/p")
    watcher = store.connect("watcher")
    watcher.watch("/p", "t")
    watcher.take_events()
    tools.rm("/p/missing")
    assert watcher.take_events() == []


def test_relative_watch_gives_relative_paths(dom5, tools):
    dom5.watch("device", "rel")
    dom5.watch("/local/domain/5/device", "abs")
    assert dom5.take_events() == [("device", "rel"), ("/local/domain/5/device", "abs")]
    tools.write("/local/domain/5/device/vif/0", "x")
    assert dom5.take_events() == [("device/vif/0", "rel"),
                                  ("/local/domain/5/device/vif/0", "abs")]
    dom5.unwatch("device", "rel")
    refused("ENOENT", dom5.unwatch, "device", "rel")
    dom5.unwatch("/local/domain/5/device", "abs")


def test_watcher_that_can_read_neither_node_nor_parent_gets_nothing(dom5, tools):
    tools.mkdir("/hidden")
    dom5.watch("/hidden", "h")
    assert dom5.take_events() == [("/hidden", "h")]       # the initial firing always
    tools.write("/hidden/x", "v")                          # n0 on node and parent
    assert dom5.take_events() == []
    tools.set_perms("/hidden", ["n0", "r5"])               # now it can read /hidden
    assert dom5.take_events() == [("/hidden", "h")]
    tools.write("/hidden/y", "v")                          # y: n0 r5 inherited
    tools.set_perms("/hidden/x", ["n0"])                   # x unreadable, parent readable
    tools.write("/hidden/x", "w")
    assert dom5.take_events() == [("/hidden/y", "h"), ("/hidden/x", "h"), ("/hidden/x", "h")]
    tools.write("/hidden/x/z", "v")                        # z n0, parent x n0: hidden
    assert dom5.take_events() == []


def test_set_perms_event_seen_with_the_old_list(dom5, tools):
    tools.write("/p", "v")
    tools.set_perms("/p", ["n0", "r5"])
    tools.mkdir("/q")
    dom5.watch("/p", "t")
    dom5.take_events()
    tools.set_perms("/p", ["n0"])                          # it could read it before
    assert dom5.take_events() == [("/p", "t")]
    tools.write("/p", "w")                                 # now it cannot; parent / is n0
    assert dom5.take_events() == []


def test_duplicate_watch_and_unwatch(tools):
    tools.watch("/a", "t")
    refused("EEXIST", tools.watch, "/a", "t")
    tools.watch("/a", "other token")
    tools.watch("/b", "t")
    assert tools.take_events() == [("/a", "t"), ("/a", "other token"), ("/b", "t")]
    tools.unwatch("/a", "t")
    refused("ENOENT", tools.unwatch, "/a", "t")
    refused("ENOENT", tools.unwatch, "/c", "t")
    refused("EINVAL", tools.watch, "/bad/", "t")
    tools.write("/a", "v")
    assert tools.take_events() == [("/a", "other token")]


def test_reset_watches(tools, store):
    tools.watch("/a", "t")
    tx = tools.transaction_start()
    tools.reset_watches()
    assert tools.watches == [] and tools.transactions == {}
    tools.take_events()
    store.connect().write("/a", "v")
    assert tools.take_events() == []
    refused("ENOENT", tools.transaction_end, tx)


def test_disconnect_drops_watches_and_transactions(tools, store):
    other = store.connect("other")
    other.watch("/", "all")
    tx = other.transaction_start()
    other.write("/x", "never", tx)
    store.disconnect(other)
    other.take_events()
    tools.write("/y", "v")
    assert other.take_events() == []
    assert tools.directory("/") == ["y"]


# --- quotas ---------------------------------------------------------------------------

def test_node_quota_small():
    store = Store(quotas=Quotas(nodes=4))
    t = store.connect()
    home(t, 5)                                            # the home counts: 1 of 4
    d = t.introduce(5, 1, 1)
    d.write("a", "")
    d.write("b/c", "")                                    # two new nodes: 4 of 4
    before = snapshot(store)
    refused("ENOSPC", d.write, "d", "")
    refused("ENOSPC", d.mkdir, "e/f")
    assert snapshot(store) == before
    d.write("a", "an existing node is not a new one")
    d.rm("a")
    d.write("d", "room again")
    # dom0 is exempt, and what it creates keeps the parent's owner: domain 5
    # is charged past its quota (construct_node, create_node)
    t.write("/local/domain/5/t1/t2/t3", "dom0 is exempt")
    assert store.owned == {0: 3, 5: 7}
    refused("ENOSPC", d.write, "e", "")


def test_node_quota_default_1000(store, dom5, tools):
    for i in range(999):                                  # the home is the first
        dom5.write(f"n{i}", "")
    assert store.owned[5] == 1000
    refused("ENOSPC", dom5.write, "one-too-many", "")
    refused("ENOSPC", dom5.mkdir, "x/y")
    assert len(tools.directory("/local/domain/5")) == 999
    tx = dom5.transaction_start()
    refused("ENOSPC", dom5.write, "in-tx", "", tx)
    dom5.transaction_end(tx)
    dom5.rm("n0")
    dom5.write("one-more", "")
    assert store.owned[5] == 1000 and owned(store) == recount(store)


def test_node_quota_counts_what_a_transaction_created():
    t = Store(quotas=Quotas(nodes=3)).connect()
    home(t, 5)
    d = t.introduce(5, 1, 1)
    tx = d.transaction_start()
    d.write("a", "", tx)
    d.write("b", "", tx)
    refused("ENOSPC", d.write, "c", "", tx)
    d.transaction_end(tx)
    assert t.directory("/local/domain/5") == ["a", "b"]


def test_node_size_quota(dom5, tools):
    dom5.write("big", "x" * 2048)
    assert len(dom5.read("big")) == 2048
    refused("ENOSPC", dom5.write, "big", "y" * 2049)
    assert dom5.read("big") == "x" * 2048
    refused("ENOSPC", dom5.write, "new", "y" * 2049)
    refused("ENOENT", dom5.read, "new")
    tools.write("/local/domain/5/huge", "z" * 4000)     # dom0 is exempt
    small = Store(quotas=Quotas(node_size=3)).connect()
    home(small, 5)
    d = small.introduce(5, 1, 1)
    d.write("a", b"\xff\xfe\xfd")                         # bytes, not characters
    refused("ENOSPC", d.write, "a", "é\xff")              # 3 bytes in UTF-8 + 1
    refused("ENOSPC", d.write, "a", b"1234")


def test_watch_quota(dom5, tools):
    for i in range(128):
        dom5.watch(f"w{i}", "t")
    refused("ENOSPC", dom5.watch, "one-more", "t")
    refused("EEXIST", dom5.watch, "w0", "t")               # duplicates are found first
    dom5.unwatch("w0", "t")
    dom5.watch("one-more", "t")
    for i in range(300):
        tools.watch(f"/w{i}", "t")                        # dom0 is exempt
    small = Store(quotas=Quotas(watches=2)).connect()
    home(small, 5)
    d = small.introduce(5, 1, 1)
    d.watch("a", "1")
    d.watch("a", "2")
    refused("ENOSPC", d.watch, "a", "3")


def test_transaction_quota(dom5, tools):
    txs = [dom5.transaction_start() for _ in range(10)]
    refused("ENOSPC", dom5.transaction_start)
    dom5.transaction_end(txs[0], commit=False)
    txs[0] = dom5.transaction_start()
    assert len(dom5.transactions) == 10
    for _ in range(20):
        tools.transaction_start()                          # dom0 is exempt
    small = Store(quotas=Quotas(transactions=1)).connect()
    home(small, 5)
    d = small.introduce(5, 1, 1)
    d.transaction_start()
    refused("ENOSPC", d.transaction_start)


def test_permission_quota_small():
    t = Store(quotas=Quotas(permissions=2)).connect()
    home(t, 5)
    d = t.introduce(5, 1, 1)
    d.write("a", "")
    d.set_perms("a", ["n5", "r6"])
    refused("ENOSPC", d.set_perms, "a", ["n5", "r6", "r7"])
    assert t.get_perms("/local/domain/5/a") == ["n5", "r6"]


# --- domains --------------------------------------------------------------------------

def test_introduce_release(store, tools):
    watcher = store.connect("xend")
    watcher.watch("@introduceDomain", "intro")
    watcher.watch("@releaseDomain", "rel")
    assert watcher.take_events() == [("@introduceDomain", "intro"), ("@releaseDomain", "rel")]
    assert tools.is_domain_introduced(0) is True
    assert tools.is_domain_introduced(3) is False
    d3 = tools.introduce(3, 0xfeffe, 5)
    assert (d3.domid, d3.privileged, d3.name) == (3, False, "dom3")
    assert tools.is_domain_introduced(3) is True
    assert watcher.take_events() == [("@introduceDomain", "intro")]
    assert tools.introduce(3, 0xfeffe, 5) is d3          # again, same ring: same connection
    assert watcher.take_events() == []
    refused("EINVAL", tools.introduce, 3, 0xabc, 5)
    refused("EINVAL", tools.introduce, 0, 1, 1)
    refused("EINVAL", tools.introduce, 4, 1, 0)
    refused("EACCES", d3.introduce, 4, 1, 1)
    refused("EACCES", d3.release, 3)
    refused("EACCES", d3.is_domain_introduced, 3)       # XS_FLAG_PRIV, as xenstored
    assert tools.get_domain_path(3) == "/local/domain/3"
    tools.release(3)
    assert tools.is_domain_introduced(3) is False
    assert watcher.take_events() == [("@releaseDomain", "rel")]
    assert d3 not in store.connections
    refused("ENOENT", tools.release, 3)


def test_release_drops_the_domains_watches(store, tools, dom5):
    dom5.watch("/local/domain/5", "mine")
    dom5.take_events()
    tools.release(5)
    tools.write("/local/domain/5/x", "v")
    assert dom5.take_events() == []
    assert dom5.watches == []


def test_special_watches_need_read_on_the_special_node(store, tools, dom5):
    dom5.watch("@introduceDomain", "i")
    assert dom5.take_events() == [("@introduceDomain", "i")]   # initial firing always
    tools.introduce(9, 1, 1)
    assert dom5.take_events() == []                            # @introduceDomain is n0
    tools.set_perms("@introduceDomain", ["n0", "r5"])
    tools.introduce(10, 1, 1)
    assert dom5.take_events() == [("@introduceDomain", "i")]


def test_domain_exception(store, tools):
    watcher = store.connect("xend")
    watcher.watch("@releaseDomain", "rel")
    watcher.take_events()
    d3, d4 = tools.introduce(3, 1, 1), tools.introduce(4, 2, 2)
    states = {3: DomainState(shutdown=False, dying=False),
              4: DomainState(shutdown=False, dying=False)}
    store.domain_exception(states.get)
    assert watcher.take_events() == []                         # nothing changed
    states[3] = DomainState(shutdown=True, dying=False)
    store.domain_exception(states.get)
    assert watcher.take_events() == [("@releaseDomain", "rel")]
    store.domain_exception(states.get)                         # still shut down: once
    assert watcher.take_events() == []
    assert tools.is_domain_introduced(3)
    states[3] = DomainState(shutdown=True, dying=True)
    store.domain_exception(states.get)
    assert watcher.take_events() == [("@releaseDomain", "rel")]
    assert not tools.is_domain_introduced(3) and d3 not in store.connections
    del states[4]                                               # gone without dying first
    store.domain_exception(states.get)
    assert watcher.take_events() == [("@releaseDomain", "rel")]
    assert store.domains == {} and d4 not in store.connections


def test_domain_exception_fires_once_for_many(store, tools):
    watcher = store.connect("xend")
    watcher.watch("@releaseDomain", "rel")
    watcher.take_events()
    for domid in (3, 4, 5):
        tools.introduce(domid, domid, domid)
    store.domain_exception(lambda domid: DomainState(shutdown=True, dying=domid == 4))
    assert watcher.take_events() == [("@releaseDomain", "rel")]
    assert sorted(store.domains) == [3, 5]


# --- trace ----------------------------------------------------------------------------

def test_trace_events(events, tools, store):
    tools.write("/a", "1")
    tools.watch("/a", "tok")
    with pytest.raises(XenstoreError):
        tools.read("/missing")
    d = tools.introduce(5, 1, 1)
    with pytest.raises(XenstoreError):
        d.read("/a")
    assert tools.directory("/") == ["a"]
    assert events == [
        trace.XenstoreOp(client="tools", op="write", path="/a", value="1"),
        trace.XenstoreOp(client="tools", op="watch", path="/a", value="tok"),
        trace.XenstoreWatchEvent(client="tools", path="/a", token="tok"),
        trace.XenstoreOp(client="tools", op="read", path="/missing", value="ENOENT"),
        trace.XenstoreOp(client="tools", op="introduce", path="5", value="1 1"),
        trace.XenstoreOp(client="dom5", op="read", path="/a", value="EACCES"),
        trace.XenstoreOp(client="tools", op="directory", path="/", value="a"),
    ]
    events.clear()
    tools.write("/a", "2")
    assert events == [trace.XenstoreWatchEvent(client="tools", path="/a", token="tok"),
                      trace.XenstoreOp(client="tools", op="write", path="/a", value="2")]
    assert events[0].to_json()["kind"] == "xenstore_watch"


# --- a property: random operations ---------------------------------------------------

NAMES = st.sampled_from(["/a", "/a/b", "/a/b/c", "/d", "/d/e", "a", "a/b", "/local/domain/5",
                         "/local/domain/5/x", "/local/domain/6/y", "/", "@releaseDomain",
                         "bad//", "/a/"])
ACLS = st.lists(st.sampled_from(["n0", "r5", "w5", "b5", "n5", "r6", "b6", "n6", "r0"]),
                min_size=0, max_size=7)
OPS = st.one_of(
    st.tuples(st.just("read"), NAMES), st.tuples(st.just("write"), NAMES, st.text("ab", max_size=3)),
    st.tuples(st.just("mkdir"), NAMES), st.tuples(st.just("rm"), NAMES),
    st.tuples(st.just("directory"), NAMES), st.tuples(st.just("get_perms"), NAMES),
    st.tuples(st.just("set_perms"), NAMES, ACLS), st.tuples(st.just("watch"), NAMES),
    st.tuples(st.just("unwatch"), NAMES), st.tuples(st.just("start"),),
    st.tuples(st.just("end"), st.booleans()), st.tuples(st.just("release"),),
    st.tuples(st.just("introduce"),), st.tuples(st.just("reset"),))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), OPS), max_size=60))
def test_random_operations_keep_the_store_consistent(program):
    """Whatever three clients (dom0, domains 5 and 6) do, only
    XenstoreError is raised, the owned counts equal a recount over the
    nodes, every child list names exactly the nodes below it, and every
    node but the root has a parent."""
    store = Store(quotas=Quotas(nodes=6, watches=3, transactions=2))
    tools = store.connect()
    home(tools, 5)
    home(tools, 6)
    clients = [tools, tools.introduce(5, 1, 1), tools.introduce(6, 2, 2)]
    open_tx: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for who, op in program:
        conn = clients[who]
        tx = open_tx[who][-1] if open_tx[who] else 0
        try:
            if op[0] == "write":
                conn.write(op[1], op[2], tx)
            elif op[0] == "set_perms":
                conn.set_perms(op[1], op[2], tx)
            elif op[0] in ("read", "mkdir", "rm", "directory", "get_perms"):
                getattr(conn, op[0])(op[1], tx)
            elif op[0] == "watch":
                conn.watch(op[1], "t")
            elif op[0] == "unwatch":
                conn.unwatch(op[1], "t")
            elif op[0] == "start":
                open_tx[who].append(conn.transaction_start())
            elif op[0] == "end" and tx:
                open_tx[who].pop()
                conn.transaction_end(tx, op[1])
            elif op[0] == "reset":
                conn.reset_watches()
                open_tx[who].clear()
            elif op[0] == "release" and who:
                tools.release(who + 4)
                open_tx[who].clear()
            elif op[0] == "introduce" and who:
                clients[who] = tools.introduce(who + 4, who, who)
        except XenstoreError:
            pass
        assert owned(store) == recount(store)
        for name, node in store.nodes.items():
            below = sorted(n.rsplit("/", 1)[1] for n in store.nodes
                           if n != "/" and (n.rsplit("/", 1)[0] or "/") == name)
            assert sorted(node.children) == below
            assert len(set(node.children)) == len(node.children)
        for conn in clients:
            conn.take_events()


def test_walk_lists_children_in_creation_order(store, tools):
    from spec.xenstore.store import walk
    for path in ("/w/b/x", "/w/a", "/w/b/y", "/w/c"):
        tools.write(path, "1")
    assert list(walk(store, "/w")) == ["/w", "/w/b", "/w/b/x", "/w/b/y", "/w/a", "/w/c"]
