"""``hvmspec xenstored`` against its real peers and against bad clients.

(a) Debian's ``xenstore-utils`` unchanged, finding the daemon through
``XENSTORED_PATH``; (b) the ``pyxs`` client from PyPI; (c) malformed and
hostile input over a raw socket (:mod:`tests.xs_raw`), with a bystander
client connected throughout that must keep getting right answers. The
daemon runs as a user runs it (``hvmspec xenstored --socket PATH --json``
in a subprocess) or in a thread (:class:`hvmspec.xenstored.Thread`) where
the test needs to look inside or lower a limit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hvmspec import xenstored
from spec.xenstore import Store
from spec.xenstore.store import snapshot
from tests.conftest import peer, peer_module
from tests.xs_raw import (DIRECTORY, DIRECTORY_PART, ERROR, GET_DOMAIN_PATH, HEADER, READ,
                          TRANSACTION_START, WATCH, WATCH_EVENT, WRITE, Client, XsError,
                          message, spawn_daemon, split, z)


@pytest.fixture
def sockdir():
    """A short directory for sockets (sun_path holds 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="xsd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sockdir):
    """The daemon in a subprocess; its socket path. It must stop cleanly."""
    sock = sockdir / "sock"
    proc = spawn_daemon(sock)
    yield sock
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not sock.exists() and not Path(f"{sock}.pid").exists()
    assert proc.stderr.read() == ""                  # no client was dropped, no traceback
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture
def threaded(sockdir):
    """The daemon in a thread, its store and its log lines at hand."""
    store = Store()
    thread = xenstored.Thread(store, sockdir / "sock")
    log: list[str] = []
    thread.daemon.log = log.append
    thread.start()
    thread.log = log
    thread.sock = sockdir / "sock"
    yield thread
    thread.stop()


# --- (a) Debian's xenstore-utils ----------------------------------------------------

def xs(tool: str, *args: str, sock: Path, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([peer(f"xenstore-{tool}"), *args], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, XENSTORED_PATH=str(sock)))
    if check_rc is not None:
        assert proc.returncode == check_rc, (tool, args, proc)
    return proc


def out(tool: str, *args: str, sock: Path) -> str:
    proc = xs(tool, *args, sock=sock)
    assert proc.stderr == ""
    return proc.stdout


def test_tools_write_read_list_exists_rm(daemon):
    assert out("write", "/vm/name", "hvm", "/vm/memory", "512", sock=daemon) == ""
    assert out("read", "/vm/name", "/vm/memory", sock=daemon) == "hvm\n512\n"
    assert out("read", "-p", "/vm/name", sock=daemon) == "/vm/name: hvm\n"
    assert out("list", "/vm", sock=daemon) == "name\nmemory\n"
    assert out("list", "-p", "/vm", sock=daemon) == "/vm/name\n/vm/memory\n"
    assert xs("exists", "/vm/name", sock=daemon).returncode == 0
    assert xs("exists", "/vm/nope", sock=daemon, check_rc=1).stdout == ""
    assert out("rm", "/vm/nope", sock=daemon) == ""                   # parent exists
    assert out("rm", "/vm/memory", sock=daemon) == ""
    assert out("list", "/vm", sock=daemon) == "name\n"
    with Client(daemon) as c:                                         # and on the wire
        assert c.tree("/vm") == {"/vm": b"", "/vm/name": b"hvm"}


def test_tools_failures(daemon):
    cases = [
        (("read", "/vm/zz"), "xenstore-read: couldn't read path /vm/zz\n"),
        (("list", "/zz"), "xenstore-list: could not list path /zz\n"),
        (("rm", "/zz/yy"), "xenstore-rm: could not remove path /zz/yy\n"),
        (("write", "/bad/", "x"), "xenstore-write: could not write path /bad/\n"),
        (("ls", "/zz"), "xenstore-ls: xs_directory (/zz): No such file or directory\n"),
    ]
    for args, message_ in cases:
        proc = xs(*args, sock=daemon, check_rc=1)
        assert (proc.stdout, proc.stderr) == ("", message_), args


def test_tools_ls(daemon):
    xs("write", "/vm/name", "hvm", "/vm/memory", "512", "/vm/dev/vif", "0", sock=daemon)
    assert out("ls", "/vm", sock=daemon) == \
        'name = "hvm"\nmemory = "512"\ndev = ""\n vif = "0"\n'
    assert out("ls", "-f", "/vm", sock=daemon) == \
        '/vm/name = "hvm"\n/vm/memory = "512"\n/vm/dev = ""\n/vm/dev/vif = "0"\n'
    assert out("ls", sock=daemon) == \
        'vm = ""\n name = "hvm"\n memory = "512"\n dev = ""\n  vif = "0"\n'
    xs("chmod", "/vm/name", "n0", "r5", "w6", sock=daemon)
    assert out("ls", "-p", "/vm", sock=daemon) == (
        'name = "hvm" . . . . . . . . . . . . . . . . . . . . . . . .  (n0,r5,w6)\n'
        'memory = "512" . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n'
        'dev = "" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n'
        ' vif = "0" . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n')


def test_tools_rm_tidy_and_chmod_recursive(daemon):
    xs("write", "/a/b/c", "x", "/k", "", sock=daemon)
    xs("rm", "-t", "/a/b/c", sock=daemon)                # removes the emptied parents too
    assert out("ls", "-f", sock=daemon) == '/k = ""\n'
    xs("write", "/vm/x", "1", "/vm/y/z", "2", sock=daemon)
    xs("chmod", "-r", "/vm", "b7", sock=daemon)
    with Client(daemon) as c:
        assert [c.get_perms(p) for p in ("/vm", "/vm/x", "/vm/y", "/vm/y/z")] == [["b7"]] * 4
        assert c.get_perms("/k") == ["n0"]


def test_tools_binary_and_escaped_values(daemon):
    with Client(daemon) as c:
        c.write("/bin", b"a\x01b\nc\\")
    assert out("read", "/bin", sock=daemon) == "a\\001b\\nc\\\\\n"   # the tool escapes
    assert out("read", "-R", "/bin", sock=daemon) == "a\x01b\nc\\"       # -R: raw, no newline
    xs("write", "/esc", "x\\001y", sock=daemon)                      # and unescapes
    with Client(daemon) as c:
        assert c.read("/esc") == b"x\x01y"


def test_tools_through_a_domain_ring(daemon):
    """xenstore-chmod by the tools, then a client of domain 5's ring
    (``XENSTORED_PATH=SOCK.d5``) is refused or allowed as the list says."""
    ring = Path(f"{daemon}.d5")
    assert not ring.exists()
    with Client(daemon) as c:
        c.mkdir("/local/domain/5")
        c.set_perms("/local/domain/5", ["n5"])
        c.introduce(5, 0xfeffe, 3)
    assert ring.exists()
    xs("write", "/vm/name", "hvm", sock=daemon)
    assert xs("read", "/vm/name", sock=ring, check_rc=1).stderr == \
        "xenstore-read: couldn't read path /vm/name\n"
    xs("chmod", "/vm/name", "n0", "r5", sock=daemon)
    assert out("read", "/vm/name", sock=ring) == "hvm\n"
    assert xs("write", "/vm/name", "by5", sock=ring, check_rc=1).stderr == \
        "xenstore-write: could not write path /vm/name\n"
    assert xs("chmod", "/vm/name", "n0", "b5", sock=ring, check_rc=1).stderr.endswith(
        "Permission denied\n")                               # not the owner: EACCES
    xs("chmod", "/vm/name", "n5", sock=daemon)              # now it owns it
    assert xs("chmod", "/vm/name", "n0", "b5", sock=ring, check_rc=1).stderr.endswith(
        "Operation not permitted\n")                         # may not give it away: EPERM
    assert out("chmod", "/vm/name", "n5", "r6", sock=ring) == ""
    xs("write", "/vm/name", "by5", sock=ring)
    assert out("read", "/vm/name", sock=daemon) == "by5\n"
    # relative paths are the domain's home
    xs("write", "device/vif/0", "mac", sock=ring)
    assert out("read", "/local/domain/5/device/vif/0", sock=daemon) == "mac\n"
    assert out("ls", "-p", "/local/domain/5", sock=ring) == \
        out("ls", "-p", "/local/domain/5", sock=daemon) == (
        'device = ""  . . . . . . . . . . . . . . . . . . . . . . . .  (n5)\n'
        ' vif = ""  . . . . . . . . . . . . . . . . . . . . . . . . .  (n5)\n'
        '  0 = "mac"  . . . . . . . . . . . . . . . . . . . . . . . .  (n5)\n')
    assert xs("ls", "/", sock=ring, check_rc=1).stderr == \
        "xenstore-ls: xs_directory (/): Permission denied\n"
    with Client(daemon) as c:
        c.release(5)
    assert not ring.exists()
    assert xs("read", "/vm/name", sock=ring, check_rc=1).returncode == 1


def test_tools_watch(daemon):
    xs("write", "/vm/a", "1", sock=daemon)
    watch = subprocess.Popen([peer("xenstore-watch"), "-n", "4", "/vm"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, XENSTORED_PATH=str(daemon)))
    try:
        assert watch.stdout.readline() == "/vm\n"              # the initial firing
        xs("write", "/vm/b/c", "2", sock=daemon)
        xs("write", "/other", "not watched", sock=daemon)
        xs("chmod", "/vm/a", "n0", "r1", sock=daemon)
        xs("rm", "/vm/b", sock=daemon)
        stdout, stderr = watch.communicate(timeout=20)
    finally:
        watch.kill()
    assert watch.returncode == 0 and stderr == ""
    assert stdout == "/vm/b/c\n/vm/a\n/vm/b\n"


def test_tools_watch_special_node(daemon):
    watch = subprocess.Popen([peer("xenstore-watch"), "-n", "3", "@introduceDomain"],
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, XENSTORED_PATH=str(daemon)))
    try:
        assert watch.stdout.readline() == "@introduceDomain\n"
        with Client(daemon) as c:
            c.introduce(7)
            c.introduce(8)
        stdout, _ = watch.communicate(timeout=20)
    finally:
        watch.kill()
    assert stdout == "@introduceDomain\n@introduceDomain\n"


