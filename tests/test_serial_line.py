"""COM1 from a live line (``run --serial-input -``): bytes that arrive while
the guest runs, from a real pipe or the terminal, reach it through the
UART's receiver and interrupt, and the run waits for them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from hvmspec.serial_line import LiveLine
from tests.conftest import ENGINES, ROOT, run

# waits, halted with interrupts on, for three bytes taken by its IRQ4 handler
ECHO = """
    ivt_set 0x90, rx_irq, es:           ; vector 0x24 (IRQ4)
    mov byte ptr es:[0x600], 0
    pic_init master_mask=0xef           ; IRQ4 only
    serial_ier 0x01                     ; IER: received data available
    mov dx, COM1 + 4
    mov al, 0x0b                        ; MCR: DTR, RTS, OUT2
    out dx, al
wait:
    sti
    hlt
    cli
    cmp byte ptr es:[0x600], 3
    jb wait
    mov dx, COM1
    mov al, 'g'
    out dx, al
    mov al, ':'
    out dx, al
    mov al, es:[0x610]
    out dx, al
    mov al, es:[0x611]
    out dx, al
    mov al, es:[0x612]
    out dx, al
    mov al, 10
    out dx, al
""" 
HANDLER = """
rx_irq:
    push ax
    push bx
    push dx
    mov dx, COM1
    in al, dx
    xor bx, bx
    mov bl, es:[0x600]
    mov es:[bx + 0x610], al
    inc byte ptr es:[0x600]
    pic_eoi
    pop dx
    pop bx
    pop ax
    iret
"""


def _echo():
    from tests.conftest import POWEROFF, PROLOGUE
    from spec.loader import GuestImage, rom_from_source
    source = PROLOGUE + ECHO + POWEROFF + HANDLER
    return GuestImage("echo", rom_from_source(source, "echo"), source)


def _typist(fd: int, chunks: list[bytes], pause: float) -> threading.Thread:
    def type_them() -> None:
        for chunk in chunks:
            time.sleep(pause)
            os.write(fd, chunk)
        time.sleep(pause)
        os.close(fd)
    thread = threading.Thread(target=type_them, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("engine", ENGINES)
def test_bytes_typed_later_reach_the_halted_guest(engine):
    read_end, write_end = os.pipe()
    line = LiveLine(read_end)
    typist = _typist(write_end, [b"a", b"bc"], 0.2)
    started = time.perf_counter()
    result = run(engine, _echo(), serial_input=line)
    typist.join()
    os.close(read_end)
    assert result.exit["reason"] == "poweroff"
    assert result.serial == "g:abc\n"
    assert time.perf_counter() - started >= 0.4          # it waited for the typist


@pytest.mark.parametrize("engine", ENGINES)
def test_a_line_that_ends_ends_the_run_as_hung(engine):
    read_end, write_end = os.pipe()
    line = LiveLine(read_end)
    typist = _typist(write_end, [b"x"], 0.1)
    result = run(engine, _echo(), serial_input=line)
    typist.join()
    os.close(read_end)
    assert result.exit["reason"] == "hung" and result.serial == ""


def test_cli_reads_the_terminal_or_a_pipe(tmp_path):
    source = tmp_path / "echo.s"
    source.write_text(_echo().source)
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "run", str(source),
                             "--serial-input", "-"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    time.sleep(0.5)
    proc.stdin.write("hi")
    proc.stdin.flush()
    time.sleep(0.3)
    proc.stdin.write("!")
    proc.stdin.close()
    proc.wait(timeout=120)
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 0, err
    assert out.startswith("g:hi!\n") and "powered off" in out
