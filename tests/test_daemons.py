"""The host's daemons as a user meets them: one xend or xenstored per socket,
xm finding its xend, and xm against a peer that misbehaves.

Every daemon runs as a user runs it (``hvmspec xenstored`` / ``hvmspec
xend`` in a subprocess); the misbehaving xend is a real Unix socket server
in the test that breaks the protocol on purpose. Each test leaves no
process, socket or pid file behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from tests.conftest import HVMSPEC
from tests.xs_raw import Client, spawn_daemon


@pytest.fixture
def sockdir():
    """A short directory for sockets (sun_path holds 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hvd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hvmspec(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """``hvmspec ARGS`` to its end; a daemon that does not refuse but serves
    is killed when the timeout expires, and the test fails."""
    proc = subprocess.Popen([HVMSPEC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, **(env or {})), cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"`hvmspec {' '.join(args)}` still ran after {timeout} s: {out}{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_xend(where: Path | None, env: dict | None = None) -> subprocess.Popen:
    """``hvmspec xend [--dir WHERE] --json``, once it is listening."""
    args = [HVMSPEC, "xend", "--json"] + (["--dir", str(where)] if where else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"xend did not start: {proc.communicate()[1]}")
    assert json.loads(line)["pid"] == proc.pid
    return proc


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, exit 0; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return err


def leftovers(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.is_socket() or p.suffix == ".pid")


# --- one daemon per socket ----------------------------------------------------------------

def test_a_second_xenstored_refuses_while_the_first_lives(sockdir):
    sock = sockdir / "sock"
    first = spawn_daemon(sock)
    try:
        with Client(sock) as c:
            c.write("/kept", "1")
        assert (sockdir / "sock.pid").read_text() == f"{first.pid}\n"
        second = hvmspec("xenstored", "--socket", str(sock), timeout=20)
        assert (second.returncode, second.stdout) == (2, "")
        assert second.stderr == (f"hvmspec: error: a xenstored is already serving {sock} "
                                 f"(pid {first.pid}): stop it first, or give another "
                                 f"--socket\n")
        # the first still has its socket, its pid file and its store
        with Client(sock) as c:
            assert c.read("/kept") == b"1"
        assert (sockdir / "sock.pid").read_text() == f"{first.pid}\n"
    finally:
        assert stop(first) == ""
    assert leftovers(sockdir) == []


def test_a_second_xend_refuses_while_the_first_lives(sockdir):
    first = start_xend(sockdir)
    try:
        second = hvmspec("xend", "--dir", str(sockdir), timeout=30)
        assert (second.returncode, second.stdout) == (2, "")
        assert second.stderr == (f"hvmspec: error: xend is already running in {sockdir} "
                                 f"(pid {first.pid}): stop it first, or give this one "
                                 f"another --dir\n")
        # nor may a xenstored take the XenStore socket of a running xend
        xsd = hvmspec("xenstored", "--socket", str(sockdir / "xenstored.sock"), timeout=20)
        assert xsd.returncode == 2
        assert f"already serving {sockdir / 'xenstored.sock'} (pid {first.pid})" in xsd.stderr
        listed = hvmspec("xm", "list", "--dir", str(sockdir), "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout)["ok"]
        with Client(sockdir / "xenstored.sock") as c:
            assert c.read("/local/domain/0/name") == b"Domain-0"
    finally:
        stop(first)
    assert leftovers(sockdir) == []


def test_a_stale_socket_is_taken_over(sockdir):
    """A daemon killed with SIGKILL leaves its socket and pid file; the
    next one, finding nothing listening, replaces them."""
    sock = sockdir / "sock"
    dead = spawn_daemon(sock)
    dead.kill()
    dead.communicate()
    assert sock.is_socket() and (sockdir / "sock.pid").read_text() == f"{dead.pid}\n"
    again = spawn_daemon(sock)
    try:
        with Client(sock) as c:
            c.write("/x", "1")
        assert (sockdir / "sock.pid").read_text() == f"{again.pid}\n"
    finally:
        stop(again)
    dead = start_xend(sockdir)
    dead.kill()
    dead.communicate()
    assert {"xend.sock", "xenstored.sock"} <= set(leftovers(sockdir))
    stop(start_xend(sockdir))
    assert leftovers(sockdir) == []


def test_a_live_socket_of_another_program_is_not_taken(sockdir):
    """Something that listens on the path without a pid file: refused with
    the listener's pid (asked of the kernel), the socket left alone."""
    sock = sockdir / "sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen()
    try:
        out = hvmspec("xenstored", "--socket", str(sock), timeout=20)
        assert out.returncode == 2
        assert f"already serving {sock} (pid {os.getpid()})" in out.stderr
        assert sock.is_socket()
        listener.settimeout(5)
        listener.accept()[0].close()          # still ours: the probe's connection
    finally:
        listener.close()
        sock.unlink()
    assert leftovers(sockdir) == []


def test_a_file_that_is_not_a_socket_is_not_replaced(sockdir):
    path = sockdir / "notes"
    path.write_text("mine")
    out = hvmspec("xenstored", "--socket", str(path), timeout=20)
    assert out.returncode == 2
    assert out.stderr == (f"hvmspec: error: cannot listen on {path}: it exists and is not "
                          f"a socket (not replacing it)\n")
    assert path.read_text() == "mine" and leftovers(sockdir) == []


def test_an_xend_that_cannot_start_gives_its_claims_back(sockdir):
    """Its trace file cannot be made: exit 2 naming it, and the sockets'
    pid files it had locked are gone, so the next xend starts."""
    out = hvmspec("xend", "--dir", str(sockdir), "--trace", "/nonexistent/t.jsonl")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (f"hvmspec: error: cannot start xend in {sockdir}: "
                          f"/nonexistent/t.jsonl: No such file or directory\n")
    assert leftovers(sockdir) == []
    stop(start_xend(sockdir))
    assert leftovers(sockdir) == []


def test_daemons_started_at_once_one_wins(sockdir):
    """Three xenstoreds started together for one socket: one serves, the
    others refuse and name it."""
    sock = sockdir / "sock"
    procs = [subprocess.Popen([HVMSPEC, "xenstored", "--socket", str(sock), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    try:
        lines = {p.pid: p.stdout.readline() for p in procs}
        winners = [p for p in procs if lines[p.pid]]
        assert len(winners) == 1, lines
        winner = winners[0]
        assert json.loads(lines[winner.pid])["pid"] == winner.pid
        for loser in procs:
            if loser is not winner:
                _, err = loser.communicate(timeout=20)
                assert loser.returncode == 2
                assert f"already serving {sock} (pid {winner.pid})" in err
        with Client(sock) as c:
            c.write("/x", "1")
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)
            else:
                p.communicate()
    assert leftovers(sockdir) == []


# --- xm finds xend ------------------------------------------------------------------------

def test_xm_takes_dir_after_the_subcommand_and_from_the_environment(sockdir):
    xend = start_xend(None, env={"HVMSPEC_DIR": str(sockdir)})   # xend reads it too
    try:
        assert (sockdir / "xend.sock").is_socket()
        after = hvmspec("xm", "list", "--dir", str(sockdir))
        assert after.returncode == 0, after.stderr
        assert after.stdout.splitlines()[1].split()[0] == "Domain-0"
        before = hvmspec("xm", "--dir", str(sockdir), "list")
        assert before.stdout == after.stdout
        from_env = hvmspec("xm", "list", env={"HVMSPEC_DIR": str(sockdir)})
        assert from_env.stdout == after.stdout
        # --dir wins over the variable
        elsewhere = sockdir / "elsewhere"
        wrong = hvmspec("xm", "list", "--dir", str(elsewhere),
                        env={"HVMSPEC_DIR": str(sockdir)})
        assert wrong.returncode == 2 and str(elsewhere / "xend.sock") in wrong.stderr
    finally:
        stop(xend)
    assert leftovers(sockdir) == []


def test_xm_without_xend_says_where_it_looked_and_how_to_point_it(sockdir):
    out = hvmspec("xm", "list", "--dir", str(sockdir))
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"hvmspec: error: no xend answers at {sockdir / 'xend.sock'} (No such file or "
        f"directory; the directory is given by --dir): start one with `hvmspec xend --dir "
        f"{sockdir}`, or point xm at the directory of a running one with --dir DIR or "
        f"HVMSPEC_DIR=DIR\n")
    env = hvmspec("xm", "list", env={"HVMSPEC_DIR": str(sockdir / "d")})
    assert env.returncode == 2
    assert f"no xend answers at {sockdir / 'd' / 'xend.sock'}" in env.stderr
    assert "the directory is given by $HVMSPEC_DIR" in env.stderr
    default = hvmspec("xm", "list", env={"HVMSPEC_DIR": "", "XDG_RUNTIME_DIR": str(sockdir)})
    assert default.returncode == 2
    assert (f"no xend answers at {sockdir / 'hvmspec' / 'xend.sock'} (No such file or "
            f"directory; the directory is the default, as neither --dir nor $HVMSPEC_DIR "
            f"is set)") in default.stderr


# --- xm against an xend that misbehaves ------------------------------------------------------

class BadXend:
    """A server on DIR/xend.sock that reads one request and answers with
    ``reply`` (bytes, sent as they are), then closes the connection."""

    def __init__(self, where: Path, reply: bytes) -> None:
        self.reply = reply
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(where / "xend.sock"))
        self.server.listen()
        self.path = where / "xend.sock"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            request = b""
            while not request.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                request += chunk
            self.requests.append(request)
            conn.sendall(self.reply)

    def close(self) -> None:
        self.thread.join(timeout=20)
        self.server.close()
        self.path.unlink()


@pytest.mark.parametrize("reply, message", [
    (b"", "closed the connection before it finished its reply to 'list' (0 bytes came)"),
    (b'{"ok": tr', "closed the connection before it finished its reply to 'list' "
                   "(9 bytes came)"),
    (b"Internal Server Error\n", "replied to 'list' with something that is not JSON: "
                                 "b'Internal Server Error'"),
    (b"\xff\xfe\n", "replied to 'list' with something that is not JSON: b'\\xff\\xfe'"),
    (b"[1, 2]\n", "replied to 'list' with JSON that is not an xm reply (an object with "
                  "'ok'): b'[1, 2]'"),
    (b'{"ok": false}\n', "replied to 'list' with JSON that is not an xm reply"),
    (b'{"ok": true}\n', "replied to 'list' with a reply xm cannot read (KeyError: "
                        "'domains')"),
    (b'{"ok": true, "domains": [{"name": 1}]}\n', "replied to 'list' with a reply xm "
                                                  "cannot read (KeyError: 'id')"),
])
def test_xm_against_an_xend_that_breaks_the_protocol(sockdir, reply, message):
    bad = BadXend(sockdir, reply)
    try:
        out = hvmspec("xm", "list", "--dir", str(sockdir))
    finally:
        bad.close()
    assert json.loads(bad.requests[0]) == {"cmd": "list"}
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("hvmspec: error: ") and out.stderr.count("\n") == 1
    assert message in out.stderr
    assert str(sockdir / "xend.sock") in out.stderr
