"""The XenStore store and its connections: every operation, as xenstored runs it.

Room: the tree of nodes, the open transactions, the watches, the introduced
domains, and the operations on them, each a method of :class:`Connection`
(one client). The rules come from :mod:`~spec.xenstore.perms`,
:mod:`~spec.xenstore.transaction`, :mod:`~spec.xenstore.watch` and
:mod:`~spec.xenstore.quota`; this module applies them in the order
``tools/xenstored/core.c`` does. Imports those, :mod:`spec.bv`,
:mod:`spec.trace`.

The tree: each node has a value (bytes; kept here as ``str`` with
``surrogateescape`` for bytes that are not UTF-8), a permission list, a
generation and its children's names in the order they were created (the
order ``XS_DIRECTORY`` lists them). The root ``/`` exists from the start,
owned by dom0 with no rights for anyone else.

Lookups follow ``get_node``: a node the connection may not access is
``EACCES``; a missing node is ``ENOENT`` only if the connection could
access its nearest existing ancestor, else ``EACCES`` as well, so that a
refusal never tells whether a node exists. Writing a missing node creates it
and its missing ancestors, each inheriting its parent's list
(:func:`~spec.xenstore.perms.inherit`), if the connection may write the
nearest existing ancestor and its domain stays within its node quota.
Removing a node removes its subtree; removing a missing node whose parent
exists succeeds.

Connections: a socket connection of ``hvmspec xenstored`` is the tools
(dom0, privileged), as on a real host; an introduced domain's connection
(``XS_INTRODUCE``, its ring page in Xen) acts as that domain. Each
connection has its watches, its transactions and a queue of watch events
waiting to be sent.

Xen tells xenstored of a domain that shut down or died with
``VIRQ_DOM_EXC``; :meth:`Store.domain_exception` then fires
``@releaseDomain`` (``domain_cleanup``) and forgets a dead domain. xend
watches ``@releaseDomain`` to learn that it should look at its domains.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from spec import bv, trace
from spec.xenstore import paths, perms, quota, transaction, watch
from spec.xenstore.errors import XenstoreError
from spec.xenstore.transaction import Access, Transaction


@dataclass(frozen=True)
class Node:
    value: str
    acl: perms.Acl
    generation: int
    children: tuple[str, ...] = ()


@dataclass
class Domain:
    """An introduced domain: its ring (mfn), event channel and connection."""

    domid: int
    mfn: int
    port: int
    connection: "Connection"
    shutdown: bool = False


@dataclass(frozen=True)
class DomainState:
    """What xenstored learns of a domain from the hypervisor."""

    shutdown: bool
    dying: bool


ROOT_ACL = (perms.Perm(0, perms.NONE),)


class Store:
    """xenstored's state: the tree, the connections, the domains."""

    def __init__(self, emit: Callable[[trace.Event], None] | None = None,
                 quotas: quota.Quotas = quota.Quotas()) -> None:
        self.emit = emit or (lambda event: None)
        self.quotas = quotas
        self.generation = 1
        self.nodes: dict[str, Node] = {"/": Node("", ROOT_ACL, 1)}
        #: nodes owned per domid (the node quota's count)
        self.owned: dict[int, int] = {0: 1}
        self.special: dict[str, perms.Acl] = {name: ROOT_ACL for name in paths.SPECIAL}
        self.connections: list[Connection] = []
        self.domains: dict[int, Domain] = {}

    def connect(self, name: str = "tools", domid: int = 0) -> "Connection":
        """A new client connection (a socket client is dom0: the tools)."""
        conn = Connection(self, name, domid)
        self.connections.append(conn)
        return conn

    def disconnect(self, conn: "Connection") -> None:
        """A client went away: its watches and open transactions go with it."""
        conn.watches.clear()
        conn.transactions.clear()
        if conn in self.connections:
            self.connections.remove(conn)

    # --- the tree, seen directly or through a transaction ---------------------------

    def _next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def get(self, tx: Transaction | None, name: str) -> Node | None:
        """The node called ``name``; a transaction records what it saw."""
        node = (tx.nodes if tx else self.nodes).get(name)
        if tx is not None and name not in tx.accessed:
            tx.accessed[name] = Access(node.generation if node else transaction.ABSENT,
                                       acl=node.acl if node else None)
        return node

    def put(self, tx: Transaction | None, name: str, node: Node | None) -> None:
        """Replace (or with ``None`` remove) a node, charging its owner."""
        nodes, owned = (tx.nodes, tx.owned) if tx else (self.nodes, self.owned)
        old = self.get(tx, name)
        if old is not None:
            owned[old.acl[0].domid] -= 1
            del nodes[name]
        if node is not None:
            owned[node.acl[0].domid] = owned.get(node.acl[0].domid, 0) + 1
            nodes[name] = node
        if tx is not None:
            tx.accessed[name].written = True

    def lookup(self, conn: "Connection", tx: Transaction | None, name: str,
               need: int) -> Node | None:
        """``get_node``: the node if the connection has ``need`` on it;
        ``None`` if it is missing and the nearest existing ancestor would
        grant ``need``; ``EACCES`` otherwise."""
        node = self.get(tx, name)
        if node is not None:
            if not perms.allows(conn.domid, conn.privileged, node.acl, need):
                raise XenstoreError("EACCES", name)
            return node
        for ancestor in paths.ancestors(name):
            above = self.get(tx, ancestor)
            if above is not None:
                rights = perms.access(conn.domid, conn.privileged, above.acl)
                if rights & need:
                    return None
                raise XenstoreError("EACCES", name)
        raise XenstoreError("EIO", name, "no root node")  # the root always exists

    def create(self, conn: "Connection", tx: Transaction | None, name: str, value: str) -> Node:
        """``construct_node``/``create_node``: ``name`` and its missing
        ancestors, each with its parent's list."""
        missing = [name]
        while self.get(tx, paths.parent(missing[-1])) is None:
            missing.append(paths.parent(missing[-1]))
        owned = (tx.owned if tx else self.owned).get(conn.domid, 0)
        if not quota.within(conn.privileged, owned, len(missing), self.quotas.nodes):
            raise XenstoreError("ENOSPC", name, f"more than {self.quotas.nodes} nodes")
        parent_name = paths.parent(missing[-1])
        parent = self.get(tx, parent_name)
        for new in reversed(missing):
            node = Node(value if new == name else "",
                        perms.inherit(parent.acl, conn.domid, conn.privileged),
                        self._next_generation())
            self.put(tx, parent_name, dataclasses.replace(
                parent, children=parent.children + (paths.basename(new),),
                generation=self._next_generation()))
            self.put(tx, new, node)
            parent_name, parent = new, node
        return parent

    def subtree(self, tx: Transaction | None, name: str) -> list[str]:
        """``name`` and every node below it, deepest first."""
        order, stack = [], [name]
        while stack:
            here = stack.pop()
            order.append(here)
            node = self.get(tx, here)
            stack.extend(paths.child(here, c) for c in node.children)
        return order[::-1]

    # --- watches ---------------------------------------------------------------------

    def fire(self, tx: Transaction | None, name: str, exact: bool, node_acl,
             parent_acl, old_acl=None) -> None:
        """A change of ``name``: its watches fire now, or at the commit
        (once per node however often the transaction changed it,
        ``queue_watches``)."""
        if tx is not None:
            tx.fired[name] = tx.fired.get(name, True) and exact
            return
        for conn in list(self.connections):
            if not bv.concrete(watch.may_see(conn.domid, conn.privileged, node_acl,
                                             parent_acl, old_acl)):
                continue
            for w in conn.watches:
                if watch.fires(w.name, name, exact):
                    conn.queue_event(paths.relative_to(name, conn.domid) if w.relative
                                     else name, w.token)

    def fire_special(self, name: str) -> None:
        """``@introduceDomain`` or ``@releaseDomain``, to the watchers that
        may read the special node."""
        acl = self.special[name]
        for conn in list(self.connections):
            if not bv.concrete(perms.allows(conn.domid, conn.privileged, acl, perms.READ)):
                continue
            for w in conn.watches:
                if w.name == name:
                    conn.queue_event(name, w.token)

    # --- domains -----------------------------------------------------------------------

    def domain_exception(self, state: Callable[[int], DomainState | None]) -> None:
        """``VIRQ_DOM_EXC``: look at every introduced domain
        (``domain_cleanup``); one that newly shut down, or died, fires
        ``@releaseDomain``; a dead one is forgotten."""
        notify = False
        for domid in sorted(self.domains):
            domain, now = self.domains[domid], state(domid)
            if now is None or now.dying:
                self._forget(domain)
                notify = True
            elif now.shutdown and not domain.shutdown:
                domain.shutdown = True
                notify = True
        if notify:
            self.fire_special(paths.RELEASE_DOMAIN)

    def _forget(self, domain: Domain) -> None:
        self.disconnect(domain.connection)
        del self.domains[domain.domid]