# --- (b) pyxs ------------------------------------------------------------------------

@pytest.fixture
def pyxs():
    return peer_module("pyxs")


def test_pyxs_basic_operations(pyxs, daemon):
    with pyxs.Client(unix_socket_path=str(daemon)) as c:
        c.write(b"/vm/name", b"hvm")
        c[b"/vm/memory"] = b"512"
        assert c.read(b"/vm/name") == b"hvm" and c[b"/vm/memory"] == b"512"
        assert c.read(b"/vm/nope", b"default") == b"default"
        with pytest.raises(pyxs.PyXSError) as info:
            c.read(b"/vm/nope")
        assert info.value.args == (2, "No such file or directory")
        c.mkdir(b"/vm/dev/vbd")
        assert c.list(b"/vm") == [b"name", b"memory", b"dev"]
        assert c.list(b"/vm/dev/vbd") == []
        assert c.exists(b"/vm/dev") and not c.exists(b"/nope")
        c.delete(b"/vm/dev")
        c.delete(b"/vm/dev")                                   # gone already: fine
        with pytest.raises(pyxs.PyXSError) as info:
            c.delete(b"/nope/deeper")
        assert info.value.args[0] == 2
        assert list(c.walk(b"/vm")) == [(b"/vm", b"", [b"name", b"memory"]),
                                        (b"/vm/name", b"hvm", []),
                                        (b"/vm/memory", b"512", [])]
        with pytest.raises(pyxs.PyXSError) as info:
            c.execute_command(pyxs._internal.Op.READ, b"/bad/\0")   # the daemon says EINVAL
        assert info.value.args[0] == 22
    with Client(daemon) as raw:
        assert raw.tree("/vm") == {"/vm": b"", "/vm/name": b"hvm", "/vm/memory": b"512"}


