"""From a VNC client's key events to the PS/2 keyboard's scan codes.

Room: qemu-dm's keyboard map for VNC (Xen 3.x qemu-dm ``vnc.c`` with the
``en-us`` keymap, ``-k en-us``, xm's ``keymap=`` default): an X keysym
names a key cap, the key has a scan code in set 2 (the PS/2 keyboard's
default set, IBM "Keyboard Scan Code Set 2"), and a press or a release is
that code's *make* or *break* bytes. The 8042 translates them to set 1
for the guest when its command byte asks for it; that is the device's
business (:mod:`spec.devices.kbc`). Imports nothing of the model.

A keysym names a character, not a key: ``a`` and ``A`` are the same key,
and so are ``1`` and ``!``; the client sends the Shift key's own events
around it, as a person presses it. Keysyms that no key of the US layout
produces are not mapped (:func:`make`, :func:`break_` return None; the VNC
server drops the event).
"""

from __future__ import annotations

#: the US layout's printable characters by key, unshifted then shifted
_CHARACTERS = {
    0x0E: "`~", 0x16: "1!", 0x1E: "2@", 0x26: "3#", 0x25: "4$", 0x2E: "5%", 0x36: "6^",
    0x3D: "7&", 0x3E: "8*", 0x46: "9(", 0x45: "0)", 0x4E: "-_", 0x55: "=+",
    0x15: "qQ", 0x1D: "wW", 0x24: "eE", 0x2D: "rR", 0x2C: "tT", 0x35: "yY", 0x3C: "uU",
    0x43: "iI", 0x44: "oO", 0x4D: "pP", 0x54: "[{", 0x5B: "]}", 0x5D: "\\|",
    0x1C: "aA", 0x1B: "sS", 0x23: "dD", 0x2B: "fF", 0x34: "gG", 0x33: "hH", 0x3B: "jJ",
    0x42: "kK", 0x4B: "lL", 0x4C: ";:", 0x52: "'\"",
    0x1A: "zZ", 0x22: "xX", 0x21: "cC", 0x2A: "vV", 0x32: "bB", 0x31: "nN", 0x3A: "mM",
    0x41: ",<", 0x49: ".>", 0x4A: "/?", 0x29: "  ",
}

#: keysyms of keys that are not characters (X11 keysymdef.h) -> set 2 code;
#: a code above 0xFF is an extended key (its bytes start with 0xE0)
_KEYS = {
    0xFF08: 0x66, 0xFF09: 0x0D, 0xFF0D: 0x5A, 0xFF1B: 0x76,             # BackSpace Tab Return Esc
    0xFFE1: 0x12, 0xFFE2: 0x59, 0xFFE3: 0x14, 0xFFE4: 0xE014,           # Shift_L/R Control_L/R
    0xFFE9: 0x11, 0xFFEA: 0xE011, 0xFFE5: 0x58, 0xFF7F: 0x77,           # Alt_L/R CapsLock NumLock
    0xFF14: 0x7E,                                                       # Scroll_Lock
    0xFF63: 0xE070, 0xFFFF: 0xE071, 0xFF50: 0xE06C, 0xFF57: 0xE069,     # Insert Delete Home End
    0xFF55: 0xE07D, 0xFF56: 0xE07A,                                     # Prior (PgUp) Next
    0xFF51: 0xE06B, 0xFF52: 0xE075, 0xFF53: 0xE074, 0xFF54: 0xE072,     # Left Up Right Down
    0xFFBE: 0x05, 0xFFBF: 0x06, 0xFFC0: 0x04, 0xFFC1: 0x0C, 0xFFC2: 0x03,  # F1-F5
    0xFFC3: 0x0B, 0xFFC4: 0x83, 0xFFC5: 0x0A, 0xFFC6: 0x01, 0xFFC7: 0x09,  # F6-F10
    0xFFC8: 0x78, 0xFFC9: 0x07,                                         # F11 F12
    0xFF8D: 0xE05A, 0xFFAF: 0xE04A, 0xFFAA: 0x7C, 0xFFAD: 0x7B,         # KP Enter / * -
    0xFFAB: 0x79, 0xFFAE: 0x71,                                         # KP + .
    **{0xFFB0 + d: code for d, code in enumerate(
        (0x70, 0x69, 0x72, 0x7A, 0x6B, 0x73, 0x74, 0x6C, 0x75, 0x7D))},   # KP 0-9
}

KEYSYMS: dict[int, int] = {ord(ch): code for code, chars in _CHARACTERS.items() for ch in chars}
KEYSYMS.update(_KEYS)


def code(keysym: int) -> int | None:
    """The set 2 scan code of the key that produces ``keysym`` (extended
    keys as ``0xE0xx``), or None."""
    return KEYSYMS.get(keysym)


def make(keysym: int) -> bytes | None:
    """The bytes a press sends."""
    c = code(keysym)
    if c is None:
        return None
    return bytes([0xE0, c & 0xFF]) if c > 0xFF else bytes([c])


def break_(keysym: int) -> bytes | None:
    """The bytes a release sends: 0xF0 before the code (after 0xE0)."""
    c = code(keysym)
    if c is None:
        return None
    return bytes([0xE0, 0xF0, c & 0xFF]) if c > 0xFF else bytes([0xF0, c])


def event(keysym: int, down: bool) -> bytes | None:
    """A VNC KeyEvent's bytes."""
    return make(keysym) if down else break_(keysym)
