"""Firmware that cannot be loaded, and firmware that fails while it runs:
each says what is wrong (docs/firmware.rst, "When firmware fails")."""

from __future__ import annotations

import json
import re
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from spec import hvmloader, trace
from spec.loader import GuestError, GuestImage, rom_from_source
from tests.conftest import ROOT, both, cli, peer_file, run
from tests.test_xm import rows, xend, xm  # noqa: F401 - xend is a fixture

ROMBIOS, SEABIOS = hvmloader.FIRMWARE["rombios"][0], hvmloader.FIRMWARE["seabios"][0]
VGABIOS = hvmloader.VGABIOS[0]


# --- firmware that cannot be loaded --------------------------------------------------------

def _jumping(size: int) -> bytes:
    """A BIOS of ``size`` bytes with a far jump at its reset vector."""
    return bytes(size - 16) + b"\xea\x5b\xe0\x00\xf0" + bytes(11)


def _option_rom(blocks: int) -> bytes:
    """A VGA BIOS of ``blocks`` 512-byte blocks whose bytes sum to 0."""
    rom = bytearray(blocks * 512)
    rom[:3] = bytes([0x55, 0xAA, blocks])
    rom[-1] = -sum(rom) % 256
    return bytes(rom)


def _unreadable(tmp_path) -> str:
    """A regular file that cannot be read: one without permissions, or
    (for root, whom permissions do not stop) /proc/self/mem, whose first
    page is never mapped, so that reading it fails with EIO."""
    if os.geteuid() == 0:
        return "/proc/self/mem"
    path = tmp_path / "unreadable.bin"
    path.write_bytes(_jumping(0x10000))
    path.chmod(0)
    return str(path)


def _special(tmp_path, kind: str) -> str:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    return str(path)


#: (what, the file's bytes or how to make it, words of the message after the file's name)
BAD_BIOSES = [
    ("empty", b"", "is empty (0 bytes): a BIOS image is a whole number of 64 KiB blocks"),
    ("truncated", _jumping(0x20000)[:1000], "is 1,000 bytes: a BIOS image is a whole number"),
    ("not 64 KiB blocks", _jumping(0x18000), "is 98,304 bytes: a BIOS image is a whole number"),
    ("over 1 MiB", _jumping(0x110000), "is 1,114,112 bytes: at most 1,048,576 bytes of ROM"),
    ("no jump", bytes(0x10000), "has no jump at its reset vector (offset 0xfff0: 0000000000)"),
    ("directory", "dir", "is a directory, not a firmware image"),
    ("fifo", "fifo", "is not a regular file (a device, FIFO or socket)"),
    ("socket", "socket", "is not a regular file (a device, FIFO or socket)"),
    ("unreadable", "unreadable", "cannot be read: "),
]
BAD_VGABIOSES = [
    ("empty", b"", "does not start with the option ROM signature 55 aa (it starts empty)"),
    ("no 55AA", b"\x00\x00\x10" + bytes(0x2000), "does not start with the option ROM signature"),
    ("bad checksum", _option_rom(16)[:-1] + b"\x01", "do not sum to 0 modulo 256"),
    ("length byte past the end", _option_rom(16)[:1024],
     "says it is 8,192 bytes (byte 2: 16 blocks of 512) but the file has 1,024"),
    ("length byte 0", b"\x55\xaa\x00" + bytes(509), "says it is 0 bytes"),
    ("directory", "dir", "is a directory, not a firmware image"),
    ("unreadable", "unreadable", "cannot be read: "),
]


