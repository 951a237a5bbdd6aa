"""The CPU as the hardware boundary answers it: CPUID, the virtual TSC, and
the bus time of I/O accesses (spec/cpuid.py, spec/clock.py)."""

from __future__ import annotations

import pytest

from tests.conftest import both, guest, io_clock
from spec import clock, cpuid, platform, trace
from spec.devices.pit import PIT_HZ
from spec.loader import GuestImage, rom_from_source

PROLOGUE_INSNS = 8          # the reset vector's jump, then conftest.PROLOGUE (7)
DEBUG_PORT = 0xE9           # unclaimed: each OUT is an ioreq whose data the trace shows


def _outs(result) -> list[int]:
    """The data of every OUT to the debug port, in order (the VMM's ioreqs)."""
    return [e.data for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.addr == DEBUG_PORT and e.new == "READY" and e.dir != "read"]


def _dump(regs: str) -> str:
    return "".join(f"    mov eax, {r}\n    out {DEBUG_PORT:#x}, eax\n" for r in regs.split())


# --- CPUID ----------------------------------------------------------------------------

def test_platform_table_is_what_xen_3_0_4_derives_from_the_host():
    """platform.HVM_CPUID (what impl answers from) is spec.cpuid's derivation."""
    assert platform.HVM_CPUID == cpuid.table()
    for leaf in (0xB, 0x3FFFFFFF, 0x40000003, 0x40000100, 0x80000009, 0xFFFFFFFF):
        assert cpuid.hvm_leaf(leaf) == platform.HVM_CPUID_OUT_OF_RANGE
    assert cpuid.hvm_leaf(4, 7) == (0, 0, 0, 0)


def test_leaf_1_features_of_an_hvm_guest():
    eax, ebx, ecx, edx = platform.HVM_CPUID[(1, 0)]
    assert not edx & cpuid.EDX_APIC                 # no local APIC on this platform
    assert not ecx & 1 << 31                        # no hypervisor bit in Xen 3.0.4
    assert not ecx & cpuid.ECX_VMX and not ecx & cpuid.ECX_MONITOR
    assert not edx & (cpuid.EDX_HTT | cpuid.EDX_PSE36 | cpuid.EDX_ACPI | cpuid.EDX_TM)
    assert edx & cpuid.EDX_TSC and edx & cpuid.EDX_PAE
    assert ebx >> 16 & 0xFF == 0                    # one logical processor
    assert eax == 0x6F6


CPUID_CASES = [(1, 0), (0, 0), (4, 2), (4, 3), (0x40000000, 0), (0x40000001, 0),
               (0x40000002, 0), (0x40000003, 0), (0xB, 0), (0x80000000, 0),
               (0x80000004, 0), (0x80000009, 0), (0xA, 0)]


def test_cpuid_is_the_documented_table_on_both_engines():
    body = "".join(f"    mov eax, {leaf:#x}\n    mov ecx, {sub}\n    cpuid\n"
                   f"    mov edi, edx\n    mov esi, ecx\n" + _dump("eax ebx esi edi")
                   for leaf, sub in CPUID_CASES)
    result = both(guest("cpuid", body))
    assert result.exit["reason"] == "poweroff"
    got = _outs(result)
    want = [v for leaf, sub in CPUID_CASES for v in cpuid.hvm_leaf(leaf, sub)]
    assert got == want
    assert got[16:20] == [0x40000002, 0x566E6558, 0x65584D4D, 0x4D4D566E]  # "XenVMMXenVMM"


def test_cpuid_clears_the_upper_halves_in_long_mode_too():
    """The hook loads all four registers whole (RAX.. RDX = the 32-bit values)."""
    from impl.cpuid import lookup
    for leaf, sub in CPUID_CASES:
        assert lookup(leaf | 0xABCD << 32, sub | 0x1234 << 32) == cpuid.answer(
            leaf | 0xABCD << 32, sub | 0x1234 << 32)


# --- the TSC ----------------------------------------------------------------------------------

