"""The interrupt path on both engines: timer ticks, masking, IF and the
shadow, HLT, delivery through the IVT and the IDT, and its failures.

Every guest here runs on both engines with ``both``, which insists that
the traces are equal event by event: injection instruction counts and RIPs
included.
"""

from __future__ import annotations

from spec import loader, trace
from spec.devices.pit import PIT_HZ, ns_for_ticks
from tests.conftest import both, guest, io_clock, one_tick


def _injections(result) -> list[trace.Injection]:
    return [e for e in result.trace if isinstance(e, trace.Injection)]


def test_timer_guest_counts_ten_ticks_one_period_apart():
    result = both(loader.load("timer"))
    lines = result.serial.splitlines()
    assert lines[0] == "timer: PIT at 1 kHz on IRQ0, vector 0x20"
    assert lines[-1] == "timer: 10 ticks"
    assert [line[:8] for line in lines[1:-1]] == [f"tick {k:02d} " for k in range(1, 11)]
    injected = _injections(result)
    assert len(injected) == 10
    assert {(e.vector, e.irq) for e in injected} == {(0x20, 0)}
    # every tick arrives while the vcpu sleeps in HLT, at a PIT edge: the
    # deadlines, on the clock (instructions plus the bus time of the port
    # accesses so far, spec/clock.py), are the load time plus k periods of
    # 1193 input clocks
    io = io_clock(result.trace)
    clocks = [e.icount + io[i] for i, e in enumerate(result.trace) if isinstance(e, trace.Injection)]
    load = clocks[0] - ns_for_ticks(1193)
    assert clocks == [load + ns_for_ticks(1193 * k) for k in range(1, 11)]
    idles = [e for e in result.trace if isinstance(e, trace.Idle)]
    assert [e.until for e in idles] == [e.icount for e in injected]
    # the stamps are the PM timer (3.579545 MHz) at the handler's IN
    stamps = [int(line.split()[-1], 16) for line in lines[1:-1]]
    periods = {b - a for a, b in zip(stamps, stamps[1:])}
    assert periods <= {3579, 3580}, periods
    assert 1193 / PIT_HZ * 3_579_545 - 1 < sum(periods) / len(periods) < 1193 / PIT_HZ * 3_579_545 + 1


def test_irqs_guest_masks_lines_and_toggles_if():
    result = both(loader.load("irqs"))
    assert result.serial.splitlines() == [
        # nothing during CLI..STI, nothing in the shadow, exactly one after
        "critical section: ticks before 03, during 03, in the STI shadow 03, after 04",
        # masked: no tick, but the request is latched in IRR and arrives once
        "IRQ0 masked: ticks before 04, during 04, IRR bit 0 01, after 05",
        "this line was sent by the THRE interrupt, a byte per IRQ4",
        "both pending, served in the order 04",
    ]
    injected = _injections(result)
    irq4 = [e for e in injected if e.irq == 4]
    # one THRE interrupt per byte, plus the one that finds the line's end,
    # plus the one that step 4 raised
    assert len(irq4) == len("this line was sent by the THRE interrupt, a byte per IRQ4\n") + 2
    windows = [e for e in result.trace if isinstance(e, trace.VmExit)
               and e.reason == "interrupt_window"]
    assert windows, "the critical sections must end in interrupt-window exits"


def test_sti_shadow_delays_the_injection_by_one_instruction():
    # a tick falls due inside the CLI section; after STI the next instruction
    # (inc bx) still runs: the injection's RIP is the instruction after it
    body = """
    mov cx, 30000
spin:
    loop spin
    xor bx, bx
    sti
    inc bx
    inc bx
    cli
"""
    image = one_tick("shadow", body)
    result = both(image)
    assert result.serial == "i2"
    # xor bx, bx; sti; inc bx; inc bx
    at = image.image.index(bytes([0x31, 0xDB, 0xFB, 0x43, 0x43]))
    first = _injections(result)[0]
    assert first.rip == image.load_address + at + 4      # the second inc bx
    exits = [e for e in result.trace if isinstance(e, trace.VmExit)]
    window = [e for e in exits if e.reason == "interrupt_window"]
    assert window and window[0].rip == first.rip


def test_hlt_with_interrupts_enabled_and_no_timer_is_hung():
    result = both(guest("idle", "sti\nhlt\n", poweroff=False))
    assert result.exit["reason"] == "hung"
    assert "interrupts enabled and no timer armed" in result.exit["message"]


def test_a_missing_idt_gate_is_a_triple_fault_and_xen_resets_the_domain():
    body = """
    enter_pm32
    lidt [0x9000]
    mov word ptr [0x9000], 0x7ff
    mov dword ptr [0x9002], 0x10000
    lidt [0x9000]
    pic_init master_mask=0xfe
    pit_init 100
    sti
    hlt
    flat_gdt
"""
    result = both(guest("nogate", body, poweroff=False))
    # IRQ0's gate is all zeros, not a gate: #GP(0x20 * 8 + IDT + EXT); #GP's is too
    # too: a contributory fault after a contributory one is #DF; #DF's gate
    # is absent: a triple fault, which Xen answers with SHUTDOWN_reboot
    raised = [(e.vector, e.error_code) for e in result.trace
              if isinstance(e, trace.ExceptionDelivery)]
    assert raised == [(0x0D, 0x103), (0x08, 0)]
    exits = [e.reason for e in result.trace if isinstance(e, trace.VmExit)]
    assert exits[-1] == "triple_fault"
    assert result.exit["reason"] == "reboot"