def test_pyxs_permissions(pyxs, daemon):
    with pyxs.Client(unix_socket_path=str(daemon)) as c:
        c.write(b"/p", b"v")
        assert c.get_perms(b"/p") == [b"n0"]
        c.set_perms(b"/p", [b"n0", b"r5", b"b6"])
        assert c.get_perms(b"/p") == [b"n0", b"r5", b"b6"]
        assert c.get_perms(b"@releaseDomain") == [b"n0"]
        c.mkdir(b"/local/domain/5")
        c.set_perms(b"/local/domain/5", [b"n5"])
        c.introduce_domain(5, 0xfeffe, 3)
        assert c.is_domain_introduced(5) and not c.is_domain_introduced(6)
        assert c.get_domain_path(5) == b"/local/domain/5"
    ring = f"{daemon}.d5"
    with pyxs.Client(unix_socket_path=ring) as d:              # domain 5's ring
        assert d.read(b"/p") == b"v"
        with pytest.raises(pyxs.PyXSError) as info:
            d.write(b"/p", b"no")
        assert info.value.args[0] == 13                        # EACCES
        with pytest.raises(pyxs.PyXSError) as info:
            d.read(b"/hidden/missing")
        assert info.value.args[0] == 13                        # not ENOENT: / is n0
        d.write(b"data", b"relative")
        assert d.read(b"/local/domain/5/data") == b"relative"
        assert d.get_perms(b"data") == [b"n5"]
        with pytest.raises(pyxs.PyXSError) as info:
            d.set_perms(b"data", [b"n6"])
        assert info.value.args[0] == 1                         # EPERM