def test_rdtsc_reads_the_virtual_clock():
    body = """
    rdtsc
    out 0xe9, eax
    mov eax, edx
    out 0xe9, eax
    nop
    nop
    rdtsc
    out 0xe9, eax
    rdtscp
    mov ebx, ecx
    out 0xe9, eax
    mov eax, ebx
    out 0xe9, eax
"""
    results = [both(guest("tsc", body)) for _ in range(2)]
    assert _outs(results[0]) == _outs(results[1])     # deterministic
    outs = _outs(results[0])
    port = platform.PORT_ACCESS_NS
    first = PROLOGUE_INSNS                               # 8 instructions before it
    second = first + 6 + 2 * port                        # rdtsc, out, mov, out, nop, nop
    third = second + 2 + port                            # rdtsc, out
    assert outs == [clock.tsc(first) & 0xFFFFFFFF, 0, clock.tsc(second),
                    clock.tsc(third), 0]
    assert clock.tsc(first) == 19 and clock.tsc(1000) == 2400


def test_rdtsc_at_cpl0_with_cr4_tsd_set():
    """CR4.TSD restricts RDTSC to CPL 0 (#GP elsewhere, raised by the CPU
    before the hook): at CPL 0 the virtual TSC is read as usual."""
    body = """
    mov eax, cr4
    or eax, 4
    mov cr4, eax
    rdtsc
    out 0xe9, eax
"""
    result = both(guest("tsd", body))
    assert _outs(result) == [clock.tsc(PROLOGUE_INSNS + 3)]


def _ticking(name: str, count: int, body: str) -> GuestImage:
    """A guest with the PIT at ``count`` on IRQ0 (vector 0x20, the only line
    unmasked), whose handler only acknowledges it: ``body`` with IF = 0."""
    setup = f"""
    pic_init master_mask=0xfe
    ivt_set 0x80, tick, es:
    pit_init {count}
"""
    return guest(name, setup + body + """
    jmp done
tick:
    pic_eoi
    iret
done:
""")


def test_rdtsc_after_idle_equal_on_both_engines():
    """A run with a timer and HLT (the clock jumps) reads the same TSC on both."""

    body = """
    sti
    hlt
    cli
    rdtsc
    out 0xe9, eax
    mov eax, edx
    out 0xe9, eax
"""
    result = both(_ticking("tsc-idle", 1193, body))
    assert result.exit["reason"] == "poweroff"
    low, high = _outs(result)
    assert any(e.kind == "idle" for e in result.trace)
    # about a millisecond of virtual time: 1193 PIT ticks at 2.4 GHz
    assert 2_300_000 < (high << 32 | low) < 2_500_000


# --- bus time of I/O accesses ----------------------------------------------------------------

def _poll_counter2(count: int) -> str:
    """Start PIT counter 2 in mode 0 with ``count`` and poll port 0x61 bit 5
    (its OUT) until it rises, counting the reads in ECX, then print ECX."""
    return f"""
    in al, 0x61
    and al, 0xfc
    or al, 1
    out 0x61, al
    mov al, 0xb0
    out 0x43, al
    mov al, {count & 0xFF:#x}
    out 0x42, al
    mov al, {count >> 8:#x}
    out 0x42, al
    xor ecx, ecx
poll:
    inc ecx
    in al, 0x61
    test al, 0x20
    jz poll
    mov eax, ecx
    out 0xe9, eax
"""