def test_received_bytes_raise_irq4_and_are_echoed():
    body = """
    ivt_set 0x90, handler, es:
    mov word ptr es:[0x600], 0
    pic_init master_mask=0xef
    serial_ier 0x01                 ; an interrupt for each received byte
    mov dx, COM1 + 4                ; MCR: DTR, RTS, OUT2
    mov al, 0x0b
    out dx, al
    halt_while "word ptr es:[0x600]", 3, jb
    jmp done
handler:
    push ax
    push dx
    mov dx, COM1
    in al, dx
    inc al
    out dx, al
    inc word ptr es:[0x600]
    pic_eoi
    pop dx
    pop ax
    iret
done:
"""
    result = both(guest("echo", body), serial_input=b"HAL")
    assert result.serial == "IBM"
    injected = _injections(result)
    assert [e.irq for e in injected] == [4, 4, 4]
    # 9600 baud: a character (10 bits) every 1.0417 ms of virtual time (the
    # clock: instructions plus bus time, spec/clock.py)
    io = io_clock(result.trace)
    clocks = [e.icount + io[i] for i, e in enumerate(result.trace) if isinstance(e, trace.Injection)]
    gaps = [b - a for a, b in zip(clocks, clocks[1:])]
    assert all(1_041_667 <= g < 1_041_667 + 200 for g in gaps), gaps


LEVEL_BODY = """
    ivt_set 0x90, handler, es:
    mov word ptr es:[0x600], 0
    pic_init master_mask=0xef
    mov dx, 0x4d0
    mov al, ELCR
    out dx, al
    serial_ier 0x02                 ; THRE: the line is high while it is empty
    sti
    mov cx, 200
spin:
    loop spin
    cli
    mov al, es:[0x600]
    add al, '0'
    mov dx, COM1
    out dx, al
    jmp done
handler:
    push ax
    push dx
    inc word ptr es:[0x600]
    cmp word ptr es:[0x600], 2
    jb keep
    mov dx, COM1 + 2                ; IIR
    in al, dx
keep:
    pic_eoi
    pop dx
    pop ax
    iret
done:
"""


def test_a_level_triggered_line_is_injected_again_while_it_stays_high():
    # the handler leaves the THRE condition pending the first time: in level
    # mode (ELCR bit 4) the request survives the EOI and comes back; the
    # second time it reads IIR, the UART lowers the line and it stops
    level = both(guest("level", LEVEL_BODY.replace("ELCR", "0x10")))
    assert level.serial == "2"
    assert [e.irq for e in _injections(level)] == [4, 4]
    # in edge mode the first interrupt consumed the only edge
    edge = both(guest("edge", LEVEL_BODY.replace("ELCR", "0x00")))
    assert edge.serial == "1"
    assert [e.irq for e in _injections(edge)] == [4]


def _hardware(engine: str, code: bytes, eflags: int):
    """A vcpu of either engine in real mode at 0x8000:0, running ``code``."""
    if engine == "reference":
        from spec.vmx import HardwareVcpu
        hw = HardwareVcpu(1 << 20)
        put = hw.set_reg
    else:
        from impl.vcpu import Vcpu
        hw = Vcpu(1 << 20)
        put = hw.put
    from spec import physical_cpu
    hw.write(0x80000, code)
    physical_cpu.reset(hw.uc, cs=0x8000, ip=0)
    put("rflags", eflags)
    return hw


def test_the_hardware_reports_the_shadow_of_sti_and_mov_ss(engine):
    mov_ss, sti, inc_bx = bytes([0x8E, 0xD0]), bytes([0xFB]), bytes([0x43])
    cases = [(mov_ss, 0x202, True), (sti, 0x002, True), (sti, 0x202, False),
             (inc_bx, 0x202, False)]
    for first, flags, shadow in cases:
        hw = _hardware(engine, first + inc_bx * 4, flags)
        ex = hw.run(100, deadline=1)
        assert ex.reason == "preemption_timer" and ex.icount == 1
        assert hw.shadow is shadow, (first.hex(), flags)
        ex = hw.run(100, window=True)
        assert ex.reason == "interrupt_window"
        assert ex.icount == 1 + shadow, (first.hex(), flags)


def test_string_io_to_the_virtual_pic_is_handled_by_xen_element_by_element():
    body = """
    mov byte ptr es:[0x700], 0x30
    mov byte ptr es:[0x701], 0x04
    mov byte ptr es:[0x702], 0x01
    mov byte ptr es:[0x703], 0xa5
    mov al, 0x11
    out 0x20, al
    push ds
    push es
    pop ds
    mov si, 0x700
    mov cx, 4
    mov dx, 0x21
    cld
    rep outsb
    mov di, 0x710
    mov cx, 1
    rep insb
    pop ds
    mov al, es:[0x710]
    mov dx, 0x3f8
    out dx, al
"""
    result = both(guest("pic_string", body))
    assert result.serial == "\xa5"                         # IMR, written by the 4th element
    xen = [e for e in result.trace if isinstance(e, trace.XenIo)]
    assert [(e.addr, e.dir, e.data) for e in xen] == [
        (0x20, "out", 0x11), (0x21, "out", 0x30), (0x21, "out", 0x04), (0x21, "out", 0x01),
        (0x21, "out", 0xA5), (0x21, "in", 0xA5)]
    assert not [e for e in result.trace if isinstance(e, trace.IoreqTransition)
                and e.addr in (0x20, 0x21)]