def test_pyxs_transactions(pyxs, daemon):
    with pyxs.Client(unix_socket_path=str(daemon)) as c, \
            pyxs.Client(unix_socket_path=str(daemon)) as other:
        c.write(b"/n", b"0")
        assert c.transaction() == 1
        c.write(b"/n", b"1")
        c.write(b"/m", b"in tx")
        assert other.read(b"/n") == b"0" and not other.exists(b"/m")
        assert c.commit() is True
        assert other.read(b"/n") == b"1" and other.read(b"/m") == b"in tx"
        c.transaction()
        c.write(b"/m", b"dropped")
        c.rollback()
        assert other.read(b"/m") == b"in tx"
        c.transaction()
        assert c.read(b"/n") == b"1"
        other.write(b"/n", b"5")
        c.write(b"/n", b"2")
        assert c.commit() is False                             # EAGAIN
        assert other.read(b"/n") == b"5"
        tries = 0
        while True:                                            # the retry loop
            tries += 1
            c.transaction()
            c.write(b"/n", str(int(c.read(b"/n")) + 1).encode())
            if tries == 1:
                other.write(b"/n", b"10")                      # spoils the first try
            if c.commit():
                break
        assert (tries, other.read(b"/n")) == (2, b"11")


def test_pyxs_watches(pyxs, daemon):
    with pyxs.Client(unix_socket_path=str(daemon)) as c, \
            pyxs.Client(unix_socket_path=str(daemon)) as writer:
        with c.monitor() as m:
            m.watch(b"/vm", b"tok")
            m.watch(b"@releaseDomain", b"rel")
            events = m.wait()
            assert next(events) == (b"/vm", b"tok")
            assert next(events) == (b"@releaseDomain", b"rel")
            writer.write(b"/vm/a", b"1")
            assert next(events) == (b"/vm/a", b"tok")
            writer.transaction()
            writer.write(b"/vm/b", b"1")
            writer.write(b"/vm/b", b"2")
            writer.write(b"/vm/c", b"1")
            assert writer.commit()
            assert [next(events), next(events)] == [(b"/vm/b", b"tok"), (b"/vm/c", b"tok")]
            writer.introduce_domain(9, 1, 1)
            raw = Client(daemon)
            raw.release(9)                     # pyxs releases only where /proc/xen says dom0
            raw.close()
            assert next(events) == (b"@releaseDomain", b"rel")
            writer.delete(b"/vm")
            assert next(events) == (b"/vm", b"tok")
            assert m.watched == {b"/vm", b"@releaseDomain"}
        # the monitor unwatched on leaving: nothing more is queued for it
        writer.write(b"/vm/x", b"1")
        assert c.read(b"/vm/x") == b"1"
        assert m.events.empty()