def _file(tmp_path, name: str, data) -> str:
    """The file of a bad case: its bytes written, or the special file."""
    if data == "dir":
        (tmp_path / name).mkdir()
        return str(tmp_path / name)
    if data == "unreadable":
        return _unreadable(tmp_path)
    if data in ("fifo", "socket"):
        return _special(tmp_path, data)
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _refused(proc, what: str, path: str, words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"hvmspec: error: {what} {path!r}" in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr


@pytest.mark.parametrize("case,data,words", BAD_BIOSES, ids=[c[0] for c in BAD_BIOSES])
def test_run_refuses_a_bad_bios_naming_the_file(tmp_path, case, data, words):
    path = _file(tmp_path, "bios.bin", data)
    proc = cli("run", "--firmware", path, "--vgabios", "none")
    _refused(proc, "BIOS", path, words)


@pytest.mark.parametrize("case,data,words", BAD_VGABIOSES, ids=[c[0] for c in BAD_VGABIOSES])
def test_run_refuses_a_bad_vga_bios_naming_the_file(tmp_path, case, data, words):
    bios = _file(tmp_path, "bios.bin", _jumping(0x10000))
    path = _file(tmp_path, "vga.bin", data)
    proc = cli("run", "--firmware", bios, "--vgabios", path)
    _refused(proc, "VGA BIOS", path, words)


def test_xm_create_refuses_bad_firmware_naming_the_file(xend, tmp_path):  # noqa: F811
    """The same checks through an xm configuration with hvmloader as its
    kernel: ``xm create`` exits 2 with the file and the reason, and no
    domain is left behind."""
    cases = [("bios", what, data, words) for what, data, words in BAD_BIOSES
             if what in ("empty", "not 64 KiB blocks", "no jump", "directory", "fifo",
                         "unreadable")]
    cases += [("vgabios", what, data, words) for what, data, words in BAD_VGABIOSES
              if what in ("no 55AA", "bad checksum", "length byte past the end")]
    good = _file(tmp_path, "good.bin", _jumping(0x10000))
    for n, (key, what, data, words) in enumerate(cases):
        (tmp_path / str(n)).mkdir()
        path = _file(tmp_path / str(n), f"{key}.bin", data)
        bios, vgabios = (path, "none") if key == "bios" else (good, path)
        cfg = tmp_path / "bad.cfg"
        cfg.write_text(f"builder = 'hvm'\nname = 'bad'\nkernel = '/usr/lib/xen/boot/hvmloader'\n"
                       f"bios = {bios!r}\nvgabios = {vgabios!r}\nmemory = 16\n")
        out = xm(xend, "create", str(cfg), check=False)
        assert (out.returncode, out.stdout) == (2, ""), (what, out.stderr)
        assert "Traceback" not in out.stderr
        label = "BIOS" if key == "bios" else "VGA BIOS"
        assert f"{label} {path!r}" in out.stderr and words.strip() in out.stderr, \
            (what, out.stderr)
    assert list(rows(xend)) == ["Domain-0"]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=0x300) | st.builds(
    lambda blocks, tail: bytes(blocks * 0x10000 - len(tail)) + tail,
    st.integers(1, 3), st.binary(min_size=1, max_size=64)))
