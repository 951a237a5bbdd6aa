"""Serial scripts on hvmspec's engines (``hvmspec run --serial-script``):
the answers reach COM1 at the virtual time of the output that completed
the awaited text, so both engines' traces are equal (issue 21)."""

from __future__ import annotations

from hvmspec.serial_script import EngineScript, parse
from tests.conftest import ENGINES, cli, guest, run

#: a line editor on COM1: "> " as its prompt, each byte echoed in upper
#: case, a carriage return ends the line ("\r\n" and the prompt again),
#: "q" powers off. RTS and DTR are held (MCR 0x0b), so the sender sends.
ECHO = guest("echo", r"""
    mov dx, COM1 + 4
    mov al, 0x0b
    out dx, al
prompt:
    mov al, '>'
    call putc
    mov al, ' '
    call putc
next:
    mov dx, COM1 + 5
wait_rx:
    in al, dx
    test al, 1
    jz wait_rx
    mov dx, COM1
    in al, dx
    cmp al, 'q'
    je bye
    cmp al, 13
    je newline
    cmp al, 'a'
    jb echo
    sub al, 0x20
echo:
    call putc
    jmp next
newline:
    mov al, 13
    call putc
    mov al, 10
    call putc
    jmp prompt
bye:
    mov al, 'Q'
    call putc
    jmp off
    serial_putc
off:
""")

SCRIPT = "send early\nexpect > \nsend abc\nexpect > \nsend de\nexpect > \ntype q\n"


def _run(engine: str, text: str, **kwargs):
    script = EngineScript(parse(text, "echo.script"))
    return run(engine, ECHO, serial_input=script, max_instructions=5_000_000, **kwargs), script


def test_script_drives_a_guest_on_both_engines():
    (ref, ref_script), (imp, imp_script) = (_run(e, SCRIPT) for e in ENGINES)
    # "early" was COM1's input from the start: the guest's first read takes it
    assert ref.serial == "> EARLY\r\n> ABC\r\n> DE\r\n> Q"
    assert ref_script.script.done and imp_script.script.done
    assert ref.exit["reason"] == "poweroff"
    assert [e.to_json() for e in ref.trace] == [e.to_json() for e in imp.trace]
    assert ref.instructions == imp.instructions


def test_script_answer_comes_after_the_awaited_output(engine):
    """Nothing of an answer reaches the guest before the byte that
    completed the awaited text left: the guest's read of 'x' (RBR) comes
    after the prompt's space in the trace."""
    result, _ = _run(engine, "expect > \nsend x\nexpect > \ntype q\n")
    assert result.serial == "> X\r\n> Q"
    events = [e.to_json() for e in result.trace]
    space = next(i for i, e in enumerate(events) if e == {"kind": "serial", "port": "com1",
                                                          "byte": 32})
    rbr = [i for i, e in enumerate(events) if e.get("kind") == "device_io"
           and e["addr"] == 0x3F8 and e["dir"] == "read"]
    assert [events[i]["data"] for i in rbr] == [ord("x"), 13, ord("q")]
    assert space < rbr[0]


def test_run_fails_naming_the_expect_that_never_matched(tmp_path):
    script = tmp_path / "boot.script"
    script.write_text("expect Hello\nexpect no such line\n")
    proc = cli("run", "hello", "--serial-script", str(script))
    assert proc.returncode == 1
    assert f"serial script: {script}:2: expect 'no such line' never matched" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_reports_a_bad_script_with_its_line(tmp_path):
    script = tmp_path / "bad.script"
    script.write_text("expect >\nsleep 2\n")
    proc = cli("run", "hello", "--serial-script", str(script))
    assert proc.returncode == 2
    assert f"{script}:2: unknown command 'sleep'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serial_script_and_serial_input_exclude_each_other(tmp_path):
    script = tmp_path / "s"
    script.write_text("send x\n")
    proc = cli("run", "hello", "--serial-script", str(script), "--serial-input", str(script))
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