def test_pyxs_compat_interface(pyxs, daemon, monkeypatch):
    """``pyxs.xs``, the ``xen.lowlevel.xs`` interface, finds the daemon
    through XENSTORED_PATH as libxenstore does."""
    monkeypatch.setenv("XENSTORED_PATH", str(daemon))
    handle = pyxs.xs()
    try:
        handle.write(0, b"/c", b"v")
        assert handle.read(0, b"/c") == b"v"
        assert handle.ls(0, b"/") == [b"c"]
        assert handle.ls(0, b"/nope") is None
        tx = handle.transaction_start()
        handle.write(tx, b"/c", b"w")
        assert handle.transaction_end(tx) is True
        assert handle.read(0, b"/c") == b"w"
        token = object()
        handle.watch(b"/c", token)
        assert handle.read_watch() == (b"/c", token)
    finally:
        handle.close()


# --- (c) malformed and hostile clients ----------------------------------------------

class Bystander:
    """A client connected throughout, with the writes it committed."""

    def __init__(self, sock: Path) -> None:
        self.client = Client(sock)
        self.committed: dict[str, bytes] = {}
        self.n = 0
        self.client.watch("/by", "by")
        assert self.client.sync() == [("/by", "by")]

    def step(self) -> None:
        """One more write, every earlier one still there, and its watch
        event."""
        self.n += 1
        path, value = f"/by/{self.n}", f"v{self.n}".encode()
        self.client.write(path, value)
        self.committed[path] = value
        assert self.client.sync() == [(path, "by")]
        tree = self.client.tree("/by")
        assert {p: v for p, v in tree.items() if p != "/by"} == self.committed


@pytest.fixture
def bystander(threaded):
    by = Bystander(threaded.sock)
    by.step()
    yield by
    by.step()
    by.client.close()