class Connection:
    """One client of the store: its identity, watches, transactions and
    pending watch events. Every operation is a trace event; a refused one
    raises :class:`~spec.xenstore.errors.XenstoreError`."""

    def __init__(self, store: Store, name: str, domid: int) -> None:
        self.store = store
        self.name = name
        self.domid = domid
        #: the tools (dom0) bypass permissions and quotas
        self.privileged = domid == 0
        self.watches: list[watch.Watch] = []
        self.transactions: dict[int, Transaction] = {}
        self.events: deque[tuple[str, str]] = deque()
        #: called when an event is queued (the daemon wakes its writer)
        self.on_event: Callable[[], None] | None = None
        self._next_tx = 1

    # --- plumbing ----------------------------------------------------------------------

    def queue_event(self, path: str, token: str) -> None:
        self.events.append((path, token))
        self.store.emit(trace.XenstoreWatchEvent(client=self.name, path=path, token=token))
        if self.on_event is not None:
            self.on_event()

    def take_events(self) -> list[tuple[str, str]]:
        """The watch events waiting for this client, oldest first."""
        out = list(self.events)
        self.events.clear()
        return out

    def _trace(self, op: str, path: str, value: str) -> None:
        self.store.emit(trace.XenstoreOp(client=self.name, op=op, path=path, value=value))

    def _tx(self, tx: int) -> Transaction | None:
        if tx == 0:
            return None
        found = self.transactions.get(tx)
        if found is None:
            raise XenstoreError("ENOENT", "", f"no transaction {tx}")
        return found

    def _name(self, path: str, special: bool = False) -> str:
        return paths.canonicalize(path, self.domid, self.privileged, special)

    def _run(self, op: str, path: str, action: Callable[[], object],
             shown: Callable[[object], str] = lambda r: "") -> object:
        try:
            result = action()
        except XenstoreError as exc:
            self._trace(op, path, exc.errno)
            raise
        self._trace(op, path, shown(result))
        return result

    # --- the operations (XsClient) -----------------------------------------------------

    def read(self, path: str, tx: int = 0) -> str:
        """``XS_READ``: the node's value; needs read."""
        def action() -> str:
            node = self.store.lookup(self, self._tx(tx), self._name(path), perms.READ)
            if node is None:
                raise XenstoreError("ENOENT", path)
            return node.value
        return self._run("read", path, action, str)

    def write(self, path: str, value: str | bytes, tx: int = 0) -> None:
        """``XS_WRITE``: set (or create) the node; needs write."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")

        def action() -> None:
            store, t, name = self.store, self._tx(tx), self._name(path)
            size = len(value.encode("utf-8", "surrogateescape"))
            if not quota.within(self.privileged, 0, size, store.quotas.node_size):
                raise XenstoreError("ENOSPC", path, f"value over {store.quotas.node_size} bytes")
            node = store.lookup(self, t, name, perms.WRITE)
            if node is None:
                node = store.create(self, t, name, value)
            else:
                node = dataclasses.replace(node, value=value,
                                           generation=store._next_generation())
                store.put(t, name, node)
            store.fire(t, name, False, node.acl, store.get(t, paths.parent(name)).acl)
        self._run("write", path, action, lambda r: value)

    def mkdir(self, path: str, tx: int = 0) -> None:
        """``XS_MKDIR``: create the node with an empty value unless it exists."""
        def action() -> None:
            store, t, name = self.store, self._tx(tx), self._name(path)
            if store.lookup(self, t, name, perms.WRITE) is None:
                node = store.create(self, t, name, "")
                store.fire(t, name, False, node.acl, store.get(t, paths.parent(name)).acl)
        self._run("mkdir", path, action)

    def rm(self, path: str, tx: int = 0) -> None:
        """``XS_RM``: remove the node and its subtree; needs write on it."""
        def action() -> None:
            store, t, name = self.store, self._tx(tx), self._name(path)
            if name == "/":
                raise XenstoreError("EINVAL", path, "the root cannot be removed")
            if store.lookup(self, t, name, perms.WRITE) is None:
                if store.get(t, paths.parent(name)) is None:
                    raise XenstoreError("ENOENT", path)
                return
            for gone in store.subtree(t, name):
                node, above = store.get(t, gone), store.get(t, paths.parent(gone))
                store.fire(t, gone, gone != name, node.acl, above.acl)
                store.put(t, gone, None)
            parent = store.get(t, paths.parent(name))
            kept = tuple(c for c in parent.children if c != paths.basename(name))
            store.put(t, paths.parent(name), dataclasses.replace(
                parent, children=kept, generation=store._next_generation()))
        self._run("rm", path, action)

    def directory(self, path: str, tx: int = 0) -> list[str]:
        """``XS_DIRECTORY``: the children's names; needs read."""
        return self.directory_generation(path, tx)[1]

    def directory_generation(self, path: str, tx: int = 0) -> tuple[int, list[str]]:
        """The children's names and the node's generation
        (``XS_DIRECTORY_PART`` sends both, so that a client reading in parts
        can tell when the list changed under it)."""
        def action() -> tuple[int, list[str]]:
            node = self.store.lookup(self, self._tx(tx), self._name(path), perms.READ)
            if node is None:
                raise XenstoreError("ENOENT", path)
            return node.generation, list(node.children)
        return self._run("directory", path, action, lambda r: " ".join(r[1]))

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        """``XS_GET_PERMS``: the permission list; needs read."""
        def action() -> list[str]:
            name = self._name(path, special=True)
            if name[0] == "@":
                acl = self._special(name)
                if not perms.allows(self.domid, self.privileged, acl, perms.READ):
                    raise XenstoreError("EACCES", path)
                return perms.format_acl(acl)
            node = self.store.lookup(self, self._tx(tx), name, perms.READ)
            if node is None:
                raise XenstoreError("ENOENT", path)
            return perms.format_acl(node.acl)
        return self._run("get_perms", path, action, " ".join)

    def set_perms(self, path: str, acl: list[str] | perms.Acl, tx: int = 0) -> None:
        """``XS_SET_PERMS``: replace the list; needs write and ownership, and
        an unprivileged domain may not give the node away."""
        def action() -> None:
            store, name = self.store, self._name(path, special=True)
            new = perms.parse(list(acl)) if acl and isinstance(acl[0], str) else tuple(acl)
            if not new:
                raise XenstoreError("EINVAL", path, "no permissions")
            if not quota.within(self.privileged, 0, len(new), store.quotas.permissions):
                raise XenstoreError("ENOSPC", path,
                                    f"more than {store.quotas.permissions} permissions")
            if name[0] == "@":
                old = self._special(name)
                if not perms.may_set(self.domid, self.privileged, old, new[0].domid):
                    raise XenstoreError("EACCES" if not perms.allows(
                        self.domid, self.privileged, old, perms.WRITE | perms.OWNER)
                        else "EPERM", path)
                store.special[name] = new
                return
            t = self._tx(tx)
            node = store.lookup(self, t, name, perms.WRITE | perms.OWNER)
            if node is None:
                raise XenstoreError("ENOENT", path)
            if not perms.may_set(self.domid, self.privileged, node.acl, new[0].domid):
                raise XenstoreError("EPERM", path, "only the tools may change the owner")
            store.put(t, name, dataclasses.replace(node, acl=new,
                                                   generation=store._next_generation()))
            above = store.get(t, paths.parent(name)) if name != "/" else None
            store.fire(t, name, False, new, above.acl if above else None, node.acl)
        self._run("set_perms", path, action)

    def _special(self, name: str) -> perms.Acl:
        acl = self.store.special.get(name)
        if acl is None:
            raise XenstoreError("ENOENT", name)
        return acl

    def watch(self, path: str, token: str) -> None:
        """``XS_WATCH``: register, then the initial firing."""
        def action() -> watch.Watch:
            name = self._name(path, special=True)
            if any(w.name == name and w.token == token for w in self.watches):
                raise XenstoreError("EEXIST", path, f"already watched with token {token!r}")
            if not quota.within(self.privileged, len(self.watches), 1,
                                self.store.quotas.watches):
                raise XenstoreError("ENOSPC", path, f"more than {self.store.quotas.watches} "
                                    f"watches")
            w = watch.Watch(name, token, path[0] not in "/@")
            self.watches.append(w)
            return w
        w = self._run("watch", path, action, lambda r: token)
        self.queue_event(paths.relative_to(w.name, self.domid) if w.relative else w.name,
                         token)

    def unwatch(self, path: str, token: str) -> None:
        """``XS_UNWATCH``."""
        def action() -> None:
            name = self._name(path, special=True)
            for w in self.watches:
                if w.name == name and w.token == token:
                    self.watches.remove(w)
                    return
            raise XenstoreError("ENOENT", path, f"no watch with token {token!r}")
        self._run("unwatch", path, action, lambda r: token)

    def reset_watches(self) -> None:
        """``XS_RESET_WATCHES``: drop every watch and open transaction."""
        self.watches.clear()
        self.transactions.clear()
        self._trace("reset_watches", "", "")

    def transaction_start(self) -> int:
        """``XS_TRANSACTION_START``: a snapshot; the reply is its id."""
        def action() -> int:
            store = self.store
            if not quota.within(self.privileged, len(self.transactions), 1,
                                store.quotas.transactions):
                raise XenstoreError("ENOSPC", "", f"more than {store.quotas.transactions} "
                                    f"transactions")
            tx_id = self._next_tx
            self._next_tx = self._next_tx % 0xFFFFFFFF + 1
            self.transactions[tx_id] = Transaction(tx_id, dict(store.nodes), dict(store.owned))
            return tx_id
        return self._run("transaction_start", "", action, str)

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        """``XS_TRANSACTION_END``: ``commit`` makes the changes the store's
        if nothing the transaction read has changed since (else
        ``EAGAIN``) and no unprivileged domain would own more nodes than its
        quota with the counts now (else ``ENOSPC``); without it they are
        dropped."""
        def action() -> None:
            t = self._tx(tx)
            del self.transactions[tx]
            if not commit or t is None:
                return
            store = self.store
            checks = [(a.read, a.written, a.seen, _generation(store.nodes.get(name)))
                      for name, a in t.accessed.items()]
            if not bv.concrete(transaction.conflict_free(checks)):
                raise XenstoreError("EAGAIN", "", f"transaction {tx} conflicts")
            # the node quota again, on the counts now (acc_fix_domains): the
            # transaction checked its snapshot's, which others may have raised
            grows: dict[int, int] = {}
            for name, a in t.accessed.items():
                if a.written:
                    for node, by in ((store.nodes.get(name), -1), (t.nodes.get(name), 1)):
                        if node is not None:
                            owner = node.acl[0].domid
                            grows[owner] = grows.get(owner, 0) + by
            for owner, more in grows.items():
                if more > 0 and not quota.within(self.privileged, store.owned.get(owner, 0),
                                                 more, store.quotas.nodes):
                    raise XenstoreError("ENOSPC", "", f"transaction {tx}: more than "
                                        f"{store.quotas.nodes} nodes for domain {owner}")
            for name, a in t.accessed.items():
                if a.written:
                    node = t.nodes.get(name)
                    store.put(None, name, node and dataclasses.replace(
                        node, generation=store._next_generation()))
            # finalize_transaction: the queued firings in the order the
            # transaction first accessed the nodes, each seen by whoever may
            # read the node (its list then, or now) or, if it still exists,
            # its parent now
            for name, a in t.accessed.items():
                if name in t.fired:
                    node = store.nodes.get(name)
                    above = store.nodes.get(paths.parent(name)) if node and name != "/" \
                        else None
                    store.fire(None, name, t.fired[name], node and node.acl,
                               above and above.acl, a.acl)
        self._run("transaction_end", str(tx), action, lambda r: "T" if commit else "F")

    # --- domains -----------------------------------------------------------------------

    def introduce(self, domid: int, mfn: int, port: int) -> "Connection":
        """``XS_INTRODUCE`` (the tools only): a domain's ring is connected;
        ``@introduceDomain`` fires. The domain's connection is returned."""
        def action() -> Connection:
            store = self.store
            if not self.privileged:
                raise XenstoreError("EACCES", str(domid), "only the tools introduce domains")
            if not 0 < domid < 0x7FF0 or port <= 0:
                raise XenstoreError("EINVAL", str(domid), "bad domid or event channel")
            known = store.domains.get(domid)
            if known is not None:
                if (known.mfn, known.port) != (mfn, port):
                    raise XenstoreError("EINVAL", str(domid), "introduced with another ring")
                return known.connection
            conn = store.connect(f"dom{domid}", domid)
            store.domains[domid] = Domain(domid, mfn, port, conn)
            store.fire_special(paths.INTRODUCE_DOMAIN)
            return conn
        return self._run("introduce", str(domid), action, lambda r: f"{mfn} {port}")

    def release(self, domid: int) -> None:
        """``XS_RELEASE`` (the tools only): forget the domain's connection;
        ``@releaseDomain`` fires."""
        def action() -> None:
            store = self.store
            if not self.privileged:
                raise XenstoreError("EACCES", str(domid), "only the tools release domains")
            domain = store.domains.get(domid)
            if domain is None:
                raise XenstoreError("ENOENT", str(domid), "not introduced")
            store._forget(domain)
            store.fire_special(paths.RELEASE_DOMAIN)
        self._run("release", str(domid), action)

    def is_domain_introduced(self, domid: int) -> bool:
        """``XS_IS_DOMAIN_INTRODUCED`` (the tools only; dom0 always is)."""
        def action() -> bool:
            if not self.privileged:
                raise XenstoreError("EACCES", str(domid), "only the tools ask")
            return domid == 0 or domid in self.store.domains
        return self._run("is_domain_introduced", str(domid), action,
                         lambda r: "T" if r else "F")

    def get_domain_path(self, domid: int) -> str:
        """``XS_GET_DOMAIN_PATH``."""
        return self._run("get_domain_path", str(domid), lambda: paths.domain_path(domid), str)


def _generation(node: Node | None) -> int:
    return transaction.ABSENT if node is None else node.generation


def snapshot(store: Store) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The whole tree as ``name -> (value, permissions)``: what two stores
    must agree on to hold the same data."""
    return {name: (node.value, tuple(perms.format_acl(node.acl)))
            for name, node in store.nodes.items()}


def walk(store: Store, top: str = "/") -> Iterable[str]:
    """Every node name at or below ``top``, parents before children and
    children in the order they were created (as ``xenstore-ls`` lists)."""
    stack = [top]
    while stack:
        name = stack.pop()
        yield name
        stack.extend(paths.child(name, c) for c in reversed(store.nodes[name].children))