def test_random_bytes_as_firmware_are_loaded_or_refused(tmp_path_factory, data):
    """Any bytes, as a BIOS and as a VGA BIOS: an image or a
    :class:`GuestError` that names the file, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "fw.bin"
    path.write_bytes(data)
    good = tmp_path_factory.mktemp("fuzz") / "good.bin"
    good.write_bytes(_jumping(0x10000))
    for bios, vga in ((path, "none"), (good, path)):
        try:
            hvmloader.load_firmware(hvmloader.choose(str(bios), str(vga)))
        except GuestError as exc:
            assert repr(str(path)) in str(exc)


@pytest.mark.parametrize("engine", ["impl", "reference"])
@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(code=st.binary(min_size=1, max_size=48))
def test_random_code_as_firmware_runs_to_a_report(engine, code):
    """Random bytes at the reset vector's target, run for a short budget:
    the run ends with an exit record that has a firmware run's report,
    never an exception out of the engine. (The engines are not compared
    here: random code finds differences between them that are not the
    report's: ``test_an_undefined_encoding_is_ud``.)"""
    rom = bytearray(0x10000)
    rom[0xFF00:0xFF00 + len(code)] = code
    rom[0xFFF0:0xFFF5] = b"\xea\x00\xff\x00\xf0"         # jmp F000:FF00
    result = run(engine, _image(bytes(rom)), max_instructions=2_000)
    exit_ = result.exit
    assert exit_["reason"] in ("limit", "hung", "crash", "reboot", "poweroff")
    assert {"instructions", "rip", "cs_ip", "last_firmware_log"} <= set(exit_)
    assert exit_["instructions"] == result.instructions <= 2_000
    assert exit_.get("failure") in (None, "panic", "triple_fault", "crash", "halted", "budget")
    assert exit_["cs_ip"] in exit_.get("what", exit_["cs_ip"])


@pytest.mark.xfail(strict=True, reason="found by test_random_code_as_firmware_runs_to_a_report: "
                   "Unicorn runs these as if valid; the engines then part (the reference "
                   "runs on, the impl engine stays at the instruction or crashes with an "
                   "internal error)")
@pytest.mark.parametrize("code", [
    b"\xf0\x06\xf4",           # lock push es; hlt: LOCK where none is allowed
    b"\x8f\x7b\x95\xf4",       # 8F /7: only 8F /0 (POP r/m) is defined
], ids=["lock push es", "8f /7"])
def test_an_undefined_encoding_is_ud(code):
    """#UD (SDM vol. 2, "LOCK" and the opcode map's 8F group) through the
    IVT, the same on both engines."""
    rom = bytearray(0x10000)
    rom[0xFF00:0xFF00 + len(code)] = code
    rom[0xFFF0:0xFFF5] = b"\xea\x00\xff\x00\xf0"
    result = both(_image(bytes(rom)), max_instructions=2_000)
    assert [e.vector for e in result.trace if isinstance(e, trace.ExceptionDelivery)][:1] == [6]


# --- firmware that fails ---------------------------------------------------------------

#: a tiny BIOS: three lines on the log port 0x402, then the failure
LOG = """%include "lib/all.s"
    real_mode_start rom_data=1
    mov dx, 0x402
    mov si, msg
    port_write
"""
MSG = """
msg:
    .ascii "POST: memory ok\\nPOST: devices ok\\nPOST: about to fail\\n"
    .byte 0
"""
LINES = ["POST: memory ok", "POST: devices ok", "POST: about to fail"]
FAILURES = {
    # rombios's BX_PANIC/HALT: the source line to the panic port, then cli; hlt
    "panic": "    mov dx, 0x400\n    mov ax, 1234\n    out dx, ax\n    cli\n    hlt\n",
    # a zero IDT limit: INT3 cannot be delivered (#GP), nor can #GP (#DF), nor #DF
    "triple": "    lidt cs:[zero]\n    int3\nzero:\n    .word 0\n    .long 0\n",
    "spin": "spin:\n    jmp spin\n",
    "halt": "    cli\n    hlt\n",
    "crash": "    .byte 0xea\n    .word 0, 0xa000\n",      # jmp A000:0000: no RAM there
}


def _image(rom: bytes, name: str = "bios.bin"):
    """The firmware image of ``rom`` without a VGA BIOS, as hvmloader places it."""
    import tempfile
    with tempfile.TemporaryDirectory() as where:
        path = os.path.join(where, name)
        with open(path, "wb") as file:
            file.write(rom)
        return hvmloader.load_firmware(hvmloader.choose(path, "none"))


def _failing(case: str) -> bytes:
    return rom_from_source(LOG + FAILURES[case] + MSG, case)


def test_a_panic_is_reported_with_the_bios_message_on_both_engines():
    exit_ = both(_image(_failing("panic")), max_instructions=100_000).exit
    assert exit_["reason"] == "hung"        # rombios halts with interrupts off after a panic
    assert exit_["failure"] == "panic"
    assert exit_["panic"] == "BIOS panic at rombios.c, line 1234"
    assert exit_["last_firmware_log"] == LINES + ["BIOS panic at rombios.c, line 1234"]
    assert (exit_["instructions"], exit_["cs_ip"], exit_["rip"]) == (282, "F000:0023", 0xF0023)
    assert exit_["what"] == ("BIOS panic at rombios.c, line 1234; then halted with interrupts "
                             "disabled, at F000:0023 (linear 0xf0023) after 282 instructions")


def test_a_triple_fault_is_reported_with_its_exceptions_on_both_engines():
    exit_ = both(_image(_failing("triple")), max_instructions=100_000).exit
    assert (exit_["reason"], exit_["by"], exit_["failure"]) == ("reboot", "xen", "triple_fault")
    assert exit_["last_firmware_log"] == LINES
    assert (exit_["cs_ip"], exit_["rip"]) == ("F000:0024", 0xF0024)     # the INT3
    assert exit_["what"].startswith("triple fault (#BP -> #GP -> #DF) at F000:0024 (linear "
                                    "0xf0024) after 279 instructions")


def test_a_spinning_firmware_is_reported_at_the_budget_with_its_silence_on_both_engines():
    exit_ = both(_image(_failing("spin")), max_instructions=20_000).exit
    assert (exit_["reason"], exit_["failure"]) == ("limit", "budget")
    assert (exit_["instructions"], exit_["cs_ip"]) == (20_000, "F000:001A")
    assert exit_["last_log_at"] == 272
    assert exit_["what"].endswith("the firmware log had been silent for the last 19,728 "
                                  "instructions")


def test_halted_with_interrupts_disabled_ends_the_run_at_once_on_both_engines():
    """``cli; hlt``, as rombios ends a panic and a boot with no bootable
    device: the run ends there, not at the budget."""
    exit_ = both(_image(_failing("halt")), max_instructions=10_000_000_000).exit
    assert (exit_["reason"], exit_["failure"]) == ("hung", "halted")
    assert exit_["instructions"] == 279
    assert exit_["what"] == ("halted with interrupts disabled at F000:001C (linear 0xf001c) "
                             "after 279 instructions; nothing can wake it")


def test_a_crash_is_reported_with_xens_message_on_both_engines():
    exit_ = both(_image(_failing("crash")), max_instructions=100_000).exit
    assert (exit_["reason"], exit_["failure"]) == ("crash", "crash")
    assert (exit_["cs_ip"], exit_["rip"]) == ("A000:0000", 0xA0000)
    assert exit_["what"].endswith("instruction fetch from gpa 0xa0000, which no RAM backs")


def test_only_the_last_five_log_lines_are_kept():
    source = LOG + FAILURES["halt"] + """
msg:
    .ascii "1\\n2\\n3\\n\\r\\n4\\n5\\n6\\n7"
    .byte 0
"""
    exit_ = both(_image(rom_from_source(source, "seven")), max_instructions=100_000).exit
    assert exit_["last_firmware_log"] == ["3", "4", "5", "6", "7"]


def test_a_guest_that_is_not_firmware_has_no_firmware_report():
    exit_ = both(GuestImage("g", rom_from_source("start:\n    cli\n    hlt\n", "g")),
                 max_instructions=1_000).exit
    assert "failure" not in exit_ and "cs_ip" not in exit_


@pytest.mark.parametrize("engine", ["impl", "reference"])
def test_run_prints_the_report_on_stderr_and_in_json(tmp_path, engine):
    path = tmp_path / "panic.bin"
    path.write_bytes(_failing("panic"))
    proc = cli("run", "--firmware", str(path), "--vgabios", "none", "--engine", engine,
               "--no-status")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    report = proc.stderr[proc.stderr.index("hvmspec: firmware failed:"):].splitlines()
    assert report == [
        "hvmspec: firmware failed: BIOS panic at rombios.c, line 1234; then halted with "
        "interrupts disabled, at F000:0023 (linear 0xf0023) after 282 instructions",
        "hvmspec: the firmware log's last lines:",
        *(f"  {line}" for line in LINES + ["BIOS panic at rombios.c, line 1234"])]
    proc = cli("run", "--firmware", str(path), "--vgabios", "none", "--engine", engine,
               "--json")
    assert proc.returncode == 1, proc.stderr
    exit_ = json.loads(proc.stdout)["exit"]
    assert (exit_["failure"], exit_["cs_ip"], exit_["instructions"]) == ("panic", "F000:0023",
                                                                          282)
    assert "firmware failed" not in proc.stderr


def test_run_reports_an_empty_log_and_a_budget_given_on_the_command_line(tmp_path):
    path = tmp_path / "spin.bin"
    path.write_bytes(rom_from_source("spin:\n    jmp spin\n", "spin"))
    proc = cli("run", "--firmware", str(path), "--vgabios", "none", "--max-instructions",
               "5000", "--no-status")
    assert proc.returncode == 1, proc.stderr
    assert ("hvmspec: firmware failed: stopped by the instruction budget at F000:0000 (linear "
            "0xf0000) after 5,000 instructions; the firmware log stayed empty\n"
            "hvmspec: the firmware log is empty\n") in proc.stderr


# --- the default budget covers POST --------------------------------------------------------

def test_rombios_runs_to_the_end_of_post_with_the_default_budget():
    """rombios's POST takes about 3.0 G instructions, most of them halted
    waits; with no boot device it ends with cli; hlt, which ends the run."""
    peer_file(ROMBIOS, "bochsbios")
    peer_file(VGABIOS, "vgabios")
    proc = cli("run", "--firmware", "rombios", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    exit_ = out["exit"]
    assert (exit_["reason"], exit_["failure"]) == ("hung", "halted")
    assert exit_["last_firmware_log"][-1] == "No bootable device."
    assert 2_000_000_000 < out["instructions"] < 10_000_000_000
    assert out["seconds"] < 60


def test_seabios_runs_past_post_with_the_default_budget():
    peer_file(SEABIOS, "seabios")
    peer_file(VGABIOS, "vgabios")
    proc = cli("run", "--firmware", "seabios", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    exit_ = out["exit"]
    assert (exit_["reason"], exit_["failure"]) == ("limit", "budget")
    assert 9_900_000_000 < out["instructions"] <= 10_000_000_000     # idle to the last tick
    assert exit_["last_firmware_log"][-1] == "No bootable device.  Retrying in 60 seconds."
    assert out["seconds"] < 60


def test_the_firmware_page_shows_what_run_prints_for_a_panic(tmp_path):
    """docs/firmware.rst's example, "When firmware fails", is this run's
    output (the fate line's wall time aside)."""
    text = (ROOT / "docs" / "firmware.rst").read_text()
    start = text.index("   $ hvmspec run --firmware panic.bin --vgabios none\n")
    block = text[start:text.index("\n\n", start)].splitlines()[1:]
    shown = [line[3:] for line in block]
    path = tmp_path / "panic.bin"
    path.write_bytes(_failing("panic"))
    proc = cli("run", "--firmware", str(path), "--vgabios", "none", "--no-status")
    printed = [line for line in (proc.stdout + proc.stderr).splitlines()
               if not line.startswith(f"hvmspec: {path.name}: the BIOS")]
    order = [line for line in proc.stderr.splitlines() if line.startswith("[fw]")] \
        + proc.stdout.splitlines() \
        + [line for line in proc.stderr.splitlines() if line.startswith(("hvmspec: f",
                                                                          "hvmspec: t", "  "))]
    assert sorted(order) == sorted(printed)
    strip = lambda lines: [re.sub(r"\d+\.\d+ s$", "N s", line) for line in lines]  # noqa: E731
    assert strip(order) == strip(shown)


def test_a_vga_bios_panic_is_named_as_such():
    source = LOG + "    mov dx, 0x501\n    mov ax, 77\n    out dx, ax\n    cli\n    hlt\n" + MSG
    exit_ = both(_image(rom_from_source(source, "vgapanic")), max_instructions=100_000).exit
    assert (exit_["failure"], exit_["panic"]) == ("panic", "VGA BIOS panic, line 77")


def test_a_run_stopped_by_until_is_no_failure(tmp_path):
    path = tmp_path / "spin.bin"
    path.write_bytes(_failing("spin"))
    proc = cli("run", "--firmware", str(path), "--vgabios", "none", "--until", "about to fail",
               "--json")
    assert proc.returncode == 0, proc.stderr
    exit_ = json.loads(proc.stdout)["exit"]
    assert exit_["reason"] == "until" and "failure" not in exit_
    assert exit_["last_firmware_log"] == LINES and exit_["cs_ip"].startswith("F000:")
