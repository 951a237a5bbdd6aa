"""spec/x86 against Unicorn on generated instructions; the CPU decides.

hypothesis composes instructions across families, operand sizes, modes and
prefixes (``hvmspec.x86diff.generate``) with random registers, flags and
memory, and every case must agree on registers, defined flags, memory and
faults, or match a documented deviation of Unicorn that this machine's CPU
has settled (``DEVIATIONS``). ``HVMSPEC_DIFF_CASES`` sets the number of
cases (10,000 in ``make test``, about 140 s; ``make fuzz`` runs long seeded
campaigns).
"""

import os
import random

import pytest
import unicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import x86_const as X

from hvmspec import x86diff
from spec.x86.vectors import run as run_spec

CASES = int(os.environ.get("HVMSPEC_DIFF_CASES", "10000"))


@settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_spec_agrees_with_unicorn_or_a_known_deviation(data):
    memory_seed = data.draw(st.integers(0, 2**32 - 1))
    case = x86diff.make_case(lambda options: data.draw(st.sampled_from(list(options))),
                             lambda bits: data.draw(st.integers(0, (1 << bits) - 1)),
                             rng_bytes=random.Random(memory_seed).randbytes)
    if case is None:
        return
    result = x86diff.compare(case)
    assert not result.differences or result.deviation, \
        f"{case.describe()}: " + "; ".join(result.differences)


def _unicorn64(code: bytes, regs: dict, memory: bytes):
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(0x1000, 0x2000)
    uc.mem_write(0x1000, code)
    uc.mem_write(0x2000, memory)
    for name, value in regs.items():
        uc.reg_write(getattr(X, "UC_X86_REG_" + name.upper()), value)
    uc.emu_start(0x1000, 0x1000 + len(code))
    return uc


def test_deviation_lock_neg_flags():
    # measured on this machine's CPU: neg of 0x12345678 leaves flags & 0x8d5 = 0x095,
    # with LOCK as without
    code = bytes.fromhex("f0f71b")                     # lock neg dword ptr [rbx]
    spec = run_spec(64, code, {"rbx": 0x2000, "rip": 0x1000}, 0x2,
                    [(0x2000, (0x12345678).to_bytes(4, "little"))], [])
    assert spec.rflags & 0x8D5 == 0x095
    uc = _unicorn64(code, {"rbx": 0x2000}, (0x12345678).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_RFLAGS) & 0x8D5 != 0x095, \
        "Unicorn now gets LOCK NEG right: drop the lock-neg-flags deviation"
    assert "lock-neg-flags" in [d[0] for d in x86diff.DEVIATIONS]


def test_deviation_cmpxchg32_keeps_rax_on_success():
    # measured on this machine's CPU: lock cmpxchg [m32], r32 that succeeds leaves
    # RAX = 0xdeadbeef00001234 as it was
    code = bytes.fromhex("f00fb10b")                   # lock cmpxchg dword ptr [rbx], ecx
    regs = {"rax": 0xDEADBEEF00001234, "rbx": 0x2000, "rcx": 7}
    spec = run_spec(64, code, {**regs, "rip": 0x1000}, 0x2,
                    [(0x2000, (0x1234).to_bytes(4, "little"))], [])
    assert spec.regs["rax"] == 0xDEADBEEF00001234
    assert spec.memory.peek(0x2000, 4) == (7).to_bytes(4, "little")
    uc = _unicorn64(code, regs, (0x1234).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_RAX) != 0xDEADBEEF00001234, \
        "Unicorn now keeps RAX: drop the cmpxchg32-rax-on-success deviation"


# --- the CPU decides ------------------------------------------------------------------------

NATIVE_SOURCE = r"""
#include <stdio.h>
#include <stdint.h>
int main(void) {
    uint32_t m = 0x12345678u; uint64_t fl;
    __asm__ volatile("lock negl %0\n pushfq\n popq %1" : "+m"(m), "=r"(fl) :: "cc");
    printf("lock_neg %llx %llx\n", (unsigned long long)m, (unsigned long long)(fl & 0x8d5));
    uint32_t d = 0x1234; uint64_t rax = 0xdeadbeef00001234ull; uint32_t src = 7;
    __asm__ volatile("lock cmpxchgl %2, %0" : "+m"(d), "+a"(rax) : "r"(src) : "cc");
    printf("cmpxchg32 %llx %llx\n", (unsigned long long)d, (unsigned long long)rax);
    return 0;
}
"""


@pytest.fixture(scope="module")
def cpu_answers(tmp_path_factory):
    """Run the deviating instructions on this machine's CPU: a C program
    compiled now, with the instructions as inline assembly."""
    import platform
    import shutil
    import subprocess
    if platform.machine() != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("the CPU oracle needs an x86-64 host with gcc")
    folder = tmp_path_factory.mktemp("native")
    (folder / "oracle.c").write_text(NATIVE_SOURCE)
    subprocess.run(["gcc", "-O0", "-o", str(folder / "oracle"), str(folder / "oracle.c")],
                   check=True, capture_output=True)
    lines = subprocess.run([str(folder / "oracle")], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    return {ln.split()[0]: [int(x, 16) for x in ln.split()[1:]] for ln in lines if ln}


def test_the_cpu_agrees_with_the_spec_on_lock_neg(cpu_answers):
    result, flags = cpu_answers["lock_neg"]
    spec = run_spec(64, bytes.fromhex("f0f71b"), {"rbx": 0x2000, "rip": 0x1000}, 0x2,
                    [(0x2000, (0x12345678).to_bytes(4, "little"))], [])
    assert int.from_bytes(spec.memory.peek(0x2000, 4), "little") == result
    assert spec.rflags & 0x8D5 == flags


def test_the_cpu_agrees_with_the_spec_on_cmpxchg32(cpu_answers):
    memory, rax = cpu_answers["cmpxchg32"]
    spec = run_spec(64, bytes.fromhex("f00fb10b"),
                    {"rax": 0xDEADBEEF00001234, "rbx": 0x2000, "rcx": 7, "rip": 0x1000}, 0x2,
                    [(0x2000, (0x1234).to_bytes(4, "little"))], [])
    assert spec.regs["rax"] == rax
    assert int.from_bytes(spec.memory.peek(0x2000, 4), "little") == memory