def raw_socket(sock: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock))
    return s


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def reset(s: socket.socket) -> None:
    """Close with a RST instead of a FIN (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_overlong_header_drops_that_client_only(threaded, bystander):
    bad = raw_socket(threaded.sock)
    with Client(threaded.sock) as c:
        c.write("/before", "kept")
    bad.sendall(HEADER.pack(READ, 1, 0, 4097))
    assert closed_by_peer(bad)
    bad.close()
    wait_for(lambda: threaded.log)
    assert threaded.log == ["dropped client tools: a XS_READ message of 4097 bytes (at most 4096)"]
    assert threaded.daemon.dropped == 1
    bystander.step()
    with Client(threaded.sock) as c:
        assert c.read("/before") == b"kept"


def test_largest_payload_is_accepted(threaded, bystander):
    with Client(threaded.sock) as c:
        value = b"x" * (4096 - len(b"/big\0"))
        c.write("/big", value)                               # 4096 bytes of payload
        assert c.read("/big") == value
        assert c.call(WRITE, z("/huge") + b"x" * 4090) == b"OK\0"
        assert c.read("/huge") == b"x" * 4090
    assert threaded.daemon.dropped == 0


def test_reply_over_payload_max_is_e2big_and_directory_part_pages(threaded, bystander):
    with Client(threaded.sock) as c:
        names = [f"child-with-a-long-name-{i:04d}" for i in range(200)]   # ~6 KB listing
        for name in names:
            c.mkdir(f"/many/{name}")
        with pytest.raises(XsError) as info:
            c.directory("/many")
        assert info.value.errno == "E2BIG"
        got, offset, generations = [], 0, set()
        while True:
            reply = c.call(DIRECTORY_PART, z("/many", str(offset)))
            generation, rest = reply.split(b"\0", 1)
            generations.add(generation)
            if rest == b"\0":
                break
            chunk = rest[:-1] if rest.endswith(b"\0\0") else rest
            assert len(reply) <= 4096
            got += split(chunk)
            offset += len(chunk)
        assert got == names and len(generations) == 1


def test_path_without_nul_is_einval(threaded, bystander):
    with Client(threaded.sock) as c:
        c.write("/a", "v")
        for kind, payload in ((READ, b"/a"), (DIRECTORY, b"/"), (READ, b""), (WRITE, b"/a"),
                              (READ, b"/a\0extra\0"), (TRANSACTION_START, b"x\0")):
            with pytest.raises(XsError) as info:
                c.call(kind, payload)
            assert info.value.errno == "EINVAL", (kind, payload)
        assert c.read("/a") == b"v"                          # still in step
    assert threaded.daemon.dropped == 0


def test_unknown_types_are_enosys(threaded, bystander):
    with Client(threaded.sock) as c:
        for kind in (99, 20, WATCH_EVENT, ERROR, 0, 18, 19, 23, 26, 0xFFFFFFFF):
            rid = c.send(kind, b"/\0")
            got, req_id, tx, payload = c.receive()
            assert (got, req_id, tx, payload) == (ERROR, rid, 0, b"ENOSYS\0"), kind
        assert c.directory("/") == ["by"]


def test_numbers_that_are_not_ascii_digits_are_einval(threaded, bystander):
    with Client(threaded.sock) as c:
        for payload in ("²\0", "٣\0"):
            with pytest.raises(XsError) as info:
                c.call(GET_DOMAIN_PATH, payload.encode())
            assert info.value.errno == "EINVAL"
        with pytest.raises(XsError):
            c.call(DIRECTORY_PART, "/\0²\0".encode())
        with pytest.raises(XsError) as info:
            c.set_perms("/by", ["r²"])
        assert info.value.errno == "EINVAL"
        assert c.read("/by/1") == b"v1"
    assert threaded.daemon.dropped == 0


def test_replies_echo_req_id_and_tx_id(threaded, bystander):
    with Client(threaded.sock) as c:
        s = c.sock
        s.sendall(message(TRANSACTION_START, b"\0", req_id=0xdeadbeef))
        kind, rid, tx, payload = c.receive()
        assert (kind, rid, tx) == (TRANSACTION_START, 0xdeadbeef, 0)
        txid = int(split(payload)[0])
        s.sendall(message(WRITE, z("/t") + b"v", req_id=7, tx=txid))
        assert c.receive() == (WRITE, 7, txid, b"OK\0")
        s.sendall(message(READ, z("/t"), req_id=8, tx=txid + 100))
        assert c.receive() == (ERROR, 8, txid + 100, b"ENOENT\0")
        s.sendall(message(TRANSACTION_START, b"\0", req_id=9, tx=txid))
        assert c.receive() == (ERROR, 9, txid, b"EBUSY\0")   # no nesting
        c.end(txid)
        assert c.read("/t") == b"v"


def test_pipelined_and_byte_by_byte_requests(threaded, bystander):
    with Client(threaded.sock) as c:
        burst = b"".join(message(WRITE, z(f"/p/{i}") + str(i).encode(), req_id=i)
                         for i in range(50))
        c.sock.sendall(burst)
        for i in range(50):
            assert c.receive() == (WRITE, i, 0, b"OK\0")
        one = message(READ, z("/p/42"), req_id=77)
        for i in range(len(one)):
            c.sock.send(one[i:i + 1])
            time.sleep(0.001)
        assert c.receive() == (READ, 77, 0, b"42")


@pytest.mark.parametrize("cut", ["header", "payload", "header-rst", "payload-rst"])
def test_client_gone_mid_message(threaded, bystander, cut):
    victim = raw_socket(threaded.sock)
    victim.sendall(message(WRITE, z("/victim/done") + b"complete"))
    assert victim.recv(100) == HEADER.pack(WRITE, 0, 0, 3) + b"OK\0"
    tx_msg = message(TRANSACTION_START, b"\0", req_id=1)
    victim.sendall(tx_msg)
    kind, _, _, length = HEADER.unpack(victim.recv(16))
    txid = int(victim.recv(length)[:-1])
    victim.sendall(message(WRITE, z("/victim/in-tx") + b"never", req_id=2, tx=txid))
    victim.recv(19)
    partial = message(WRITE, z("/victim/partial") + b"x" * 100, req_id=3)
    victim.sendall(partial[:7] if cut.startswith("header") else partial[:60])
    if cut.endswith("rst"):
        reset(victim)
    else:
        victim.close()
    wait_for(lambda: threaded.log)
    where = "a header (7 of 16 bytes)" if cut.startswith("header") \
        else "a XS_WRITE message (44 of 116 bytes)"
    assert threaded.log == [f"dropped client tools: went away inside {where}"]
    bystander.step()
    with Client(threaded.sock) as c:
        assert c.tree("/victim") == {"/victim": b"", "/victim/done": b"complete"}
    wait_for(lambda: len(threaded.daemon.store.connections) == 1)   # the bystander alone


def test_client_gone_between_messages_is_not_a_drop(threaded, bystander):
    for how in (socket.socket.close, reset):
        s = raw_socket(threaded.sock)
        s.sendall(message(WRITE, z("/clean") + b"v"))
        assert s.recv(19) == HEADER.pack(WRITE, 0, 0, 3) + b"OK\0"
        how(s)
    bystander.step()
    assert threaded.log == [] and threaded.daemon.dropped == 0


def test_flooding_client_that_never_reads_is_dropped(threaded, bystander, monkeypatch):
    """Requests whose replies are never read: once more than MAX_UNSENT
    bytes wait for it, the client is dropped; its completed requests stay."""
    monkeypatch.setattr(xenstored, "MAX_UNSENT", 8192)
    with Client(threaded.sock) as c:
        c.write("/fat", b"f" * 4000)
    flood = raw_socket(threaded.sock)
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = message(READ, z("/fat"))
    sent = 0
    try:
        while not threaded.log and sent < 100_000:
            flood.sendall(request * 50)
            sent += 50
    except (BrokenPipeError, ConnectionResetError):
        pass
    wait_for(lambda: threaded.log)
    assert threaded.log == ["dropped client tools: does not read its replies or events (8192 bytes wait)"]
    flood.close()
    bystander.step()
    with Client(threaded.sock) as c:
        assert c.read("/fat") == b"f" * 4000


def test_watcher_that_never_reads_is_dropped(threaded, bystander, monkeypatch):
    """A watcher whose events pile up beyond MAX_UNSENT is dropped too
    (the events are queued by other clients' requests, not its own)."""
    monkeypatch.setattr(xenstored, "MAX_UNSENT", 65536)
    lazy = raw_socket(threaded.sock)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.sendall(message(WATCH, z("/", "t" * 2000)))
    with Client(threaded.sock) as c:
        for i in range(2000):
            c.write(f"/spam/{i}", "x")
            if threaded.log:
                break
    wait_for(lambda: threaded.log)
    assert threaded.log == ["dropped client tools: does not read its replies or events "
                            "(65536 bytes wait)"]
    assert closed_by_peer_eventually(lazy)
    bystander.step()
    with Client(threaded.sock) as c:
        assert len(c.directory("/spam")) == i + 1


def closed_by_peer_eventually(s: socket.socket) -> bool:
    s.settimeout(10)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


# --- the daemon's own life ------------------------------------------------------------

def test_ring_socket_is_that_domain(threaded, bystander):
    ring = Path(f"{threaded.sock}.d5")
    with Client(threaded.sock) as tools:
        tools.mkdir("/local/domain/5")
        tools.set_perms("/local/domain/5", ["n5"])
        tools.write("/secret", "s")
        tools.introduce(5, 77, 4)
        assert ring.exists()
        d = Client(ring)
        d.write("name", "guest")
        assert tools.read("/local/domain/5/name") == b"guest"
        assert tools.get_perms("/local/domain/5/name") == ["n5"]
        for op, args in ((d.read, ("/secret",)), (d.introduce, (6,)), (d.release, (5,))):
            with pytest.raises(XsError) as info:
                op(*args)
            assert info.value.errno == "EACCES"
        d.watch("name", "rel")
        assert d.sync() == [("name", "rel")]
        tools.write("/local/domain/5/name", "renamed")
        assert d.sync() == [("name", "rel")]
        assert len([c for c in threaded.daemon.store.connections if c.domid == 5]) == 2
        tools.release(5)                       # its ring goes, and its clients with it
        assert not ring.exists()
        assert closed_by_peer(d.sock)
        d.close()
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            Client(ring)
        assert threaded.daemon.call(lambda: sorted(threaded.daemon.store.domains)) == []


def test_thread_daemon_store_is_shared_with_its_host(threaded):
    """An engine beside the daemon changes the store on the daemon's loop;
    socket clients see it, and its watch fires for them."""
    store = threaded.daemon.store
    with Client(threaded.sock) as c:
        c.watch("/vm", "t")
        assert c.sync() == [("/vm", "t")]
        threaded.daemon.call(lambda: store.connect("xend").write("/vm/1/name", "from the host"))
        assert c.read("/vm/1/name") == b"from the host"
        assert c.sync() == [("/vm/1/name", "t")]
    assert snapshot(store)["/vm/1/name"] == ("from the host", ("n0",))


def test_daemon_stops_on_sigint_and_replaces_a_stale_socket(sockdir):
    """A socket nobody listens on is replaced (a live one is not, nor a
    file that is no socket: tests/test_daemons.py)."""
    sock = sockdir / "sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    assert sock.is_socket()
    proc = spawn_daemon(sock)
    try:
        with Client(sock) as c:
            c.write("/x", "1")
            assert c.read("/x") == b"1"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert not sock.exists() and not (sockdir / "sock.pid").exists()


def test_daemon_stops_cleanly_with_clients_connected(sockdir):
    """SIGTERM while clients are connected (one in a transaction, one
    watching, one half-way through a message, one on a domain's ring):
    exit 0, the sockets gone, no asyncio traceback on stderr."""
    sock = sockdir / "sock"
    proc = spawn_daemon(sock)
    a, b, c = Client(sock), Client(sock), raw_socket(sock)
    a.mkdir("/local/domain/5")
    a.set_perms("/local/domain/5", ["n5"])
    a.introduce(5)
    ring = Client(f"{sock}.d5")
    tx = a.start()
    a.write("/x", "in tx", tx)
    b.watch("/", "all")
    c.sendall(message(WRITE, z("/x") + b"y" * 10)[:20])
    ring.write("name", "dom5")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not sock.exists() and not Path(f"{sock}.d5").exists()
    # the cut message is logged as the client's (the daemon's closing ended it)
    assert proc.stderr.read() == \
        "xenstored: dropped client tools: went away inside a XS_WRITE message (4 of 13 bytes)\n"
    for client in (a, b, ring):
        client.close()
    c.close()


def test_daemon_without_json_and_bad_socket_dir(sockdir):
    from tests.conftest import cli
    proc = cli("xenstored", "--socket", str(sockdir / "nodir" / "sock"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"hvmspec: error: {sockdir / 'nodir'} is not a directory\n"
