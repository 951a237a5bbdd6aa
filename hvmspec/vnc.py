"""qemu-dm's VNC server: the guest's screen over RFB 3.8, and its keyboard and mouse.

Room: the transport and the Remote Framebuffer protocol (RFC 6143; RFB
3.3, 3.7 and 3.8 clients), as ``vnc=1`` in an xm config gave Xen users
(Xen 3.x's qemu-dm ``vnc.c``). What the screen shows comes from a
:class:`Screen` (the display scanner's picture); what the person types goes
to callbacks (the 8042's keyboard and mouse). Nothing here knows about
the VGA or the guest. Imports asyncio, Cryptodome (DES, for VNC
authentication).

* Security: *None* without a password, *VNC authentication* with one
  (``vncpasswd``): a 16-byte random challenge, which the client encrypts
  with DES under the password (at most 8 characters, each byte's bits
  reversed, as every VNC implementation does). A wrong answer gets
  ``SecurityResult`` failed with a reason, and the connection is closed.
* Pixels: the server's format is 32 bits per pixel, true colour, red at
  bit 16, green at 8, blue at 0, little-endian. A client may set any
  true-colour format (8, 16 or 32 bits per pixel, any shifts and maxima,
  either byte order); colour-map formats are refused.
* Updates: a client asks with ``FramebufferUpdateRequest``. A full
  request gets the whole area as Raw; an incremental one gets the
  rectangles that changed since what that client was last sent, and waits
  until something changes when nothing has. A screen that scrolled is
  sent as one CopyRect and the rows that appeared, when the client accepts
  CopyRect. A new screen size is announced with the DesktopSize
  pseudo-encoding to clients that accept it.
* Input: ``KeyEvent`` (X keysym, down or up) and ``PointerEvent`` (buttons,
  position) go to the callbacks; ``ClientCutText`` is read and ignored.
* Several clients at once. A client that sends an unknown message, a
  malformed one, or goes away in the middle of one is dropped alone, with a
  line on the log; the guest and the other clients go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

VERSION = b"RFB 003.008\n"
SEC_NONE, SEC_VNC_AUTH = 1, 2
ENC_RAW, ENC_COPYRECT, ENC_DESKTOP_SIZE = 0, 1, -223
#: rows compared at once when looking for changes
STRIP = 16


class Screen(Protocol):
    """What the server shows: ``snapshot()`` returns (width, height, pixels),
    the pixels 4 bytes each (blue, green, red, unused: the server's format)
    row after row."""

    def snapshot(self) -> tuple[int, int, bytes]: ...


class VncError(Exception):
    """A client broke the protocol: it is dropped."""


@dataclass(frozen=True)
class PixelFormat:
    """RFB's PIXEL_FORMAT (RFC 6143, 7.4)."""

    bpp: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    def pack(self) -> bytes:
        return struct.pack(">BBBBHHHBBBxxx", self.bpp, self.depth, self.big_endian,
                           self.true_colour, self.red_max, self.green_max, self.blue_max,
                           self.red_shift, self.green_shift, self.blue_shift)

    @classmethod
    def unpack(cls, raw: bytes) -> "PixelFormat":
        f = cls(*struct.unpack(">BBBBHHHBBBxxx", raw))
        if f.bpp not in (8, 16, 32) or not f.true_colour:
            raise VncError(f"pixel format of {f.bpp} bits per pixel, "
                           f"{'true colour' if f.true_colour else 'colour map'}: not served")
        return f

    def convert(self, pixels: bytes) -> bytes:
        """Server-format pixels (B, G, R, x) in this format."""
        if self == NATIVE:
            return pixels
        if (self.bpp, self.red_max, self.green_max, self.blue_max) == (32, 255, 255, 255):
            return _shuffle32(pixels, self)
        out = bytearray()
        size, order = self.bpp // 8, "big" if self.big_endian else "little"
        cache: dict[bytes, bytes] = {}
        for i in range(0, len(pixels), 4):
            px = pixels[i:i + 4]
            word = cache.get(px)
            if word is None:
                b, g, r = px[0], px[1], px[2]
                value = (r * self.red_max // 255 << self.red_shift
                         | g * self.green_max // 255 << self.green_shift
                         | b * self.blue_max // 255 << self.blue_shift)
                word = cache[px] = value.to_bytes(size, order)
            out += word
        return bytes(out)


NATIVE = PixelFormat()


def _shuffle32(pixels: bytes, f: PixelFormat) -> bytes:
    """32-bit formats with 8-bit channels: move the bytes into place."""
    out = bytearray(len(pixels))
    for channel, shift in ((2, f.red_shift), (1, f.green_shift), (0, f.blue_shift)):
        byte = shift // 8 if not f.big_endian else 3 - shift // 8
        out[byte::4] = pixels[channel::4]
    return bytes(out)


def vnc_key(password: str) -> bytes:
    """The DES key of a VNC password: 8 bytes, NUL-padded, each byte's bits
    reversed."""
    raw = password.encode("latin-1")[:8].ljust(8, b"\0")
    return bytes(int(f"{b:08b}"[::-1], 2) for b in raw)


def vnc_response(password: str, challenge: bytes) -> bytes:
    """What a client answers to ``challenge`` knowing ``password``."""
    from Cryptodome.Cipher import DES
    return DES.new(vnc_key(password), DES.MODE_ECB).encrypt(challenge)


# --- one client ----------------------------------------------------------------------------

@dataclass
class Client:
    name: str
    writer: asyncio.StreamWriter
    format: PixelFormat = NATIVE
    encodings: tuple[int, ...] = (ENC_RAW,)
    last: tuple[int, int, bytes] | None = None    # what it was last sent
    #: rows the scanner reported changed since ``last`` (the server's
    #: ``changed(rects)``); None: unknown, every row is compared
    dirty: set[int] | None = None
    waiting: tuple[int, int, int, int] | None = None   # an incremental request held
    sent_updates: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class VncServer:
    """The server on ``host:port`` (display *N* is port 5900 + *N*)."""

    def __init__(self, screen: Screen, host: str = "127.0.0.1", port: int = 5900,
                 password: str | None = None, name: str = "hvmspec",
                 on_key: Callable[[int, bool], None] = lambda keysym, down: None,
                 on_pointer: Callable[[int, int, int], None] = lambda x, y, buttons: None,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.screen, self.host, self.port = screen, host, port
        self.password, self.name = password, name
        self.on_key, self.on_pointer, self.log = on_key, on_pointer, log
        self.clients: list[Client] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: a caller gives the scanner's dirty rectangles (:meth:`changed`)
        self.by_rects = False

    # --- running in a thread of its own ------------------------------------------------

    def start(self) -> "VncServer":
        """Serve from a background thread; returns once listening (raises
        OSError if the address cannot be bound)."""
        self._thread = threading.Thread(target=self._run, name="vnc", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port))
            self.port = self.server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def stop(self) -> None:
        if self.loop is None or self._thread is None or self.loop.is_closed():
            return

        async def close() -> None:
            self.server.close()
            for c in list(self.clients):
                c.writer.close()
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(close(), self.loop)
        self._thread.join(timeout=5)

    def changed(self, rects: list | None = None) -> None:
        """The screen changed (from any thread): answer held requests.
        ``rects`` (``[x, y, width, height]`` each, the display scanner's
        dirty rectangles) says where; once a caller has given them, only
        the rows they cover are compared with what each client has."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._changed, rects)

    def _changed(self, rects: list | None) -> None:
        if rects is not None:
            self.by_rects = True
        for client in list(self.clients):
            if rects is None:
                client.dirty = None
            elif client.dirty is not None:
                client.dirty.update(y for _, top, _, h in rects for y in range(top, top + h))
            if client.waiting is not None:
                self.loop.create_task(self._answer(client))

    # --- the protocol -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        client = None
        try:
            if not await self._handshake(reader, writer, name):
                return
            client = Client(name, writer)
            self.clients.append(client)
            while True:
                await self._message(reader, client)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.log(f"vnc: {name} went away")
        except (VncError, struct.error, ValueError) as exc:
            self.log(f"vnc: {name} dropped: {exc}")
        except Exception as exc:                       # noqa: BLE001 - one client only
            self.log(f"vnc: {name} dropped after an internal error: "
                     f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None and client in self.clients:
                self.clients.remove(client)
            writer.close()

    async def _handshake(self, reader, writer, name: str) -> bool:
        writer.write(VERSION)
        version = await reader.readexactly(12)
        if version not in (b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"):
            raise VncError(f"protocol version {version!r}")
        minor = int(version[8:11])
        kind = SEC_VNC_AUTH if self.password is not None else SEC_NONE
        if minor == 3:
            writer.write(struct.pack(">I", kind))
        else:
            writer.write(bytes([1, kind]))
            chosen = (await reader.readexactly(1))[0]
            if chosen != kind:
                raise VncError(f"security type {chosen} (offered {kind})")
        if kind == SEC_VNC_AUTH:
            challenge = os.urandom(16)
            writer.write(challenge)
            answer = await reader.readexactly(16)
            if answer != vnc_response(self.password, challenge):
                reason = b"authentication failed"
                writer.write(struct.pack(">I", 1)
                             + (struct.pack(">I", len(reason)) + reason if minor == 8 else b""))
                await writer.drain()
                self.log(f"vnc: {name}: wrong password")
                return False
            writer.write(struct.pack(">I", 0))
        elif minor == 8:
            writer.write(struct.pack(">I", 0))
        await reader.readexactly(1)                   # ClientInit: shared flag
        width, height, _ = self.screen.snapshot()
        name_bytes = self.name.encode()
        writer.write(struct.pack(">HH", width, height) + NATIVE.pack()
                     + struct.pack(">I", len(name_bytes)) + name_bytes)
        await writer.drain()
        self.log(f"vnc: {name} connected")
        return True

    async def _message(self, reader, client: Client) -> None:
        kind = (await reader.readexactly(1))[0]
        if kind == 0:                                   # SetPixelFormat
            raw = await reader.readexactly(19)
            client.format = PixelFormat.unpack(raw[3:])
            client.last = None
        elif kind == 2:                                 # SetEncodings
            _pad, count = struct.unpack(">BH", await reader.readexactly(3))
            client.encodings = struct.unpack(f">{count}i", await reader.readexactly(4 * count))
        elif kind == 3:                                 # FramebufferUpdateRequest
            incremental, *area = struct.unpack(">BHHHH", await reader.readexactly(9))
            if not incremental:
                client.last = None
            client.waiting = tuple(area)
            await self._answer(client)
        elif kind == 4:                                 # KeyEvent
            down, keysym = struct.unpack(">BxxI", await reader.readexactly(7))
            self.on_key(keysym, bool(down))
        elif kind == 5:                                 # PointerEvent
            buttons, x, y = struct.unpack(">BHH", await reader.readexactly(5))
            self.on_pointer(x, y, buttons)
        elif kind == 6:                                 # ClientCutText
            (length,) = struct.unpack(">xxxI", await reader.readexactly(7))
            if length > 1 << 20:
                raise VncError(f"cut text of {length} bytes")
            await reader.readexactly(length)
        else:
            raise VncError(f"unknown message type {kind}")

    async def _answer(self, client: Client) -> None:
        """Send what ``client`` waits for, if anything is to be sent."""
        async with client.lock:
            if client.waiting is None:
                return
            width, height, pixels = self.screen.snapshot()
            rows = client.dirty if self.by_rects else None
            rects = _update(client, width, height, pixels, rows)
            client.last = _seen(client.last, width, height, pixels, rows)
            client.dirty = set() if self.by_rects else None
            if not rects:
                return                                  # held until the screen changes
            client.waiting = None
            client.writer.write(struct.pack(">BxH", 0, len(rects)) + b"".join(rects))
            client.sent_updates += 1
            try:
                await client.writer.drain()
            except ConnectionError:
                pass


def _seen(last, width: int, height: int, pixels: bytes, rows: set[int] | None):
    """What a client holds after an update from ``pixels`` that looked only
    at ``rows`` (None: all): the other rows stay as it had them, so that a
    change the scanner reports later is still sent."""
    if rows is None or last is None or (last[0], last[1]) != (width, height):
        return (width, height, pixels)
    stride, held = 4 * width, bytearray(last[2])
    for y in rows:
        if 0 <= y < height:
            held[y * stride:(y + 1) * stride] = pixels[y * stride:(y + 1) * stride]
    return (width, height, bytes(held))


def _update(client: Client, width: int, height: int, pixels: bytes,
            rows: set[int] | None = None) -> list[bytes]:
    """The rectangles (encoded) that bring ``client`` from what it has to
    ``pixels``, looking only at ``rows`` when given (the scanner's dirty
    rows: the others are known not to have changed)."""
    last = client.last
    if last is not None and (last[0], last[1]) != (width, height):
        if ENC_DESKTOP_SIZE in client.encodings:
            return [struct.pack(">HHHHi", 0, 0, width, height, ENC_DESKTOP_SIZE),
                    _raw(client, width, pixels, 0, 0, width, height)]
        last = None
    if last is None:
        return [_raw(client, width, pixels, 0, 0, width, height)]
    if last[2] == pixels or rows is not None and not rows:
        return []
    if rows is not None:        # only those rows: the held picture elsewhere
        pixels = _seen(last, width, height, pixels, rows)[2]
    out = []
    stride = 4 * width
    old_rows = [last[2][y * stride:(y + 1) * stride] for y in range(height)]
    new_rows = [pixels[y * stride:(y + 1) * stride] for y in range(height)]
    shift = _scroll(old_rows, new_rows) if ENC_COPYRECT in client.encodings else 0
    if shift:
        out.append(struct.pack(">HHHHiHH", 0, 0, width, height - shift, ENC_COPYRECT,
                               0, shift))
        old_rows = old_rows[shift:] + old_rows[:shift]
    for y0 in range(0, height, STRIP):
        y1 = min(height, y0 + STRIP)
        changed = [y for y in range(y0, y1) if old_rows[y] != new_rows[y]]
        if not changed:
            continue
        top, bottom = changed[0], changed[-1] + 1
        left, right = width, 0
        for y in changed:
            a, b = old_rows[y], new_rows[y]
            first = next(x for x in range(width) if a[4 * x:4 * x + 4] != b[4 * x:4 * x + 4])
            last_x = next(x for x in reversed(range(width))
                          if a[4 * x:4 * x + 4] != b[4 * x:4 * x + 4])
            left, right = min(left, first), max(right, last_x + 1)
        out.append(_raw(client, width, pixels, left, top, right - left, bottom - top))
    return out


def _scroll(old_rows: list[bytes], new_rows: list[bytes]) -> int:
    """How many rows the screen moved up, if it scrolled (more than half its
    rows reappear that many rows higher), else 0."""
    height = len(new_rows)
    where: dict[bytes, int] = {}
    for y, row in enumerate(old_rows):
        where.setdefault(hashlib.blake2b(row, digest_size=8).digest(), y)
    votes: dict[int, int] = {}
    for y, row in enumerate(new_rows):
        if row == old_rows[y]:
            continue
        at = where.get(hashlib.blake2b(row, digest_size=8).digest())
        if at is not None and at > y:
            votes[at - y] = votes.get(at - y, 0) + 1
    if not votes:
        return 0
    shift, count = max(votes.items(), key=lambda kv: kv[1])
    ok = sum(new_rows[y] == old_rows[y + shift] for y in range(height - shift))
    return shift if ok * 2 > height else 0


def _raw(client: Client, width: int, pixels: bytes, x: int, y: int, w: int, h: int) -> bytes:
    stride = 4 * width
    body = b"".join(pixels[row * stride + 4 * x:row * stride + 4 * (x + w)]
                    for row in range(y, y + h))
    return struct.pack(">HHHHi", x, y, w, h, ENC_RAW) + client.format.convert(body)
