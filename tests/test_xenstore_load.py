"""Load and faults: 32 clients at once on ``hvmspec xenstored``'s socket.

32 asyncio clients speak the raw wire protocol (:mod:`tests.xs_raw`) to the
daemon in a subprocess, 20,000 requests in all: reads, writes, mkdir, rm,
directory listings, watches and unwatches, and transactions retried on
``EAGAIN``; meanwhile *victim* clients connect, commit a write, leave a
transaction open, and die in the middle of a message (FIN or RST).

Which order did the daemon commit things in? The tree is split so that the
order is known without trusting the daemon:

* ``/load/priv/c<i>``: only client *i* changes it, with plain requests and
  transactions; one connection's requests are served in order, so its
  program order is the commit order. (Others read it inside their
  transactions, which makes those conflict.)
* ``/load/shared`` and ``/load/seq``: changed only by transactions that read
  ``/load/seq`` and write it back incremented, so two of them can commit only
  one after the other, and the value each read is its place in the order.

Checked afterwards: the committed shared transactions are numbered 0..K-1
without a gap; replaying them in that order gives, for each, exactly the
answers it got inside (so each ran on a consistent snapshot that was still
current at its commit); the final tree equals the replay of everything
committed (private regions by program order, the shared one by sequence,
the victims' completed writes) and holds nothing of an aborted, failed or
unfinished transaction or of a cut-off message; a plain read never saw a
value no committed transaction wrote; every watch got each event it should,
exactly once, in the order of the changes (compared change by change, the
events of one change as a multiset) and nothing else; the daemon logged one
drop per victim and nothing more.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.xs_raw import (DIRECTORY, GET_DOMAIN_PATH, MKDIR, READ, RM, TRANSACTION_END,
                          TRANSACTION_START, UNWATCH, WATCH, WRITE, AsyncClient, XsError,
                          message, spawn_daemon, split, z)

CLIENTS = 32
TOTAL = 20_000
SEED = 0x5EED
SHARED_WATCHERS = 8            # clients 0..7 also watch /load/seq and /load/shared


# --- the reference: a plain tree, written for this test -----------------------------

class Tree:
    """name -> [value, children in creation order]; the semantics of a dom0
    client: write creates missing parents, rm removes a subtree, a missing
    node under an existing parent is removed without complaint."""

    def __init__(self, nodes: dict | None = None) -> None:
        self.nodes = {k: [v[0], list(v[1])] for k, v in (nodes or {}).items()}

    def copy(self) -> "Tree":
        return Tree(self.nodes)

    @staticmethod
    def parent(name: str) -> str:
        return name.rsplit("/", 1)[0] or "/"

    def read(self, name: str) -> bytes:
        if name not in self.nodes:
            raise XsError("ENOENT")
        return self.nodes[name][0]

    def directory(self, name: str) -> list[str]:
        if name not in self.nodes:
            raise XsError("ENOENT")
        return list(self.nodes[name][1])

    def _create(self, name: str, value: bytes) -> None:
        up = self.parent(name)
        if up not in self.nodes:
            self._create(up, b"")
        self.nodes[up][1].append(name.rsplit("/", 1)[1])
        self.nodes[name] = [value, []]

    def write(self, name: str, value: bytes) -> list[tuple[str, bool]]:
        """The changes that fire watches: ``(name, exact)``."""
        if name in self.nodes:
            self.nodes[name][0] = value
        else:
            self._create(name, value)
        return [(name, False)]

    def mkdir(self, name: str) -> list[tuple[str, bool]]:
        if name in self.nodes:
            return []
        self._create(name, b"")
        return [(name, False)]

    def rm(self, name: str) -> list[tuple[str, bool]]:
        if name not in self.nodes:
            if self.parent(name) not in self.nodes:
                raise XsError("ENOENT")
            return []
        gone = [name]
        for here in gone:
            gone.extend(f"{here}/{c}" for c in self.nodes[here][1])
        for g in gone:
            del self.nodes[g]
        self.nodes[self.parent(name)][1].remove(name.rsplit("/", 1)[1])
        return [(g, g != name) for g in gone]

    def apply(self, op: str, name: str, value: bytes = b"") -> object:
        if op == "write":
            return self.write(name, value)
        return getattr(self, op)(name)

    def below(self, top: str) -> dict[str, bytes]:
        return {n: v[0] for n, v in self.nodes.items() if n == top or n.startswith(top + "/")}


def matches(watch: str, name: str, exact: bool) -> bool:
    if exact:
        return name == watch
    return name == watch or name.startswith(watch.rstrip("/") + "/")


def tx_firings(before: Tree, after: Tree, changes: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """What a committed transaction fires: once per node changed (a subtree
    firing wins over an exact one), and only for a node that existed when
    the transaction first saw it or exists after it (a dom0 watcher)."""
    fired: dict[str, bool] = {}
    for name, exact in changes:
        fired[name] = fired.get(name, True) and exact
    return [(n, e) for n, e in fired.items() if n in before.nodes or n in after.nodes]


# --- the clients -------------------------------------------------------------------------

class Load:
    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.rng = random.Random(SEED)
        #: seq -> (ops with their answers, value of /load/seq read)
        self.committed: dict[int, list] = {}
        self.shared_values: set[bytes] = set()      # written by committed shared tx
        self.doomed_values: set[bytes] = set()      # written by aborted/failed ones
        self.shared_reads: list[tuple[str, bytes | None]] = []
        self.cross_reads: list[tuple[str, bytes]] = []
        self.private_written: dict[str, set[bytes]] = {}
        self.stats = Counter()
        self.victims_done: dict[str, bytes] = {}
        self.victim_count = 0
        self.victims_clean = 0                      # had read all it was sent
        self.running = True

    # a client's private region and its own reference copy
    async def client(self, i: int, conn: AsyncClient, quota: int) -> None:
        rng = random.Random(SEED * 1000 + i)
        root = f"/load/priv/c{i}"
        mine = Tree({root: [b"", []]})
        churn: set[str] = set()
        n = 0

        def key() -> str:
            a = rng.choice("abcd")
            return f"{root}/{a}" if rng.random() < 0.5 else f"{root}/{a}/{rng.choice('xyz')}"

        def value() -> bytes:
            nonlocal n
            n += 1
            return f"c{i}:{n}".encode()

        while conn.requests < quota:
            r = rng.random()
            if r < 0.16:                                      # read
                name = key()
                try:
                    got = await conn.call(READ, z(name))
                except XsError as e:
                    assert e.errno == "ENOENT" and name not in mine.nodes, (name, e.errno)
                else:
                    assert got == mine.read(name), (name, got)
                self.stats["read"] += 1
            elif r < 0.38:                                    # write
                name, v = key(), value()
                assert await conn.call(WRITE, z(name) + v) == b"OK\0"
                self.private_written.setdefault(name, set()).add(v)
                self.own_change(i, mine.write(name, v))
                self.stats["write"] += 1
            elif r < 0.44:                                    # mkdir
                name = key()
                assert await conn.call(MKDIR, z(name)) == b"OK\0"
                self.own_change(i, mine.mkdir(name))
                self.stats["mkdir"] += 1
            elif r < 0.50:                                    # rm
                name = key()
                try:
                    assert await conn.call(RM, z(name)) == b"OK\0"
                except XsError as e:
                    assert e.errno == "ENOENT"
                    with pytest.raises(XsError):
                        mine.rm(name)
                else:
                    self.own_change(i, mine.rm(name))
                self.stats["rm"] += 1
            elif r < 0.58:                                    # directory
                name = rng.choice([root, key()])
                try:
                    got = split(await conn.call(DIRECTORY, z(name)))
                except XsError as e:
                    assert e.errno == "ENOENT" and name not in mine.nodes
                else:
                    assert got == mine.directory(name), (name, got)
                self.stats["directory"] += 1
            elif r < 0.64:                                    # watch churn on its own keys
                name = key()
                token = f"churn:{name}"
                if name in churn:
                    assert await conn.call(UNWATCH, z(name, token)) == b"OK\0"
                    churn.discard(name)
                    self.watches[i].remove((name, token))
                else:
                    assert await conn.call(WATCH, z(name, token)) == b"OK\0"
                    churn.add(name)
                    self.watches[i].append((name, token))
                    self.expect(i, i, [(name, token)])           # the initial firing
                self.stats["watch"] += 1
            elif r < 0.80:                                    # a private transaction
                await self.private_tx(i, conn, rng, mine, key, value)
            elif r < 0.90:                                    # a plain read of shared data
                name = self.shared_key(rng)
                try:
                    got = await conn.call(READ, z(name))
                except XsError as e:
                    assert e.errno == "ENOENT"
                    got = None
                self.shared_reads.append((name, got))
                self.stats["shared read"] += 1
            else:                                             # a shared transaction
                await self.shared_tx(i, conn, rng)
        self.final_private[i] = mine

    def shared_key(self, rng: random.Random) -> str:
        a = f"s{rng.randrange(6)}"
        return f"/load/shared/{a}" if rng.random() < 0.6 else \
            f"/load/shared/{a}/{rng.choice('xy')}"

    async def private_tx(self, i, conn, rng, mine: Tree, key, value) -> None:
        tx = int(split(await conn.call(TRANSACTION_START, b"\0"))[0])
        work, changes = mine.copy(), []
        for _ in range(rng.randrange(1, 5)):
            op, name = rng.choice(["read", "write", "write", "rm", "mkdir", "directory"]), key()
            if op in ("read", "directory"):
                try:
                    got = await conn.call(READ if op == "read" else DIRECTORY, z(name), tx)
                    got = got if op == "read" else split(got)
                except XsError as e:
                    got = e.errno
                try:
                    want = work.apply(op, name)
                except XsError as e:
                    want = e.errno
                assert got == want, (op, name, got, want)
                continue
            v = value() if op == "write" else b""
            payload = z(name) + v if op == "write" else z(name)
            try:
                assert await conn.call({"write": WRITE, "rm": RM, "mkdir": MKDIR}[op],
                                       payload, tx) == b"OK\0"
            except XsError as e:
                assert e.errno == "ENOENT" and op == "rm"
                with pytest.raises(XsError):
                    work.apply(op, name)
                continue
            changes += work.apply(op, name, v)
            if op == "write":
                self.private_written.setdefault(name, set()).add(v)
        commit = rng.random() < 0.8
        # nobody else changes this region: a commit cannot conflict
        assert await conn.call(TRANSACTION_END, z("T" if commit else "F"), tx) == b"OK\0"
        if commit:
            self.own_change(i, tx_firings(mine, work, changes))
            mine.nodes = work.nodes
            self.stats["private tx"] += 1
        else:
            self.stats["private tx aborted"] += 1

    async def shared_tx(self, i, conn, rng) -> None:
        tries = 0
        while True:
            tries += 1
            tx = int(split(await conn.call(TRANSACTION_START, b"\0"))[0])
            seq = int(await conn.call(READ, z("/load/seq"), tx))
            ops, written = [], []
            for _ in range(rng.randrange(1, 5)):
                r = rng.random()
                if r < 0.15:                                  # read another's private key
                    j = rng.randrange(CLIENTS)
                    name = f"/load/priv/c{j}/{rng.choice('abcd')}"
                    try:
                        got = await conn.call(READ, z(name), tx)
                        self.cross_reads.append((name, got))
                    except XsError as e:
                        assert e.errno == "ENOENT"
                    continue
                name = self.shared_key(rng)
                op = rng.choice(["read", "read", "write", "write", "write", "rm", "mkdir",
                                 "directory"])
                v = f"c{i}:tx{self.stats['attempt']}:{len(ops)}".encode()
                kind = {"read": READ, "write": WRITE, "rm": RM, "mkdir": MKDIR,
                        "directory": DIRECTORY}[op]
                if op == "directory":
                    name = name.rsplit("/", 1)[0] if rng.random() < 0.5 else name
                try:
                    got = await conn.call(kind, z(name) + (v if op == "write" else b""), tx)
                    if op == "directory":
                        got = split(got)
                except XsError as e:
                    got = e.errno
                ops.append((op, name, v if op == "write" else b"", got))
                if op == "write":
                    written.append(v)
            self.stats["attempt"] += 1
            assert await conn.call(WRITE, z("/load/seq") + str(seq + 1).encode(), tx) == b"OK\0"
            if rng.random() < 0.1:
                assert await conn.call(TRANSACTION_END, z("F"), tx) == b"OK\0"
                self.doomed_values.update(written)
                self.stats["shared tx aborted"] += 1
                return
            try:
                assert await conn.call(TRANSACTION_END, z("T"), tx) == b"OK\0"
            except XsError as e:
                assert e.errno == "EAGAIN"
                self.doomed_values.update(written)
                self.stats["EAGAIN"] += 1
                await asyncio.sleep(rng.uniform(0, 0.002 * 2 ** min(tries, 5)))  # back off
                continue
            assert seq not in self.committed, f"two commits read /load/seq = {seq}"
            self.committed[seq] = ops
            self.shared_values.update(written)
            self.stats["shared tx"] += 1
            return

    # expected events ------------------------------------------------------------------
    def own_change(self, source: int, changes: list[tuple[str, bool]]) -> None:
        """Client ``source`` changed its region: every watcher of it (itself
        and its neighbour) expects the matching events as one unit."""
        for watcher in (source, (source - 1) % CLIENTS):
            unit = [(name, token) for name, exact in changes
                    for wpath, token in self.watches[watcher] if matches(wpath, name, exact)]
            if unit:
                self.expect(watcher, source, unit)

    def expect(self, watcher: int, source: int | str, unit: list) -> None:
        self.expected.setdefault((watcher, source), []).append(unit)

    # victims ---------------------------------------------------------------------------
    async def victims(self) -> None:
        rng = random.Random(SEED + 7)
        while self.running:
            v = self.victim_count
            self.victim_count += 1
            reader, writer = await asyncio.open_unix_connection(self.sock)
            base = f"/load/victims/v{v}"
            req = message(WRITE, z(f"{base}/done") + b"complete", 1)
            writer.write(req)
            assert await reader.readexactly(19) == message(WRITE, b"OK\0", 1)
            self.victims_done[f"{base}/done"] = b"complete"
            if rng.random() < 0.5:                            # die inside a transaction
                writer.write(message(TRANSACTION_START, b"\0", 2))
                head = await reader.readexactly(16)
                tx = int((await reader.readexactly(struct.unpack("<4I", head)[3]))[:-1])
                writer.write(message(READ, z("/load/seq"), 3, tx))
                head = await reader.readexactly(16)
                seq = int(await reader.readexactly(struct.unpack("<4I", head)[3]))
                for payload in (z("/load/shared/s0") + b"victim", z(f"{base}/tx") + b"x",
                                z("/load/seq") + str(seq + 1).encode()):
                    writer.write(message(WRITE, payload, 4, tx))
                    await reader.readexactly(19)
                self.doomed_values.add(b"victim")
            unread = rng.random() < 0.5
            if unread:
                writer.write(message(WATCH, z("/load", "victim"), 5))   # never read
            else:
                self.victims_clean += 1
            partial = message(WRITE, z(f"{base}/partial") + b"p" * 200, 6)
            cut = rng.choice([rng.randrange(1, 16), rng.randrange(17, len(partial))])
            writer.write(partial[:cut])
            await writer.drain()
            await asyncio.sleep(0.005)
            sock = writer.get_extra_info("socket")
            if rng.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort() if rng.random() < 0.5 else writer.close()
            await asyncio.sleep(rng.uniform(0.01, 0.05))

    # the run -----------------------------------------------------------------------------
    async def run(self) -> None:
        setup = await AsyncClient().connect(self.sock)
        for path in ("/load/shared", "/load/victims"):
            await setup.call(MKDIR, z(path))
        await setup.call(WRITE, z("/load/seq") + b"0")
        for i in range(CLIENTS):
            await setup.call(MKDIR, z(f"/load/priv/c{i}"))
        self.watches = {i: [] for i in range(CLIENTS)}
        self.expected: dict = {}
        self.final_private: dict[int, Tree] = {}
        conns = [await AsyncClient().connect(self.sock) for _ in range(CLIENTS)]
        for i, conn in enumerate(conns):
            own = [(f"/load/priv/c{i}", "own"), (f"/load/priv/c{(i + 1) % CLIENTS}", "peer")]
            if i < SHARED_WATCHERS:
                own += [("/load/seq", "seq"), ("/load/shared", "sh")]
            for wpath, token in own:
                await conn.call(WATCH, z(wpath, token))
                self.watches[i].append((wpath, token))
            await conn.call(GET_DOMAIN_PATH, z("0"))
            assert conn.events == [(w, t) for w, t in own]      # the initial firings
            conn.events.clear()
            conn.requests = 0
        quota = TOTAL // CLIENTS
        victims = asyncio.create_task(self.victims())
        start = time.monotonic()
        await asyncio.gather(*(self.client(i, c, quota) for i, c in enumerate(conns)))
        self.elapsed = time.monotonic() - start
        self.running = False
        await victims
        self.requests = sum(c.requests for c in conns)
        for conn in conns:                                   # every event queued by now
            await conn.call(GET_DOMAIN_PATH, z("0"))
        self.received = {i: conn.events for i, conn in enumerate(conns)}
        self.final = await tree(setup, "/load")
        for conn in conns + [setup]:
            await conn.close()


async def tree(conn: AsyncClient, top: str) -> dict[str, bytes]:
    out = {top: await conn.call(READ, z(top))}
    for child in split(await conn.call(DIRECTORY, z(top))):
        out.update(await tree(conn, f"{top}/{child}"))
    return out


def source_of(path: str) -> int | str:
    if path == "/load/seq" or path.startswith("/load/shared"):
        return "shared"
    assert path.startswith("/load/priv/c"), path
    return int(path.split("/")[3][1:])


def check_units(received: list, units: list[list], what) -> None:
    """``received`` is the units in order, each unit's events in any order."""
    at = 0
    for k, unit in enumerate(units):
        got = received[at:at + len(unit)]
        assert Counter(got) == Counter(unit), (what, k, got, unit)
        at += len(unit)
    assert at == len(received), (what, "unexpected", received[at:at + 5])