def _expected_reads(count: int) -> int:
    """The documented rule, worked by hand: the counter loads at the clock of
    the exit of the OUT of its high byte (t0); that OUT completes (1
    instruction, one port access), XOR and INC retire, and the first IN
    reads at t0 + PORT + 3. Each further read comes 4 instructions (IN, TEST,
    JZ, INC) and one port access later. OUT rises once ``count`` PIT clocks
    have passed: at t0 + ceil(count * 10**9 / PIT_HZ)."""
    port = platform.PORT_ACCESS_NS
    out_rises = -(-count * 1_000_000_000 // PIT_HZ)
    first = port + 3
    if first >= out_rises:
        return 1
    return 1 + -(-(out_rises - first) // (port + 4))


@pytest.mark.parametrize("count", [1193, 11932])
def test_a_polling_loop_takes_the_iterations_the_time_rule_gives(count):
    result = both(guest("poll", _poll_counter2(count)), max_instructions=1_000_000)
    assert result.exit["reason"] == "poweroff"
    reads = _outs(result)[0]
    assert reads == _expected_reads(count)
    assert reads == {1193: 996, 11932: 9961}[count]


def test_port_0x80_costs_bus_time_without_an_exit():
    """The pass-through port makes no exit but a bus cycle: two OUTs to 0x80
    move the TSC on by two port accesses."""
    body = """
    rdtsc
    mov ebx, eax
    out 0x80, al
    out 0x80, al
    rdtsc
    sub eax, ebx
    out 0xe9, eax
"""
    result = both(guest("p80", body))
    assert _outs(result) == [clock.tsc(PROLOGUE_INSNS + 4 + 2 * platform.PORT_ACCESS_NS)
                                     - clock.tsc(PROLOGUE_INSNS)]
    assert not [e for e in result.trace if e.kind == "vmexit" and e.info.get("port") == 0x80]


def test_the_docs_page_shows_the_table_and_the_rule_as_they_are():
    from tests.conftest import ROOT
    page = (ROOT / "docs" / "cpu.rst").read_text()
    rows = page.split(".. list-table::", 1)[1]
    for (leaf, sub), regs in platform.HVM_CPUID.items():
        row = f"   * - ``{leaf:#010x}``\n     - {sub}\n" + "".join(
            f"     - ``{r:#010x}``\n" for r in regs)
        assert row in rows, (leaf, sub)
    assert rows.count("   * - ``") == len(platform.HVM_CPUID)
    assert f"takes {_expected_reads(1193)} reads" in page.replace("\n", " ").replace("  ", " ")


def test_rdtsc_while_an_interrupt_waits_for_a_window():
    """With IRQ0 pending and IF = 0 the VMM asks for interrupt-window exits
    (impl then steps the guest): RDTSC reads the same clock there too."""
    # count 20 is a period of 0.9 ms under Xen 3.0.4 (its floor): the spin
    # spends about a millisecond, mostly on the bus (port 0x80, no exit)
    body = """
    mov cx, 1000
spin:
    out 0x80, al
    rdtsc
    loop spin
    out 0xe9, eax
    rdtsc
    out 0xe9, eax
    sti
    nop
    cli
"""
    result = both(_ticking("tsc-window", 20, body))
    assert result.exit["reason"] == "poweroff"
    assert any(e.kind == "vmexit" and e.reason == "interrupt_window" for e in result.trace)
    io = io_clock(result.trace)
    exits = [(e.icount, io[i]) for i, e in enumerate(result.trace)
             if e.kind == "vmexit" and e.info.get("port") == DEBUG_PORT]
    (i1, io1), (i2, io2) = exits
    # the loop's last RDTSC came two instructions (RDTSC, LOOP) before the
    # first OUT; the second RDTSC just before the second OUT
    assert _outs(result) == [clock.tsc(i1 - 2 + io1), clock.tsc(i2 - 1 + io2)]


def _poll_refresh(toggles: int) -> str:
    """rombios' ``delay_ms`` in little: read port 0x61's refresh bit (bit 4),
    then count the reads (ECX) until it has changed ``toggles`` times;
    print ECX."""
    return f"""
    mov esi, {toggles}
    xor ecx, ecx
    in al, 0x61
    and al, 0x10
    mov bl, al
poll:
    inc ecx
    in al, 0x61
    and al, 0x10
    cmp al, bl
    je poll
    mov bl, al
    dec esi
    jnz poll
    mov eax, ecx
    out 0xe9, eax
"""


def _refresh_reads(first: int, toggles: int) -> int:
    """The rule worked by hand: the refresh bit is bit 14 of the clock
    (spec/devices/pit.py, Xen's ``NOW() >> 14`` on the virtual clock); a
    read sees the clock of its exit and costs a port access (spec/clock.py).
    The first IN reads at ``first``; the loop's first IN comes 5
    instructions (that IN, AND, MOV, XOR, INC) and a port access later; a
    read that sees no change is followed by the next 5 instructions (IN,
    AND, CMP, JE, INC) and a port access later, one that sees a change 8
    (with MOV, DEC, JNZ)."""
    port = platform.PORT_ACCESS_NS
    bit = lambda t: t >> 14 & 1                  # noqa: E731
    seen, t = bit(first), first + port + 5
    reads = 0
    while True:
        reads += 1
        now = bit(t)
        if now == seen:
            t += port + 5
            continue
        seen, toggles = now, toggles - 1
        if not toggles:
            return reads
        t += port + 8


@pytest.mark.parametrize("toggles", [1, 10])
def test_a_refresh_delay_loop_takes_the_reads_the_time_rule_gives(toggles):
    """Firmware delays poll port 0x61 bit 4 (rombios' delay_ms: 1.1 million
    reads in one POST): with the bit on the virtual clock and a port access's
    bus time, the loop makes the reads the rule predicts, on both engines,
    and none of them is an ioreq (Xen emulates port 0x61)."""
    result = both(guest("refresh", _poll_refresh(toggles)), max_instructions=1_000_000)
    assert result.exit["reason"] == "poweroff"
    io = io_clock(result.trace)
    reads = [e.icount + io[i] for i, e in enumerate(result.trace)
             if e.kind == "vmexit" and e.info.get("port") == platform.PORT_61]
    assert _outs(result)[0] == len(reads) - 1 == _refresh_reads(reads[0], toggles)
    assert not [e for e in result.trace if e.kind == "ioreq" and e.addr == platform.PORT_61]
    assert toggles == 1 or len(reads) > 16 * toggles     # about 16 reads a toggle


def _ring3_rdtsc(tsd: bool) -> GuestImage:
    """32-bit protected mode: RDTSC at CPL 0, then (IOPL 3) a far return to
    CPL 3 and RDTSC there, each value sent to the debug port; CR4.TSD set
    first when ``tsd``."""
    source = f"""
%include "lib/all.s"
start:
    cli
    enter_pm32
    mov eax, cr4
    or eax, {4 if tsd else 0}
    mov cr4, eax
    rdtsc
    out 0xe9, eax
    pushfd
    or dword ptr [esp], 0x3000
    popfd
    push 0x23
    push 0x6000
    push 0x1b
    mov eax, ring3                  ; (as pm32.s: keystone would read a label sum as memory)
    add eax, 0xf0000
    push eax
    retf
ring3:
    rdtsc
    out 0xe9, eax
    mov dx, PM1A_CNT                ; lib/poweroff.s's S5, without its HLT,
    mov ax, SLP_S5_EN               ; which is #GP at CPL 3
    out dx, ax
spin:
    jmp spin
    flat_gdt more="0x00cffb000000ffff, 0x00cff3000000ffff"    ; ring 3: code 0x18, data 0x20
"""
    name = f"ring3-tsd{int(tsd)}"
    return GuestImage(name, rom_from_source(source, name), source)


def test_cr4_tsd_makes_rdtsc_fault_at_cpl3_only():
    """SDM vol. 2B "RDTSC": with CR4.TSD set, RDTSC at CPL > 0 is #GP(0).
    Without TSD the CPL 3 RDTSC reads the virtual TSC; with it the CPL 0
    one still does, and the CPL 3 one faults before the model's hook: its
    OUT never happens (the #GP is the CPU's, the same on both engines)."""
    free = both(_ring3_rdtsc(False), max_instructions=10_000)
    assert free.exit["reason"] == "poweroff"
    assert len(_outs(free)) == 2
    restricted = both(_ring3_rdtsc(True), max_instructions=10_000)
    assert restricted.exit["reason"] != "poweroff"
    assert _outs(restricted) == _outs(free)[:1]


# --- a timer that falls due inside the bus time of an access ----------------------------------

#: one character on the text screen (so that each display refresh has rows to send)
TEXT_CHAR = """
    mov ax, 0xb800
    mov fs, ax
    mov byte ptr fs:[0], 0x41
"""


def _refreshes(result) -> list[int]:
    """The index of each display update made while the domain ran."""
    return [i for i, e in enumerate(result.trace) if isinstance(e, trace.DisplayUpdate)
            and not any(isinstance(x, trace.DomainShutdown) for x in result.trace[:i])]


def test_bus_time_past_a_deadline_exits_before_the_next_instruction():
    """A ``rep outsb`` of 3,000 bytes is 3 ms of bus time, charged when the
    vcpu resumes: the display refresh due at 1 ms is past at the next VM
    entry, where its deadline, as an instruction count, is below 0. The
    preemption timer armed with a deadline already past exits before any
    instruction executes (SDM vol. 3C 26.7.4); impl took the negative count
    for a budget of 2^64 instructions."""
    body = TEXT_CHAR + """
    mov si, 0
    mov cx, 3000
    mov dx, 0x3ff
    rep outsb
    mov dx, 0x3f8
    mov al, 'k'
    out dx, al
"""
    result = both(guest("bus-past-deadline", body))
    assert result.exit["reason"] == "poweroff" and result.serial == "k"
    (at,) = _refreshes(result)
    entry, timer = result.trace[at - 2:at]
    assert isinstance(entry, trace.VmEntry) and isinstance(timer, trace.VmExit)
    assert timer.reason == "preemption_timer" and (timer.rip, timer.icount) == \
        (entry.rip, entry.icount)
    bus = io_clock(result.trace)[at]
    assert bus >= 3000 * platform.PORT_ACCESS_NS
    assert result.trace[at].icount == entry.icount + bus


def test_no_device_model_pass_between_an_mmio_completion_and_the_entry():
    """The reference completes an MMIO instruction when the vcpu is next
    scheduled after qemu-dm's pass served its ioreq, and enters the guest
    at once; impl serves the ioreq inside the exit (``Vmm.take_served``).
    A refresh due in the bus time of the access comes after that entry, at
    the preemption timer's exit, on both engines; impl made a second pass
    of qemu-dm in the round, so the refresh came before the entry."""
    body = TEXT_CHAR.replace("mov byte ptr fs:[0], 0x41\n", "") + """
    mov ax, 0xa000
    mov es, ax
    mov bx, 0
again:
    mov byte ptr fs:[bx], 0x41
    add bx, 2
    mov di, 0
    mov si, 0
    mov cx, 16
    rep movsb                       ; 16 bytes to the VGA window: one ioreq, 16 us of bus
    cmp bx, 800
    jne again
"""
    result = both(guest("mmio-refresh", body))
    assert result.exit["reason"] == "poweroff"
    refreshes = _refreshes(result)
    assert len(refreshes) >= 5
    for at in refreshes:            # each inside an access's bus time
        done, entry, timer = result.trace[at - 3:at]
        assert isinstance(done, trace.IoreqTransition) and done.type == "copy" \
            and done.new == "NONE"
        assert isinstance(entry, trace.VmEntry) and timer.reason == "preemption_timer"
        assert timer.icount == entry.icount


def test_impl_answers_rdtsc_in_its_c_clock_with_the_virtual_clock():
    """memtest86+ reads the TSC every few instructions; impl answers an
    RDTSC in its C clock (impl/_clock.c ``hvmspec_on_rdtsc``) where it knows
    the block executing, not through Python. A loop of 10,000 RDTSCs in
    slices of 1,000 instructions: every RDTSC after the loop's first pass is
    answered in C, and the last one read the clock at its own instruction:
    the count before it times the TSC's rate (the RDTSC is the loop's third
    instruction; the slices add no bus time)."""
    from impl.vcpu import Vcpu
    source = ("mov ecx, 10000\ntop:\n mov esi, eax\n mov edi, edx\n rdtsc\n dec ecx\n"
              " jnz top\n hlt\n")
    image = GuestImage("tsc-loop", rom_from_source(source, "tsc-loop"))
    cpu = Vcpu(16 << 20)
    cpu.write(image.load_address, image.image)
    while (ex := cpu.run(1000)).reason == "limit":
        pass
    assert ex.reason == "hlt" and ex.icount == 2 + 5 * 10_000
    state = cpu._clock.state
    assert state.tsc_fast + state.tsc_slow == 10_000
    assert state.tsc_slow <= 20 and state.tsc_fast >= 9_980
    last = 1 + 1 + 5 * 9_999 + 2                        # the far jump, mov ecx, ..., then 2
    tsc = cpu.get("rdx") << 32 | cpu.get("rax")
    assert tsc == clock.tsc(last)
