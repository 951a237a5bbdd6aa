"""qemu-dm's VNC display in a running domain (issue 20, item 4): ``hvmspec run
--vnc``, xm's ``vnc`` keys, XenStore, and a real client (vncdotool's
``vncdo``) that sees the guest's screen and types into it."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from hvmspec.vnc_display import VncBackend
from spec import dm_config, platform, trace
from spec.devices.kbc import Kbc8042
from spec.loader import load
from spec.xend import DomainConfig, XendError
from spec.xm_config import ConfigFileError, parse
from impl.kbc import Kbc
from tests.conftest import ROOT
from tests.test_vnc import Rfb

VNCDO = str(Path(sys.executable).with_name("vncdo"))
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def free_display() -> int:
    """A display whose port nothing listens on now."""
    for display in range(40, 400):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", platform.VNC_BASE_PORT + display))
            except OSError:
                continue
            return display
    raise AssertionError("no free VNC display")


def vncdo(port: int, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    cmd = [VNCDO, "-s", f"127.0.0.1::{port}"] + (["-p", password] if password else [])
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


class Run:
    """``hvmspec run ... --vnc :N`` in a subprocess, its serial output read
    as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "run", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=ENV)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = b""

    def wait_for(self, text: str, timeout: float = 60) -> None:
        end = time.time() + timeout
        while text.encode() not in self.out:
            assert time.time() < end, f"{text!r} never came: {self.out!r}"
            assert self.proc.poll() is None or self._read(), \
                f"the run ended: {self.out!r} {self.proc.stderr.read()!r}"
            self._read()
            time.sleep(0.05)

    def _read(self) -> bytes:
        chunk = self.proc.stdout.read() or b""
        self.out += chunk
        return chunk

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.out += out or b""
        return self.proc.returncode, self.out.decode("latin-1"), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.mark.parametrize("engine", ["impl", "reference"])
def test_a_vnc_client_types_into_the_guest_and_sees_its_screen(engine, tmp_path):
    """kbdecho echoes what vncdo types (keysyms -> set 2 -> the 8042's
    translation to set 1 -> the guest's table); the frame vncdo captures
    equals the run's --screenshot; Esc powers it off: exit 0."""
    display = free_display()
    run = Run("kbdecho", "--engine", engine, "--vnc", f":{display}", "--display", "off",
              "--screenshot", str(tmp_path / "end.png"))
    try:
        run.wait_for("kbdecho: ready\n")
        port = platform.VNC_BASE_PORT + display
        done = vncdo(port, "type", "hello 42", "key", "enter", "type", "xen")
        assert done.returncode == 0, done.stderr
        run.wait_for("hello 42\nxen")
        # the screen follows the serial echo within a display refresh: capture
        # until two captures agree
        shots: list[bytes] = []
        for i in range(40):
            assert vncdo(port, "capture", str(tmp_path / f"{i}.png")).returncode == 0
            shots.append(Image.open(tmp_path / f"{i}.png").convert("RGB").tobytes())
            if len(shots) > 1 and shots[-1] == shots[-2]:
                break
        assert vncdo(port, "key", "esc").returncode == 0
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    assert out.startswith("kbdecho: ready\nhello 42\nxen\nbye\n")
    assert "powered off" in out
    final = Image.open(tmp_path / "end.png").convert("RGB")
    assert final.size == (720, 400)
    assert shots[-1] == final.tobytes()
    assert f"display :{display} on 127.0.0.1:{port}" in err


def test_several_clients_and_bad_ones_dropped_alone(tmp_path):
    """Two clients with the password type in turn; clients with a wrong
    password, one that sends garbage and one that goes away in the middle of
    a message are dropped alone; the first keeps typing through the same
    connection and the guest goes on."""
    display = free_display()
    port = platform.VNC_BASE_PORT + display
    run = Run("kbdecho", "--vnc", f"127.0.0.1:{display}", "--vnc-password", "s3cret",
              "--display", "off")
    try:
        run.wait_for("kbdecho: ready\n")
        first = Rfb(port, password="s3cret")
        first.s.sendall(_key(ord("a")))
        run.wait_for("ready\na")
        assert vncdo(port, "type", "b", password="s3cret").returncode == 0
        run.wait_for("ready\nab")
        wrong = vncdo(port, "type", "z", password="guess")
        assert wrong.returncode != 0
        assert _wrong_answer(port) == (1, b"authentication failed", b"")
        garbage = Rfb(port, password="s3cret")
        garbage.s.sendall(b"\x09garbage")                  # no such message type
        cut = Rfb(port, password="s3cret")
        cut.s.sendall(_key(ord("q"))[:5])                   # half a KeyEvent, then gone
        cut.s.close()
        with pytest.raises(ConnectionError):
            garbage.recv(1)                                 # the server closed it
        first.s.sendall(_key(ord("c")) + _key(0xFF1B))      # c, then Esc
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    assert out.startswith("kbdecho: ready\nabc\nbye\n")
    assert "z" not in out.split("bye")[0]
    assert err.count("wrong password") == 2
    assert "dropped: unknown message type 9" in err and "went away" in err