@pytest.fixture
def sockdir():
    path = Path(tempfile.mkdtemp(prefix="xsl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_load_with_faults(sockdir):
    sock = sockdir / "sock"
    daemon = spawn_daemon(sock)
    load = Load(str(sock))
    try:
        asyncio.run(load.run())
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    log = daemon.stderr.read().splitlines()
    daemon.stdout.close()
    daemon.stderr.close()
    stats = load.stats
    print(f"\n{load.requests} requests by {CLIENTS} clients in {load.elapsed:.1f} s "
          f"({load.requests / load.elapsed:.0f}/s); {load.victim_count} victims; {dict(stats)}")
    assert load.requests >= TOTAL
    assert stats["shared tx"] > 100 and stats["EAGAIN"] > 0 and stats["private tx"] > 100
    verify(load)

    # the daemon: a drop line for each victim that had read everything it was
    # sent; one that dies with data unread may have its connection reset
    # (ECONNRESET) before the daemon reads the cut message, and is then
    # dropped without a line
    assert load.victims_clean <= len(log) <= load.victim_count, (len(log), load.victim_count)
    assert load.victims_clean > 10
    assert all(line.startswith("xenstored: dropped client tools: went away inside a")
               for line in log), [line for line in log if "went away" not in line][:3]
    assert load.elapsed < 60


def verify(load: Load) -> None:
    """Everything the run's answers, final tree and events must satisfy."""

    # the shared transactions: one order, no gap, each saw the state it should
    k = len(load.committed)
    assert sorted(load.committed) == list(range(k))
    shared = Tree({"/load/shared": [b"", []], "/load/seq": [b"0", []]})
    units = []
    for seq in range(k):
        before, work, changes = shared.copy(), shared.copy(), []
        for op, name, value, got in load.committed[seq]:
            try:
                fired = work.apply(op, name, value)
                want = b"OK\0" if op in ("write", "rm", "mkdir") else fired
                if op in ("write", "rm", "mkdir"):
                    changes += fired
            except XsError as e:
                want = e.errno
            assert got == want, (seq, op, name, got, want)
        changes += work.write("/load/seq", str(seq + 1).encode())
        units.append(tx_firings(before, work, changes))
        shared = work
    assert shared.read("/load/seq") == str(k).encode()

    # the final tree is the replay of everything committed, nothing else
    expected = {"/load": b"", "/load/priv": b"", "/load/victims": b""}
    expected.update(shared.below("/load/shared"))
    expected["/load/seq"] = shared.read("/load/seq")
    for mine in load.final_private.values():
        expected.update({n: v[0] for n, v in mine.nodes.items()})
    for name, v in load.victims_done.items():
        expected[name.rsplit("/", 1)[0]] = b""
        expected[name] = v
    assert load.final == expected
    assert not any(v in load.doomed_values for v in load.final.values())

    # reads outside transactions saw only committed values
    for name, got in load.shared_reads:
        assert got is None or got == b"" or got in load.shared_values, (name, got)
    assert all(got in load.private_written.get(name, set()) | {b""}
               for name, got in load.cross_reads)

    # watches: every event once, in order of the changes, nothing more
    for seq_units in units:
        for watcher in range(SHARED_WATCHERS):
            unit = [(name, token) for name, exact in seq_units
                    for wpath, token in (("/load/seq", "seq"), ("/load/shared", "sh"))
                    if matches(wpath, name, exact)]
            load.expect(watcher, "shared", unit)
    events = 0
    for watcher, got in load.received.items():
        by_source: dict = {}
        for path, token in got:
            by_source.setdefault(source_of(path), []).append((path, token))
        sources = set(by_source) | {s for (w, s) in load.expected if w == watcher}
        for source in sources:
            check_units(by_source.get(source, []), load.expected.get((watcher, source), []),
                        (watcher, source))
        events += len(got)
    assert events > 3000 * load.requests // TOTAL
    print(f"{k} shared transactions committed, {events} watch events checked")
