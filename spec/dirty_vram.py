"""Xen's tracking of dirty video memory: which pages of the guest's frame
buffer were written since the device model last looked.

Room: the VMM's side of ``HVMOP_track_dirty_vram``
(``xen/include/public/hvm/hvm_op.h``; with hardware-assisted paging,
``hap_track_dirty_vram`` in ``xen/arch/x86/mm/hap/hap.c``). Imports
:mod:`spec.platform`. The page protection itself is the hardware's (the EPT
entries' write permission), reached through ``protect``.

qemu-dm's video memory is mapped into the guest, so the guest's writes to it
cause no exit and nothing tells qemu-dm that the screen changed. It asks Xen
instead, once per display refresh, with ``HVMOP_track_dirty_vram(domid,
first_pfn, nr, bitmap)``:

1. A call for a range that is not the one being tracked starts tracking it:
   every page of the range becomes *log-dirty* (``p2m_ram_logdirty``:
   readable, not writable in the EPT) and the call reports **every** page
   dirty, since nothing is known about them.
2. A guest write to a log-dirty page is an EPT violation. Xen marks the
   page dirty, makes it writable (``p2m_ram_rw``) and resumes the guest,
   which retries the write: one exit per page per refresh, however many
   writes follow.
3. A later call for the same range reports the pages dirtied since the
   previous call, clears their bits and makes them log-dirty again.
4. Xen's own writes into the range (``hvm_copy_to_guest_*``, e.g. the data
   of a ``rep ins`` into video memory) mark the pages dirty too
   (``paging_mark_dirty``), without a fault.

A call with ``nr = 0`` stops tracking; the pages become writable again.

**Watched ranges.** The guest's "hardware" here is an emulated CPU
(Unicorn), on which changing one page's write permission re-lays its whole
address map: the cost grows with the number of separately protected pages,
milliseconds each once there are a thousand. That is harmless for the text
page (8 pages) and the chain-4 window (16 or 32), and ruinous for a linear
frame buffer (2048 pages of 8 MiB, most of them written each frame). A
range of more than :data:`WATCH_PAGES` pages is therefore *watched*
instead: it stays writable, and the hardware reports each store into it
(``watch``), which marks its page dirty. The bitmap qemu-dm reads is the
same as under write protection; what differs is that those stores take no
log-dirty exit (Xen handles that exit itself, so no ioreq, device or
display depends on it). Both engines use the same rule.
"""

from __future__ import annotations

from typing import Callable

from spec import platform

#: the most pages a tracked range has and still be write-protected (module docstring)
WATCH_PAGES = 64


class DirtyVram:
    """One domain's tracked video-memory range and its dirty bitmap.

    ``protect(pfn, writable)`` sets the EPT write permission of one page;
    ``watch(first_pfn, nr)`` has the hardware report stores into a range
    to :meth:`stored` (``nr = 0``: stop)."""

    def __init__(self, protect: Callable[[int, bool], None],
                 watch: Callable[[int, int], None] = lambda first_pfn, nr: None) -> None:
        self.protect = protect
        self.watch = watch
        self.first_pfn = 0
        self.nr = 0
        self.dirty = 0          # bit i: page first_pfn + i written since the last call

    @property
    def watched(self) -> bool:
        return self.nr > WATCH_PAGES

    def tracks(self, pfn: int) -> bool:
        return self.first_pfn <= pfn < self.first_pfn + self.nr

    def track(self, first_pfn: int, nr: int) -> int:
        """``HVMOP_track_dirty_vram``: the bitmap of dirty pages (bit i for
        page ``first_pfn + i``), steps 1, 3 and the stop case above."""
        if (first_pfn, nr) != (self.first_pfn, self.nr):
            if self.watched:
                self.watch(0, 0)
            else:
                for pfn in range(self.first_pfn, self.first_pfn + self.nr):
                    self.protect(pfn, True)
            self.first_pfn, self.nr, self.dirty = first_pfn, nr, (1 << nr) - 1
            if self.watched:
                self.watch(first_pfn, nr)
        bitmap, self.dirty = self.dirty, 0
        if not self.watched:
            for i in range(nr):
                if bitmap >> i & 1:
                    self.protect(first_pfn + i, False)
        return bitmap

    def stored(self, gpa: int, size: int) -> None:
        """The hardware saw a store of ``size`` bytes at ``gpa`` in a watched range."""
        for pfn in {gpa >> platform.PAGE_SHIFT, (gpa + size - 1) >> platform.PAGE_SHIFT}:
            if self.tracks(pfn):
                self.dirty |= 1 << (pfn - self.first_pfn)

    def write_fault(self, gpa: int) -> bool:
        """Step 2: the guest wrote to a log-dirty page. False if the page is
        not tracked (then the fault is not the tracker's)."""
        pfn = gpa >> platform.PAGE_SHIFT
        if not self.tracks(pfn):
            return False
        self.dirty |= 1 << (pfn - self.first_pfn)
        self.protect(pfn, True)
        return True

    def copied(self, gpa: int, length: int) -> None:
        """Step 4: Xen wrote ``length`` bytes at ``gpa`` on the guest's behalf."""
        if not self.nr or length <= 0:
            return
        for pfn in range(gpa >> platform.PAGE_SHIFT, (gpa + length - 1 >> platform.PAGE_SHIFT) + 1):
            if self.tracks(pfn):
                self.dirty |= 1 << (pfn - self.first_pfn)

    def pending(self) -> bool:
        """Whether any page is dirty now (what the next call would report)."""
        return self.dirty != 0
