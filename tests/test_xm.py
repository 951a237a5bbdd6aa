"""xend and xm: a host process that runs domains, driven by `hvmspec xm`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HVMSPEC, peer


@pytest.fixture
def xend(tmp_path):
    proc = subprocess.Popen([HVMSPEC, "xend", "--dir", str(tmp_path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = json.loads(proc.stdout.readline())
    assert ready["xend"] == str(tmp_path / "xend.sock")
    yield tmp_path
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # no socket or pid file is left behind
    assert [p.name for p in tmp_path.iterdir()
            if p.is_socket() or p.suffix == ".pid"] == []


def xm(where: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([HVMSPEC, "xm", "--dir", str(where), *args], capture_output=True,
                         text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def rows(where: Path) -> dict[str, dict]:
    reply = json.loads(xm(where, "list", "--json").stdout)
    assert reply["ok"]
    return {row["name"]: row for row in reply["domains"]}


def until(predicate, timeout: float = 60.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def spin_config(tmp_path: Path, name: str = "spin", **extra) -> Path:
    (tmp_path / "spin.s").write_text("spin:\n    jmp spin\n")
    lines = [f"builder = 'hvm'", f"name = '{name}'", f"kernel = '{tmp_path / 'spin.s'}'",
             "memory = 4"] + [f"{k} = {v!r}" for k, v in extra.items()]
    path = tmp_path / f"{name}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_create_paused_list_unpause_and_power_off(xend):
    out = xm(xend, "create", "-p", "demo")
    assert out.stdout == "Started domain demo (id=1)\n"
    table = xm(xend, "list").stdout.splitlines()
    assert table[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
    assert table[1].split() == ["Domain-0", "0", "0", "1", "r-----", "0.0"]
    assert table[2].split() == ["demo", "1", "16", "1", "--p---", "0.0"]
    xm(xend, "unpause", "demo")
    # the guest powers itself off; on_poweroff = 'destroy'
    until(lambda: "demo" not in rows(xend))
    console = json.loads(xm(xend, "console", "1", "--json").stdout)["output"]
    assert console.startswith("Hello") or "demo" in console.lower()


def test_the_domain_is_in_xenstore_for_the_xen_tools(xend):
    peer("xenstore-read")
    xm(xend, "create", "-p", "demo")
    env = dict(os.environ, XENSTORED_PATH=str(xend / "xenstored.sock"))
    read = lambda path: subprocess.run(["xenstore-read", path], env=env, capture_output=True,
                                       text=True).stdout.strip()
    assert read("/local/domain/1/name") == "demo"
    assert read("/local/domain/1/memory/target") == str(16 << 10)
    vm = read("/local/domain/1/vm")
    assert read(f"{vm}/image/ostype") == "hvm"
    assert read("/local/domain/0/device-model/1/state") == "running"
    perms = subprocess.run(["xenstore-ls", "-p", "/local/domain/1"], env=env,
                           capture_output=True, text=True).stdout
    assert "(n1)" in perms and "(r1)" in perms
    xm(xend, "destroy", "demo")
    gone = subprocess.run(["xenstore-read", "/local/domain/1/name"], env=env,
                          capture_output=True, text=True)
    assert gone.returncode != 0


def test_a_guest_reboot_restarts_with_a_new_domid_once(xend):
    xm(xend, "create", "reboot")
    events = until(lambda: [e for e in json.loads(xm(xend, "history", "--json").stdout)
                            ["events"] if "too fast" in e["reason"]] and
                   json.loads(xm(xend, "history", "--json").stdout)["events"])
    moves = [(e["dom"], e["old"], e["new"], e["reason"]) for e in events]
    assert moves[:5] == [(1, "none", "created", ""), (1, "created", "running", ""),
                         (1, "running", "shutdown", "reboot"),
                         (1, "shutdown", "dying", "on_reboot = restart"),
                         (2, "none", "created", "")]
    assert (1, "dying", "destroyed", "released") in moves
    refusal = next(m for m in moves if "too fast" in m[3])
    assert refusal[:3] == (2, "dying", "dying")
    assert "refusing to restart to avoid loops" in refusal[3]
    assert moves[-1] == (2, "dying", "destroyed", "released")
    assert "reboot" not in rows(xend)


def test_pause_unpause_shutdown_reboot_destroy(xend, tmp_path):
    cfg = spin_config(tmp_path, on_reboot="restart", on_poweroff="destroy")
    xm(xend, "create", str(cfg))
    assert rows(xend)["spin"]["state"] == "r-----"
    xm(xend, "pause", "spin")
    assert rows(xend)["spin"]["state"] == "--p---"
    refused = xm(xend, "pause", "spin", check=False)
    assert refused.returncode == 1 and "is paused, not running" in refused.stderr
    xm(xend, "unpause", "1")
    xm(xend, "reboot", "spin")
    new = until(lambda: rows(xend).get("spin", {}).get("id", 1) != 1 and rows(xend)["spin"])
    assert new["id"] == 2
    xm(xend, "shutdown", "spin")
    until(lambda: "spin" not in rows(xend))
    xm(xend, "create", str(cfg))
    xm(xend, "destroy", "spin")
    assert "spin" not in rows(xend)


def test_several_domains_at_once(xend, tmp_path):
    xm(xend, "create", str(spin_config(tmp_path, "a")))
    xm(xend, "create", str(spin_config(tmp_path, "b")))
    xm(xend, "create", "-p", "demo")
    table = rows(xend)
    assert [table[n]["id"] for n in ("a", "b", "demo")] == [1, 2, 3]
    again = xm(xend, "create", str(spin_config(tmp_path, "a")), check=False)
    assert again.returncode == 1
    assert again.stderr == "hvmspec: error: a domain named 'a' already exists (domain 1)\n"


def test_errors(xend, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("builder = 'hvm'\nname = 'x'\nkernel = 'hello'\nmemroy = 4\n")
    out = xm(xend, "create", str(bad), check=False)
    assert out.returncode == 2 and f"{bad}:4: unknown key 'memroy'" in out.stderr
    out = xm(xend, "create", str(tmp_path / "missing.cfg"), check=False)
    assert out.returncode == 2 and "cannot read" in out.stderr
    out = xm(xend, "destroy", "nosuch", check=False)
    assert out.returncode == 1
    assert out.stderr == "hvmspec: error: domain 'nosuch' does not exist\n"


def test_a_binary_config_is_refused_naming_the_file(tmp_path):
    """Before any xend is asked: bytes that are not UTF-8, or a NUL."""
    png = tmp_path / "picture.cfg"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    out = xm(tmp_path, "create", str(png), check=False)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (f"hvmspec: error: {png}: not a text file: byte 0x89 at offset 0 "
                          f"is not UTF-8 (an xm configuration is text: key = value lines)\n")
    zeros = tmp_path / "zeros.cfg"
    zeros.write_bytes(b"builder = 'hvm'\n" + bytes(64))
    out = xm(tmp_path, "create", str(zeros), check=False)
    assert out.returncode == 2
    assert out.stderr == (f"hvmspec: error: {zeros}:2: not a text file: a NUL byte (an xm "
                          f"configuration is text: key = value lines)\n")


def test_a_kernel_that_does_not_load_is_a_bad_configuration(xend, tmp_path):
    """Exit 2 (a bad configuration file), naming the file and the kernel;
    xend keeps no trace of the attempt."""
    (tmp_path / "bad.s").write_text("    mov ax, \n")
    (tmp_path / "big.bin").write_bytes(bytes(0x60000))
    cases = {"missing": ("nosuch.s", "guest file '{k}' does not exist"),
             "broken": ("bad.s", "bad.s"),
             "toobig": ("big.bin", "guest image is 393216 bytes, larger than")}
    for name, (kernel, message) in cases.items():
        cfg = tmp_path / f"{name}.cfg"
        cfg.write_text(f"builder = 'hvm'\nname = '{name}'\nkernel = '{kernel}'\n")
        out = xm(xend, "create", str(cfg), check=False)
        resolved = str(tmp_path / kernel)
        assert (out.returncode, out.stdout) == (2, ""), out.stderr
        assert out.stderr.startswith(f"hvmspec: error: {cfg}: kernel {resolved!r}: ")
        assert message.format(k=resolved) in out.stderr
        assert out.stderr.count("\n") == 1 or name == "broken"
    assert list(rows(xend)) == ["Domain-0"]


def test_a_domain_qemu_dm_cannot_serve_leaves_no_ghost(xend, tmp_path):
    """qemu-dm refuses the domain after Xen built it (map-everything of more
    memory than a 32-bit qemu-dm holds): a bad configuration, exit 2, and the
    half-made domain is undone: not listed, its name free, nothing of it in
    XenStore's domains."""
    cfg = tmp_path / "big.cfg"
    cfg.write_text("builder = 'hvm'\nname = 'big'\nkernel = 'hello'\nmemory = 3000\n"
                   "map_everything = 1\n")
    for _ in range(2):                      # the second is refused the same way
        out = xm(xend, "create", str(cfg), check=False)
        assert (out.returncode, out.stdout) == (2, "")
        assert out.stderr == (f"hvmspec: error: {cfg}: map-everything mode: the guest's 3000 "
                              f"MiB do not fit a 32-bit qemu-dm's 2304 MiB of address space "
                              f"for guest memory; use the mapcache\n")
        assert list(rows(xend)) == ["Domain-0"]
    moves = [(e["dom"], e["old"], e["new"]) for e in
             json.loads(xm(xend, "history", "--json").stdout)["events"]]
    assert moves == [(1, "none", "created"), (1, "created", "dying"),
                     (1, "dying", "destroyed")] + [(2, "none", "created"),
                                                   (2, "created", "dying"),
                                                   (2, "dying", "destroyed")]