def _wrong_answer(port: int) -> tuple[int, bytes, bytes]:
    """A hand-driven client answers the challenge with a wrong password:
    the security result, its reason, and what comes after (the close)."""
    from hvmspec.vnc import vnc_response
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.read(12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.008\n")
        assert f.read(2) == b"\x01\x02"               # one type: VNC authentication
        s.sendall(b"\x02")
        s.sendall(vnc_response("guess", f.read(16)))
        (result,) = struct.unpack(">I", f.read(4))
        (length,) = struct.unpack(">I", f.read(4))
        return result, f.read(length), f.read()


def _key(keysym: int) -> bytes:
    """A KeyEvent press and release."""
    return struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym)


def test_a_taken_display_is_refused_with_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        display = taken.getsockname()[1] - platform.VNC_BASE_PORT
        out = subprocess.run([sys.executable, "-m", "hvmspec.cli", "run", "hello", "--vnc",
                              f":{display}"], capture_output=True, text=True, cwd=ROOT,
                             env=ENV, timeout=60)
    assert out.returncode == 2
    assert f"cannot listen for VNC on 127.0.0.1:{display + 5900} (display {display})" \
        in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--vnc", "1"], "give a display as :N or HOST:N"),
    (["--vnc", ":70000"], "a display is 0..59635"),
    (["--vnc", "300.1.1.1:3"], "not an IPv4 address"),
    (["--vnc", "a b:3"], "not an IPv4 address or a host name"),
    (["--vnc-password", "x"], "--vnc-password goes with --vnc"),
    (["--vnc", ":3", "--vnc-password", "123456789"], "at most 8"),
])
def test_bad_vnc_options_exit_2(args, message):
    out = subprocess.run([sys.executable, "-m", "hvmspec.cli", "run", "hello", *args],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=60)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


# --- the configuration and XenStore ----------------------------------------------------------

def _cfg(**keys) -> str:
    return "\n".join(["builder = 'hvm'", "name = 'g'", "kernel = 'hello'",
                      *(f"{k} = {v!r}" for k, v in keys.items())]) + "\n"


def test_xm_keys_as_xen_3_0_4_gave_them():
    config = parse(_cfg(vnc=1))
    assert (config.vnc, config.vncunused, config.vncdisplay, config.vnclisten,
            config.vncpasswd) == (True, True, None, "127.0.0.1", "")
    config = parse(_cfg(vnc=1, vncunused=0, vncdisplay=7, vnclisten="0.0.0.0",
                        vncpasswd="pw", sdl=0))
    assert (config.vnc, config.vncunused, config.vncdisplay, config.vnclisten,
            config.vncpasswd) == (True, False, 7, "0.0.0.0", "pw")
    assert parse(_cfg()).vnc is False


@pytest.mark.parametrize("keys, message", [
    ({"vnc": 2}, "vnc = 2: expected 0 or 1"),
    ({"vnc": "yes"}, "vnc = 'yes': expected int or bool"),
    ({"vnc": 1, "vncdisplay": -1}, "a display is 0..59635"),
    ({"vnc": 1, "vnclisten": "here there"}, "not an IPv4 address or a host name"),
    ({"vnc": 1, "vncpasswd": "much too long"}, "at most 8"),
    ({"vnc": 1, "vncpasswd": "\u263a"}, "Latin-1"),
    ({"sdl": 1}, "sdl = 1: hvmspec has no SDL window"),
    ({"vnc": 1, "nographic": 1}, "vnc = 1 with no VGA"),
])
def test_bad_vnc_keys_name_the_key(keys, message):
    with pytest.raises(ConfigFileError, match=message):
        parse(_cfg(**keys), "g.cfg")


