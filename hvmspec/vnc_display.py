"""qemu-dm's VNC display, wired: the guest's picture to the VNC server, a person's input to qemu-dm.

Room: tool. The VNC back end a host gives its qemu-dms
(:mod:`spec.qemu_dm`, ``vnc_backend``): for each domain whose configuration
asks for a display, a :class:`hvmspec.vnc.VncServer` on the configured
address and display (the first free one for ``vncunused``), a
:class:`Picture` of the domain's screen, and a :class:`Console` that
queues what clients type and point until qemu-dm takes it. Imports
:mod:`spec.trace`, :mod:`spec.platform`, :mod:`spec.dm_config` (the
error qemu-dm stops with) and the tool's :mod:`hvmspec.vnc`,
:mod:`hvmspec.keymap`.

The picture. The VGA's scanner draws it (``picture_rgb()``: width, height,
3 bytes of RGB a pixel); at each display update
(:class:`spec.trace.DisplayUpdate`), in qemu-dm's thread, the picture is
taken and the server sends a copy, so a client sees the image
``--screenshot`` writes, and each update tells the server
(:meth:`hvmspec.vnc.VncServer.changed`), which answers the clients' held
requests: nothing polls.

Input. A ``KeyEvent`` becomes the key's make or break bytes in scan-code
set 2 (:mod:`hvmspec.keymap`; keysyms no US key produces are dropped); a
``PointerEvent`` becomes a movement relative to the last one (the first
only records where the pointer is, as Xen 3.0.4's ``pointer_event``),
its y axis turned up, with VNC's buttons (bit 0 left, 1 middle, 2 right)
as the PS/2 mouse's (left, right, middle) and buttons 4 and 5 as the wheel
(-1, +1). Both wait in the console's queue, in order, until qemu-dm's main
loop takes them; :meth:`Console.wait` lets an engine with nothing to do
wait for them instead of ending the run.
"""

from __future__ import annotations

import errno
import threading
from typing import Callable

from spec import platform, trace
from spec.dm_config import DeviceModelError
from hvmspec import keymap
from hvmspec.vnc import VncServer


class Picture:
    """The domain's screen: the VGA scanner's last picture, thread-safe (the
    model's thread sets it at each display update, the server's thread
    reads it). Before the first refresh, and while the VGA shows nothing
    at all, it is black at the last size (720x400 at first)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._drawn: tuple[int, int, bytes] = (720, 400, bytes(3 * 720 * 400))

    def set(self, picture: tuple[int, int, bytes]) -> None:
        """The whole picture, as the VGA's scanner drew it."""
        width, height, rgb = picture
        with self.lock:
            if not width or not height:
                width, height = self._drawn[:2]
                rgb = bytes(3 * width * height)
            self._drawn = (width, height, rgb)

    def rgb(self) -> tuple[int, int, bytes]:
        """(width, height, 3 bytes a pixel, row after row)."""
        with self.lock:
            return self._drawn

    def snapshot(self) -> tuple[int, int, bytes]:
        """:class:`hvmspec.vnc.Screen`: the pixels as blue, green, red, unused."""
        from PIL import Image
        width, height, rgb = self.rgb()
        return width, height, Image.frombytes("RGB", (width, height), rgb).tobytes("raw", "BGRX")


class Console:
    """One domain's VNC input queue and its server."""

    def __init__(self, domid: int, on_input: Callable[[], None] = lambda: None,
                 vga=None) -> None:
        self.domid = domid
        self.on_input = on_input
        #: the domain's VGA: when it draws its own picture (``picture_rgb()``),
        #: the picture is taken from it at each update, in qemu-dm's thread
        self.vga = vga if hasattr(vga, "picture_rgb") else None
        self.server: VncServer | None = None
        self.port = 0
        self.picture = Picture()
        self._items: list[tuple] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._closed = False
        self._last: tuple[int, int] | None = None

    # --- the server's thread ---------------------------------------------------------

    def key(self, keysym: int, down: bool) -> None:
        codes = keymap.event(keysym, down)
        if codes is not None:
            self._put(("keys", codes))

    def pointer(self, x: int, y: int, mask: int) -> None:
        buttons = (mask & 1) | (mask & 2) << 1 | (mask & 4) >> 1
        dz = -1 if mask & 0x08 else 1 if mask & 0x10 else 0
        last, self._last = self._last, (x, y)
        if last is not None:
            self._put(("mouse", x - last[0], last[1] - y, dz, buttons))

    def _put(self, item: tuple) -> None:
        with self._lock:
            self._items.append(item)
        self._arrived.set()
        self.on_input()

    # --- qemu-dm's thread --------------------------------------------------------------

    def take(self) -> list[tuple]:
        """What arrived since the last call, in order (without waiting)."""
        if not self._arrived.is_set():
            return []
        with self._lock:
            items, self._items = self._items, []
            self._arrived.clear()
        return items

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for input; False once the console is closed."""
        if self._closed:
            return False
        self._arrived.wait(seconds)
        return not self._closed

    def display_update(self, event: trace.Event) -> None:
        if isinstance(event, trace.DisplayUpdate):
            if self.vga is not None:
                self.picture.set(self.vga.picture_rgb())
            if self.server is not None:
                self.server.changed(event.rects)

    def close(self) -> None:
        """qemu-dm stops: the server goes, and every client with it (once)."""
        if self._closed:
            return
        self._closed = True
        self._arrived.set()
        if self.server is not None:
            self.server.stop()


class VncBackend:
    """The host's VNC back end: ``backend(domid, listen, display, unused,
    password)`` is what qemu-dm calls (:mod:`spec.qemu_dm`); ``log`` gets
    the servers' lines (a client connected, dropped, a wrong password);
    ``on_input`` is called (in the server's thread) when input arrives, for
    a scheduler that sleeps between rounds."""

    def __init__(self, log: Callable[[str], None] = lambda line: None,
                 on_input: Callable[[], None] = lambda: None) -> None:
        self.log = log
        self.on_input = on_input
        self.consoles: dict[int, Console] = {}

    def __call__(self, domid: int, listen: str, display: int, unused: bool,
                 password: str, vga=None) -> Console:
        console = Console(domid, self.on_input, vga)
        while True:
            server = VncServer(console.picture, listen, platform.VNC_BASE_PORT + display,
                               password or None, name=f"hvmspec domain {domid}",
                               on_key=console.key, on_pointer=console.pointer, log=self.log)
            try:
                server.start()
                break
            except OSError as exc:
                if unused and exc.errno == errno.EADDRINUSE \
                        and display < platform.VNC_MAX_DISPLAY:
                    display += 1
                    continue
                raise DeviceModelError(
                    f"qemu-dm: cannot listen for VNC on {listen}:"
                    f"{platform.VNC_BASE_PORT + display} (display {display}): "
                    f"{exc.strerror or exc}") from None
        console.server, console.port = server, server.port
        self.consoles[domid] = console
        self.log(f"vnc: domain {domid}: display :{display} on {listen}:{server.port}"
                 f"{' (password)' if password else ''}")
        return console

    def listener(self, domid: int | None = None) -> Callable[[trace.Event], None]:
        """A trace listener that takes domain ``domid``'s display updates to
        its console (None: every console's; a run has one domain)."""
        def listen(event: trace.Event) -> None:
            if not isinstance(event, trace.DisplayUpdate):
                return
            for console in ([self.consoles.get(domid)] if domid is not None
                            else list(self.consoles.values())):
                if console is not None:
                    console.display_update(event)
        return listen

    def close(self) -> None:
        for console in list(self.consoles.values()):
            console.close()
