"""VNC keysyms to PS/2 scan codes (hvmspec/keymap.py), checked through the
8042's translation against the set 1 (XT) codes a guest reads."""

from hvmspec import keymap
from spec.devices.kbc import Ps2Keyboard

# Set 1 make codes of the US keyboard (IBM PC/XT/AT technical reference),
# written independently of the set 2 table under test
XT = {**dict(zip("1234567890-=", range(0x02, 0x0E))),
      **dict(zip("qwertyuiop[]", range(0x10, 0x1C))),
      **dict(zip("asdfghjkl;'`", range(0x1E, 0x2A))),
      "\\": 0x2B, **dict(zip("zxcvbnm,./", range(0x2C, 0x36))), " ": 0x39}


def _typed(keysyms_down_up: list[tuple[int, bool]]) -> list[int]:
    kbd = Ps2Keyboard()
    kbd.translate = True
    for keysym, down in keysyms_down_up:
        kbd.send_keys(keymap.event(keysym, down))
    return list(kbd.codes)


def test_every_printable_character_reaches_the_guest_as_its_xt_key():
    for ch, xt in XT.items():
        assert _typed([(ord(ch), True), (ord(ch), False)]) == [xt, xt | 0x80], ch


def test_shifted_characters_are_their_keys_and_capitals_their_letters():
    shifted = dict(zip('!@#$%^&*()_+{}|:"<>?~', '1234567890-=[]\\;\',./`'))
    for ch, base in shifted.items():
        assert keymap.code(ord(ch)) == keymap.code(ord(base)), ch
    for letter in "abcdefghijklmnopqrstuvwxyz":
        assert keymap.code(ord(letter.upper())) == keymap.code(ord(letter))


def test_extended_keys_keep_their_e0_prefix():
    # Up arrow: set 2 E0 75 / E0 F0 75 -> set 1 E0 48 / E0 C8
    assert _typed([(0xFF52, True), (0xFF52, False)]) == [0xE0, 0x48, 0xE0, 0xC8]
    # Return, BackSpace, Escape, Tab, F1, left Shift
    for keysym, xt in ((0xFF0D, 0x1C), (0xFF08, 0x0E), (0xFF1B, 0x01), (0xFF09, 0x0F),
                       (0xFFBE, 0x3B), (0xFFE1, 0x2A)):
        assert _typed([(keysym, True)]) == [xt], hex(keysym)


def test_a_keysym_no_us_key_produces_is_not_mapped():
    assert keymap.event(0x20AC, True) is None          # the euro sign
    assert keymap.code(0x1234567) is None