def _xs_ops(result, client: str) -> list[tuple[str, str, str]]:
    return [(e.op, e.path, e.value) for e in result.trace
            if isinstance(e, trace.XenstoreOp) and e.client == client]


@pytest.mark.parametrize("engine", ["reference", "impl"])
def test_xenstore_carries_the_display_and_qemu_dm_publishes_its_port(engine):
    """xend writes -vnc's stand-in and the password, qemu-dm reads them,
    blanks the password and publishes 5900 + the display it got: with
    vncunused, the first free display from 0 on."""
    from hvmspec.engines import runner
    backend = VncBackend()
    taken = []
    try:
        result = runner(engine)(load("hello"), device_model={
            "vnc": True, "vncpasswd": "pw", "vnclisten": "127.0.0.1"}, vnc=backend,
            keep_trace=True)
    finally:
        backend.close()
        for s in taken:
            s.close()
    vm = dm_config.vm_path("hello")
    written = dict((p, v) for op, p, v in _xs_ops(result, "xend") if op == "write")
    assert written[f"{vm}/image/device-model/vnc"] == "unused"
    assert written[f"{vm}/image/device-model/vnclisten"] == "127.0.0.1"
    assert written[f"{vm}/vncpasswd"] == "pw"
    ops = _xs_ops(result, "qemu-dm")
    assert ("read", f"{vm}/image/device-model/vnc", "unused") in ops
    assert ("read", f"{vm}/vncpasswd", "pw") in ops
    assert ("write", f"{vm}/vncpasswd", "") in ops          # blanked once read
    port = backend.consoles[1].port
    assert port >= platform.VNC_BASE_PORT
    published = ("write", "/local/domain/1/console/vnc-port", str(port))
    assert published in ops
    assert ops.index(published) < ops.index(
        ("write", "/local/domain/0/device-model/1/state", "running"))
    assert result.exit["reason"] == "poweroff"


def test_a_domain_without_vnc_says_none():
    from hvmspec.engines import runner
    result = runner("impl")(load("hello"), keep_trace=True)
    vm = dm_config.vm_path("hello")
    assert ("write", f"{vm}/image/device-model/vnc", "none") in _xs_ops(result, "xend")
    assert not any("vnc-port" in p or "vncpasswd" in p for _, p, _ in _xs_ops(result, "qemu-dm"))


def test_domain_config_checks_the_display():
    with pytest.raises(XendError, match="0..59635"):
        DomainConfig(name="g", vnc=True, vncdisplay=59636, vncunused=False)


# --- the pointer --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: Kbc8042(lambda level: None, lambda: None),
    lambda: Kbc(lambda level: None, lambda: None),
], ids=["reference", "impl"])
def test_pointer_events_become_ps2_packets_once_the_guest_enables_the_mouse(make):
    """A real RFB client moves the pointer; the console's items go to each
    engine's 8042 as qemu-dm gives them: nothing while the guest has not
    enabled the mouse, then relative packets with y up and VNC's buttons
    as PS/2's (VNC's right button, bit 2, is PS/2's bit 1)."""
    backend = VncBackend()
    console = backend(1, "127.0.0.1", 0, True, "")
    kbc = make()
    write = kbc.io_write if hasattr(kbc, "io_write") else kbc.write
    read = kbc.io_read if hasattr(kbc, "io_read") else kbc.read

    def deliver() -> None:
        deadline = time.time() + 10
        while not console._arrived.is_set():
            assert time.time() < deadline
            time.sleep(0.01)
        for item in console.take():
            assert item[0] == "mouse"
            kbc.send_mouse(*item[1:])

    def drain() -> list[int]:
        out = []
        while read(4, 1) & 0x01:
            out.append(read(0, 1))
        return out
    try:
        client = Rfb(console.port)
        client.s.sendall(struct.pack(">BBHH", 5, 0, 100, 100))   # where the pointer is
        client.s.sendall(struct.pack(">BBHH", 5, 0, 110, 95))
        time.sleep(0.2)
        deliver()
        assert drain() == []                    # reporting is off: dropped
        write(4, 1, 0xD4)
        write(0, 1, 0xF4)                       # enable data reporting
        assert drain() == [0xFA]
        client.s.sendall(struct.pack(">BBHH", 5, 4, 113, 101))    # right button, down-right
        deliver()
        assert drain() == [0x08 | 0x20 | 0x02, 3, (-6) & 0xFF]
    finally:
        backend.close()