def test_a_relative_kernel_is_found_beside_its_config(xend, tmp_path):
    """xend runs elsewhere (here, the test's working directory); xm runs in
    a third directory and names the config by a relative path."""
    guests = tmp_path / "guests"
    guests.mkdir()
    (guests / "spin.s").write_text("spin:\n    jmp spin\n")
    (guests / "rel.cfg").write_text("builder = 'hvm'\nname = 'rel'\nkernel = 'spin.s'\n"
                                    "memory = 4\n")
    out = subprocess.run([HVMSPEC, "xm", "create", "guests/rel.cfg", "--dir", str(xend)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert rows(xend)["rel"]["state"] == "r-----"
    xm(xend, "destroy", "rel")


def test_domain_names_xend_refuses(xend, tmp_path):
    """As Xen 3.x's xend (XendDomainInfo._checkName): empty, characters
    other than letters, digits and _-.:/+, and Domain-0 (dom0's); and here a
    name too long for XenStore. All exit 2 with the file and line."""
    for name, message in [("", "name is empty"),
                          ("Domain-0", "name 'Domain-0' is dom0's, the host's own domain"),
                          ("a b", "name 'a b': ' ' is not allowed"),
                          ("x" * 5000, "name is 5000 characters long: at most 4050")]:
        cfg = spin_config(tmp_path, "spin")
        cfg.write_text(cfg.read_text().replace("name = 'spin'", f"name = {name!r}"))
        out = xm(xend, "create", str(cfg), check=False)
        assert (out.returncode, out.stdout) == (2, "")
        assert out.stderr.startswith(f"hvmspec: error: {cfg}:2: {message}"), out.stderr
    assert list(rows(xend)) == ["Domain-0"]
    # '/' is one of the characters xend allowed
    cfg = spin_config(tmp_path, "spin")
    cfg.write_text(cfg.read_text().replace("name = 'spin'", "name = 'web/1'"))
    xm(xend, "create", str(cfg))
    assert rows(xend)["web/1"]["id"] == 1
    xm(xend, "destroy", "web/1")


def test_domain_0_is_not_a_guest(xend):
    for command in ("destroy", "pause", "shutdown"):
        for which in ("Domain-0", "0"):
            out = xm(xend, command, which, check=False)
            assert out.returncode == 1
            what = "shut down" if command == "shutdown" else command
            assert out.stderr == f"hvmspec: error: cannot {what} privileged domain 0 " \
                                 f"(Domain-0)\n"
    assert rows(xend)["Domain-0"]["state"] == "r-----"


def test_a_restart_that_fails_leaves_xend_serving(xend, tmp_path):
    """The kernel is gone when the domain reboots: the restart fails, the
    domain stays dead, xend goes on (the fixture checks it exits 0)."""
    cfg = spin_config(tmp_path, on_reboot="restart")
    xm(xend, "create", str(cfg))
    (tmp_path / "spin.s").unlink()
    xm(xend, "reboot", "spin")
    failed = until(lambda: [e for e in json.loads(xm(xend, "history", "--json").stdout)
                            ["events"] if e["reason"].startswith("restart failed")])
    assert f"guest file '{tmp_path / 'spin.s'}' does not exist" in failed[0]["reason"]
    until(lambda: "spin" not in rows(xend))


# --- xm configuration files ------------------------------------------------------------

from spec import loader  # noqa: E402
from spec.xm_config import ConfigFileError, parse  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "guests" / "configs"


@pytest.mark.parametrize("name", loader.bundled_guests())
def test_every_bundled_guest_has_a_config(name):
    config = parse((CONFIGS / f"{name}.cfg").read_text(), f"{name}.cfg")
    image = loader.load(config.kernel)
    assert config.name == name and image.name == name
    assert config.memory_mib == (image.memory_mib or config.memory_mib)


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\nkernel = 'hello'\n", "builder = None: this is an HVM toolstack"),
    ("builder = 'linux'\nname = 'x'\n", "builder = 'linux'"),
    ("builder = 'hvm'\nkernel = 'hello'\n", "name is required"),
    ("builder = 'hvm'\nname = 'x'\nmemory = '16'\n", "c.cfg:3: memory = '16': expected int"),
    ("builder = 'hvm'\nname = 'x'\nmemory = 0\n", "memory = 0 MiB: at least"),
    ("builder = 'hvm'\nname = 'x'\non_reboot = 'reset'\n", "on_reboot = 'reset': must be one of"),
    ("builder = 'hvm'\nname = 'x'\nimport os\n", "c.cfg:3: only 'key = value' lines"),
    ("builder = 'hvm'\nname = 'x'\nmemory = 4 * 4\n", "c.cfg:3: memory: the value must be a literal"),
    ("builder = 'hvm'\nname = 'x\n", "c.cfg:2:"),
])
def test_bad_configs_say_where_and_why(text, message):
    with pytest.raises(ConfigFileError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse(text, "c.cfg")


def test_nographic_and_vga():
    base = "builder = 'hvm'\nname = 'x'\n"
    assert parse(base).vga is True
    assert parse(base + "vga = 0\n").vga is False
    assert parse(base + "nographic = 1\n").vga is False
    assert parse(base + "map_everything = 1\ndevice_model_bits = 64\n").map_everything is True


def test_kernel_hvmloader_boots_debian_firmware(xend, tmp_path):
    """``kernel = '/usr/lib/xen/boot/hvmloader'`` as in Xen 3.x: the builder
    does hvmloader's job (spec/hvmloader.py) with the BIOS ``bios`` names;
    a BIOS file that is missing is a bad configuration that names it."""
    from tests.conftest import peer_file
    peer_file("/usr/share/seabios/bios.bin", "seabios")
    cfg = tmp_path / "sea.cfg"
    cfg.write_text("builder = 'hvm'\nname = 'sea'\nkernel = '/usr/lib/xen/boot/hvmloader'\n"
                   "bios = 'seabios'\nvgabios = 'none'\nmemory = 32\n")
    xm(xend, "create", str(cfg))
    assert rows(xend)["sea"]["state"] == "r-----"
    xm(xend, "destroy", "sea")
    cfg.write_text("builder = 'hvm'\nname = 'sea'\nkernel = '/usr/lib/xen/boot/hvmloader'\n"
                   "bios = 'missing.bin'\n")
    out = xm(xend, "create", str(cfg), check=False)
    assert (out.returncode, out.stdout) == (2, ""), out.stderr
    assert f"BIOS {str(tmp_path / 'missing.bin')!r} does not exist" in out.stderr
    assert list(rows(xend)) == ["Domain-0"]


#: a guest that echoes what arrives on COM1 (after a '>' prompt) until 'q'
ECHO = """%include "lib/all.s"
    real_mode_start
    mov dx, COM1 + 4
    mov al, 0x0b                    ; DTR, RTS, OUT2: ready to receive
    out dx, al
    mov al, '>'
    mov dx, COM1
    out dx, al
next:
    mov dx, COM1 + 5
poll:
    in al, dx
    test al, 1                      ; LSR.DR
    jz poll
    mov dx, COM1
    in al, dx
    cmp al, 'q'
    je done
    out dx, al
    jmp next
done:
    poweroff
"""


def echo_config(tmp_path: Path) -> Path:
    (tmp_path / "echo.s").write_text(ECHO)
    path = tmp_path / "echo.cfg"
    path.write_text(f"builder = 'hvm'\nname = 'echo'\nkernel = '{tmp_path / 'echo.s'}'\n"
                    f"memory = 4\nserial = 'pty'\n")
    return path


def test_xm_console_types_standard_input_and_ends_with_the_domain(xend):
    """Attached, as xm console: what arrives on standard input is typed
    into COM1, the output is printed as it comes, and xm console returns
    when the domain is gone (the guest powers off at 'q')."""
    xm(xend, "create", str(echo_config(xend)))
    out = subprocess.run([HVMSPEC, "xm", "--dir", str(xend), "console", "echo"],
                         input="hi there q", capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, ">hi there ", "")
    assert "echo" not in rows(xend)


def test_xm_console_plays_a_serial_script(xend, tmp_path):
    xm(xend, "create", str(echo_config(xend)))
    script = tmp_path / "s.txt"
    script.write_text("expect >\ntype abc\nexpect c\ntype q\n")
    out = xm(xend, "console", "echo", "--script", str(script))
    assert out.stdout.startswith(">abc")
    until(lambda: "echo" not in rows(xend))


def test_xm_console_names_the_expect_that_timed_out(xend, tmp_path):
    xm(xend, "create", str(echo_config(xend)))
    script = tmp_path / "s.txt"
    script.write_text("timeout 1\nexpect >\nexpect never\n")
    out = xm(xend, "console", "echo", "--script", str(script), check=False)
    assert out.returncode == 1
    assert "s.txt:3" in out.stderr and "never" in out.stderr and "1 s" in out.stderr
    # the domain still runs: a console that gave up does not stop it
    assert rows(xend)["echo"]["state"] != "--p---"
    xm(xend, "destroy", "echo")
    gone = xm(xend, "console", "1", "--script", str(script), check=False)
    assert gone.returncode == 1 and "ended" in gone.stderr


def test_xm_console_typing_into_a_gone_domain_is_refused(xend):
    xm(xend, "create", str(echo_config(xend)))
    xm(xend, "destroy", "echo")
    from hvmspec.xend import XmClient
    client = XmClient(xend / "xend.sock")
    try:
        reply = client.call("console", domain="1", input="x")
        assert not reply["ok"] and "gone" in reply["error"]
        reply = client.call("console", domain="1", offset=-1)
        assert not reply["ok"] and "offset" in reply["error"]
        reply = client.call("console", domain="1", offset=1)
        assert reply["ok"] and reply["output"] == "" and reply["offset"] == 1 \
            and reply["live"] is False
    finally:
        client.close()
