"""qemu-dm's VNC server (hvmspec/vnc.py) with a real client (vncdotool's
``vncdo``) and with a hand-driven RFB client for what vncdo does not show
(incremental updates, CopyRect, pixel formats, misbehaving clients)."""

import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from hvmspec.vnc import ENC_COPYRECT, ENC_RAW, VncServer, vnc_response

VNCDO = str(Path(sys.executable).with_name("vncdo"))


class Picture:
    """A screen whose pixels a test sets (B, G, R, x per pixel)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytes(self.pattern(0))
        self.lock = threading.Lock()

    def pattern(self, seed: int) -> bytearray:
        out = bytearray()
        for y in range(self.height):
            for x in range(self.width):
                out += bytes([(x * 4 + seed) & 255, (y * 5 + seed) & 255, (x ^ y) & 255, 0])
        return out

    def snapshot(self):
        with self.lock:
            return self.width, self.height, self.pixels


@pytest.fixture
def served():
    picture, keys, log = Picture(64, 48), [], []
    server = VncServer(picture, port=0, on_key=lambda k, d: keys.append((k, d)),
                       log=log.append).start()
    yield server, picture, keys, log
    server.stop()


def _vncdo(server, *args, password=None):
    cmd = [VNCDO, "-s", f"127.0.0.1::{server.port}"]
    if password is not None:
        cmd += ["-p", password]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def _rgb(picture: Picture) -> bytes:
    p = picture.pixels
    return b"".join(bytes([p[i + 2], p[i + 1], p[i]]) for i in range(0, len(p), 4))


def test_a_vnc_client_sees_the_screen_and_types(served, tmp_path):
    server, picture, keys, _ = served
    done = _vncdo(server, "capture", str(tmp_path / "s.png"), "type", "hi", "key", "enter")
    assert done.returncode == 0, done.stderr
    image = Image.open(tmp_path / "s.png").convert("RGB")
    assert image.size == (64, 48) and image.tobytes() == _rgb(picture)
    downs = [k for k, down in keys if down]
    assert downs == [ord("h"), ord("i"), 0xFF0D]
    assert len(keys) == 6                               # each key also released


def test_vnc_authentication(tmp_path):
    picture, log = Picture(16, 8), []
    server = VncServer(picture, port=0, password="s3cret", log=log.append).start()
    try:
        assert _vncdo(server, "capture", str(tmp_path / "a.png"), password="s3cret"
                      ).returncode == 0
        wrong = _vncdo(server, "capture", str(tmp_path / "b.png"), password="guess")
        assert wrong.returncode != 0 and not (tmp_path / "b.png").exists()
        assert any("wrong password" in line for line in log)
        assert _vncdo(server, "capture", str(tmp_path / "c.png"), password="s3cret"
                      ).returncode == 0                 # still serving
    finally:
        server.stop()


def test_several_clients_at_once(served, tmp_path):
    server, picture, _, _ = served
    procs = [subprocess.Popen([VNCDO, "-s", f"127.0.0.1::{server.port}", "capture",
                               str(tmp_path / f"{i}.png")]) for i in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    for i in range(4):
        assert Image.open(tmp_path / f"{i}.png").convert("RGB").tobytes() == _rgb(picture)


# --- a hand-driven client --------------------------------------------------------------------

class Rfb:
    def __init__(self, port: int, encodings=(ENC_RAW,), password=None) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert self.recv(12) == b"RFB 003.008\n"
        self.s.sendall(b"RFB 003.008\n")
        count = self.recv(1)[0]
        kinds = self.recv(count)
        self.s.sendall(kinds[:1])
        if kinds[0] == 2:
            self.s.sendall(vnc_response(password, self.recv(16)))
        assert struct.unpack(">I", self.recv(4)) == (0,)
        self.s.sendall(b"\x01")
        self.width, self.height = struct.unpack(">HH", self.recv(4))
        self.recv(16)
        self.recv(struct.unpack(">I", self.recv(4))[0])
        self.s.sendall(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
        self.bytes_per_pixel = 4

    def set_format(self, bpp: int, *rest: int) -> None:
        """SetPixelFormat: bits per pixel, depth, big-endian, true colour,
        the three maxima and the three shifts."""
        self.s.sendall(struct.pack(">BxxxBBBBHHHBBBxxx", 0, bpp, *rest))
        self.bytes_per_pixel = bpp // 8

    def recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def request(self, incremental: bool) -> list[tuple]:
        self.s.sendall(struct.pack(">BBHHHH", 3, incremental, 0, 0, self.width, self.height))
        kind, count = struct.unpack(">BxH", self.recv(4))
        assert kind == 0
        rects = []
        for _ in range(count):
            x, y, w, h, enc = struct.unpack(">HHHHi", self.recv(12))
            if enc == ENC_RAW:
                rects.append(("raw", x, y, w, h, self.recv(self.bytes_per_pixel * w * h)))
            elif enc == ENC_COPYRECT:
                rects.append(("copy", x, y, w, h, struct.unpack(">HH", self.recv(4))))
            else:
                rects.append(("other", x, y, w, h, enc))
        return rects


def test_incremental_updates_send_what_changed_and_wait_when_nothing_did(served):
    server, picture, _, _ = served
    client = Rfb(server.port)
    [full] = client.request(False)
    assert full[:5] == ("raw", 0, 0, 64, 48) and full[5] == picture.pixels
    pixels = bytearray(picture.pixels)
    pixels[(20 * 64 + 30) * 4:(20 * 64 + 33) * 4] = b"\xff" * 12      # 3 pixels of row 20
    answer: list = []
    waiter = threading.Thread(target=lambda: answer.append(client.request(True)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()                              # nothing changed yet: held
    with picture.lock:
        picture.pixels = bytes(pixels)
    server.changed()
    waiter.join(10)
    [[rect]] = answer
    assert rect[:5] == ("raw", 30, 20, 3, 1) and rect[5] == b"\xff" * 12


def test_a_scrolled_screen_is_one_copyrect_and_the_new_rows(served):
    server, picture, _, _ = served
    client = Rfb(server.port, encodings=(ENC_COPYRECT, ENC_RAW))
    client.request(False)
    stride = 64 * 4
    scrolled = picture.pixels[8 * stride:] + bytes(8 * stride)       # up by 8 rows
    with picture.lock:
        picture.pixels = scrolled
    rects = client.request(True)
    assert rects[0] == ("copy", 0, 0, 64, 40, (0, 8))
    assert [r[:5] for r in rects[1:]] == [("raw", 0, 40, 64, 8)]


def test_a_client_in_16_bit_colour_gets_16_bit_pixels(served):
    server, picture, _, _ = served
    client = Rfb(server.port)
    client.set_format(16, 16, 0, 1, 31, 63, 31, 11, 5, 0)
    [full] = client.request(False)
    data = full[5]
    assert len(data) == 64 * 48 * 2
    b, g, r = picture.pixels[0:3]
    assert struct.unpack("<H", data[0:2])[0] == (r * 31 // 255) << 11 | (g * 63 // 255) << 5 \
        | b * 31 // 255


@pytest.mark.parametrize("junk", [b"RFB 009.000\n", b"RFB 003.008\n\x07",
                                  b"RFB 003.008\n\x01\x01\x09", b"RFB 003.008\n\x01\x01\x00\x00"])
def test_a_client_that_misbehaves_is_dropped_alone(served, junk, tmp_path):
    """A wrong version, a wrong security type, an unknown message, a message
    cut short: that client goes, and a well-behaved one still gets the
    screen."""
    server, picture, _, log = served
    good = Rfb(server.port)
    bad = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    bad.recv(12)
    bad.sendall(junk)
    bad.close()
    [full] = good.request(False)
    assert full[5] == picture.pixels
    assert _vncdo(server, "capture", str(tmp_path / "x.png")).returncode == 0


def test_with_the_scanners_rectangles_only_their_rows_are_compared(served):
    """Once the server is told where the screen changed (the display
    scanner's rectangles), an update covers those rows only; a change
    outside them is sent when it is reported."""
    server, picture, _, _ = served
    client = Rfb(server.port)
    client.request(False)
    server.changed([])                                    # rectangles from now on
    pixels = bytearray(picture.pixels)
    pixels[10 * 64 * 4:(10 * 64 + 2) * 4] = b"\xff" * 8    # row 10, reported
    pixels[30 * 64 * 4:(30 * 64 + 2) * 4] = b"\xee" * 8    # row 30, not yet
    for rects, row, byte in (([[0, 10, 64, 1]], 10, b"\xff"), ([[0, 30, 64, 1]], 30, b"\xee")):
        answer: list = []
        waiter = threading.Thread(target=lambda: answer.append(client.request(True)))
        waiter.start()
        waiter.join(0.3)
        with picture.lock:
            picture.pixels = bytes(pixels)
        server.changed(rects)
        waiter.join(10)
        [[rect]] = answer
        assert rect[:5] == ("raw", 0, row, 2, 1) and rect[5] == byte * 8