# --- xm create with vnc = 1 ----------------------------------------------------------------

def _hvmspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hvmspec.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=120)


def test_xm_create_with_vnc_lists_the_address_and_takes_keys(tmp_path):
    """xend starts qemu-dm's display for a domain with vnc = 1 and
    vncunused = 0 on vncdisplay; xm list --json and --long show the
    address qemu-dm published; what a client types reaches the guest (xm
    console shows the echo); xm destroy closes the display."""
    display = free_display()
    config = tmp_path / "kb.cfg"
    config.write_text(_cfg(vnc=1, vncunused=0, vncdisplay=display, vncpasswd="pw")
                      .replace("'hello'", "'kbdecho'").replace("'g'", "'kb'"))
    xend = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "xend", "--dir",
                             str(tmp_path), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    port = platform.VNC_BASE_PORT + display
    try:
        assert json.loads(xend.stdout.readline())["pid"] == xend.pid
        created = _hvmspec("xm", "--dir", str(tmp_path), "create", str(config))
        assert created.returncode == 0, created.stderr
        reply = json.loads(_hvmspec("xm", "--dir", str(tmp_path), "list", "--json").stdout)
        row = {r["name"]: r for r in reply["domains"]}["kb"]
        assert (row["vnc"], row["vncdisplay"]) == (f"127.0.0.1:{port}", display)
        assert "vnc" not in {r["name"]: r for r in reply["domains"]}["Domain-0"]
        long = _hvmspec("xm", "--dir", str(tmp_path), "list", "--long").stdout
        assert f"    (vnc 127.0.0.1:{port})\n    (vncdisplay {display})\n" in long
        assert vncdo(port, "type", "xen3", password="pw").returncode == 0

        def console() -> str:
            return json.loads(_hvmspec("xm", "--dir", str(tmp_path), "console", "kb",
                                       "--json").stdout)["output"]
        end = time.time() + 30
        while "xen3" not in console():
            assert time.time() < end, console()
            time.sleep(0.2)
        assert _hvmspec("xm", "--dir", str(tmp_path), "destroy", "kb").returncode == 0
        end = time.time() + 30
        while True:             # qemu-dm is gone, and its display with it
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            assert time.time() < end
            time.sleep(0.2)
    finally:
        xend.terminate()
        _, err = xend.communicate(timeout=30)
    assert "Traceback" not in err
    assert f"display :{display} on 127.0.0.1:{port} (password)" in err


def test_xm_create_with_vncunused_takes_the_next_free_display(tmp_path):
    backend = VncBackend()
    with socket.socket() as taken:
        display = free_display()
        taken.bind(("127.0.0.1", platform.VNC_BASE_PORT + display))
        taken.listen()
        try:
            console = backend(1, "127.0.0.1", display, True, "")
            assert console.port == platform.VNC_BASE_PORT + display + 1
            from spec.dm_config import DeviceModelError
            with pytest.raises(DeviceModelError, match=r"cannot listen for VNC on "
                               rf"127.0.0.1:{platform.VNC_BASE_PORT + display} "):
                backend(2, "127.0.0.1", display, False, "")
        finally:
            backend.close()


def test_a_vnc_run_waits_for_keys_until_ctrl_c():
    """A guest that waits for keys is not 'hung' while a client may type:
    the run goes on (in real time, at no instruction cost) until Ctrl-C,
    which ends it with 130."""
    import signal
    display = free_display()
    run = Run("kbdecho", "--vnc", f":{display}", "--display", "off")
    try:
        run.wait_for("kbdecho: ready\n")
        time.sleep(1.5)
        assert run.proc.poll() is None                  # still waiting for a key
        assert vncdo(platform.VNC_BASE_PORT + display, "type", "k").returncode == 0
        run.wait_for("ready\nk")
        run.proc.send_signal(signal.SIGINT)
        code, out, err = run.finish(timeout=20)
    finally:
        run.kill()
    assert code == 130, err
    assert "hung" not in out + err and "Traceback" not in err
