"""The ctypes face of the clock's fast path (``impl/_clock.c``).

Room: loading the compiled block hook, the layout of its state, and
installing it on a Unicorn instance. No decisions: :mod:`impl.blocks` decodes
blocks, fills the table and answers the blocks the C code sends back.
Imports ctypes, Unicorn's C library handle, and nothing of ``spec/``.

The C code counts a block that it knows (same linear address, size and
decode context, bytes unchanged, the budget not ending inside it) as
retired whole, and calls the slow path for every other block; see
``_clock.c``.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path
from typing import Callable

import unicorn
from unicorn.unicorn_py3.unicorn import uclib

#: entry flags, as in _clock.c
CONTEXT = 1
VERIFY = 2
#: the block may set RFLAGS.IF: in a window, the next block comes to Python
SETS_IF = 4
#: the context of an empty slot
EMPTY = 0xFFFFFFFF


class Entry(ctypes.Structure):
    _fields_ = [("address", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("count", ctypes.c_uint32), ("context", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("host", ctypes.c_void_p * 2),
                ("split", ctypes.c_uint32), ("mode", ctypes.c_uint32),
                ("copy", ctypes.c_void_p), ("frame", ctypes.c_uint32 * 2),
                ("tsc", ctypes.c_void_p)]


class Piece(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("host", ctypes.c_void_p)]


PIECES = 16


SLOW_PATH = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint32)
TSC_PATH = ctypes.CFUNCTYPE(None)


def _library() -> ctypes.CDLL:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_clock{suffix}"
        if path.exists():
            return ctypes.CDLL(str(path))
    raise ImportError(f"impl/_clock.c is not built in {here}: run `make` (pip install -e .) "
                      f"to compile it")


_lib = _library()
SLOTS = _lib.hvmspec_slots()
_lib.hvmspec_slot.restype = ctypes.c_uint32
_lib.hvmspec_slot.argtypes = [ctypes.c_uint64]


class State(ctypes.Structure):
    _fields_ = [("left", ctypes.c_int64), ("end", ctypes.c_uint64),
                ("current", ctypes.c_int64), ("context", ctypes.c_uint32),
                ("quiet", ctypes.c_uint32), ("window", ctypes.c_uint32),
                ("global_context", ctypes.c_uint32), ("slow", ctypes.c_uint64),
                ("slow_path", SLOW_PATH), ("refills", ctypes.c_uint64),
                ("cr3", ctypes.c_uint64), ("mode", ctypes.c_uint32),
                ("paging", ctypes.c_uint32), ("pieces", ctypes.c_uint32),
                ("reserved2", ctypes.c_uint32),
                ("cs_base", ctypes.c_uint64), ("linear_mask", ctypes.c_uint64),
                ("io_ns", ctypes.c_uint64), ("tsc_hz", ctypes.c_uint64),
                ("tsc_fast", ctypes.c_uint64), ("tsc_slow", ctypes.c_uint64),
                ("reg_read", ctypes.c_void_p), ("reg_write", ctypes.c_void_p),
                ("reg_rip", ctypes.c_int32), ("reg_rax", ctypes.c_int32),
                ("reg_rdx", ctypes.c_int32), ("reserved3", ctypes.c_int32),
                ("tsc_path", TSC_PATH), ("piece", Piece * PIECES),
                ("table", Entry * SLOTS)]


assert ctypes.sizeof(Entry) == _lib.hvmspec_entry_size(), "Entry does not match _clock.c"
assert ctypes.sizeof(State) == _lib.hvmspec_clock_size(), "State does not match _clock.c"


def slot(address: int) -> int:
    """The table slot of a block at linear ``address``."""
    return _lib.hvmspec_slot(address)


class BlockClock:
    """The C block hook on one Unicorn instance, and its state."""

    def __init__(self, uc: unicorn.Uc, slow_path: Callable[[int, int], None]) -> None:
        self.state = State()
        self.state.current = -1
        self.clear()
        self._callback = SLOW_PATH(slow_path)       # kept alive as long as the hook
        self.state.slow_path = self._callback
        self._hook(uc, unicorn.UC_HOOK_BLOCK, _lib.hvmspec_on_block)

    def _hook(self, uc: unicorn.Uc, kind: int, function, *extra) -> None:
        """Have Unicorn call the C ``function`` with this clock's state
        (``UC_HOOK_BLOCK``; ``UC_HOOK_INSN`` with the instruction in ``extra``)."""
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind,
                                ctypes.cast(function, ctypes.c_void_p),
                                ctypes.cast(ctypes.byref(self.state), ctypes.c_void_p),
                                ctypes.c_uint64(1), ctypes.c_uint64(0), *extra)
        if err:
            raise unicorn.UcError(err)

    def answer_rdtsc(self, uc: unicorn.Uc, tsc_hz: int, tsc_path: Callable[[], None]) -> None:
        """Answer RDTSC in C (``hvmspec_on_rdtsc``) where the block executing
        is in the table with its RDTSCs listed (:meth:`put`'s ``tsc``), at
        ``tsc_hz``; every other RDTSC calls ``tsc_path``, which answers it."""
        from unicorn import x86_const as X
        state = self.state
        state.tsc_hz = tsc_hz
        state.reg_read = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p)
        state.reg_write = ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p)
        state.reg_rip, state.reg_rax, state.reg_rdx = (X.UC_X86_REG_RIP, X.UC_X86_REG_RAX,
                                                       X.UC_X86_REG_RDX)
        self._tsc_callback = TSC_PATH(tsc_path)     # kept alive as long as the hook
        state.tsc_path = self._tsc_callback
        self._hook(uc, unicorn.UC_HOOK_INSN, _lib.hvmspec_on_rdtsc,
                   ctypes.c_int(X.UC_X86_INS_RDTSC))

    def set_ram(self, pieces: list[tuple[int, int, int]]) -> None:
        """Where guest-physical RAM is in this process: (gpa, size, host
        address) of each piece, for the C clock's page walks; more pieces
        than it holds leave it walking none (every walk then fails, and
        Python decides)."""
        state = self.state
        state.pieces = 0 if len(pieces) > PIECES else len(pieces)
        for i, (start, size, host) in enumerate(pieces[:state.pieces]):
            state.piece[i].start, state.piece[i].size, state.piece[i].host = start, size, host

    def put(self, index: int, address: int, size: int, count: int, context: int, flags: int,
            spans: list[tuple[int, int]], raw: bytes, mode: int = 0,
            frames: tuple[int, ...] = (0, 0), tsc: tuple[tuple[int, int], ...] = ()) -> None:
        """Fill slot ``index``: ``spans`` are (host address, length) of the
        block's bytes, one per page; ``raw`` the bytes themselves; ``mode``
        the decode context's id less the translation and ``frames`` the
        guest-physical frames of its pages, for the C clock's page walk;
        ``tsc`` the (byte offset, instruction index) of each RDTSC in it."""
        entry = self.state.table[index]
        entry.mode = mode
        entry.frame[0] = frames[0]
        entry.frame[1] = frames[-1]
        copy = ctypes.create_string_buffer(raw, len(raw))
        self._copies[index] = copy
        entry.address, entry.size, entry.count = address, size, count
        entry.host[0] = spans[0][0]
        entry.host[1] = spans[1][0] if len(spans) > 1 else 0
        entry.split = spans[0][1]
        entry.copy = ctypes.addressof(copy)
        if tsc:
            pairs = (ctypes.c_uint16 * (2 * len(tsc) + 2))(
                *[v for pair in tsc for v in pair], 0xFFFF, 0xFFFF)
            self._tscs[index] = pairs
            entry.tsc = ctypes.addressof(pairs)
        else:
            self._tscs[index] = None
            entry.tsc = None
        entry.flags = flags
        entry.context = context

    def forget(self, index: int) -> None:
        self.state.table[index].context = EMPTY

    def clear(self) -> None:
        """Forget every block (all ones: EMPTY in every context field)."""
        ctypes.memset(ctypes.addressof(self.state.table), 0xFF, ctypes.sizeof(self.state.table))
        #: the byte copies and the RDTSC lists the entries point at, kept
        #: alive per slot
        self._copies: list[object | None] = [None] * SLOTS
        self._tscs: list[object | None] = [None] * SLOTS
