"""The VGA's 8x16 character font, as the VGA BIOS loads it into plane 2.

Room: data. The 256 glyphs of code page 437, 16 rows of 8 dots each (bit 7
is the leftmost dot), as the LGPL VGA BIOS carries them (``vgafonts.h``,
``vgafont16``; Debian's ``vgabios`` package, ``/usr/share/vgabios/vgabios.bin``
at offset 0x2578). qemu-dm's VGA (:mod:`spec.devices.vga`) starts with them in
plane 2, where the BIOS's mode-3 set leaves them. Imports nothing.
"""

from __future__ import annotations

import base64
import zlib

GLYPH_HEIGHT = 16
_PACKED = (
    "eNp9V09r40YUFynoJLzpbWhMcskHEC0kohU2LP0KvYtsUfcgWp+yggrt5pKPUAg999LvEHAjGHowOS4GuSYn+1KK"
    "YSHrQ9D0vfn7Zjbtc4L903sz7/+bURSF1F79dnV1e3N11WoseiG6rRCtkagGoCY7NPgwayhkeb7dbhnLLW5hscNK"
    "hKlfQtK2QwVI8mFevnxZ5o7f3dze3nSafzz64st6AVRHWhgoZ6BA4elX0xRotntQ+O2rt6+Afthu5lo56/Nt3mv5"
    "d/OH3X7Y7x7m7yQ+iEfHk2FyPIoPrPmMsdYYHJWK4Fvv3/f9z0dIEja8yCrOqyzhDYkqhizYr6UYyZgnySmER8mQ"
    "MLJZWgxFSnM2n88HAk9LUZ46eJhlTTMMxJamyVy+AoLc5GiMtgdcPfUFqmqo5L+ytuF38yaOr3ljPLjjCUsLfq1Q"
    "VlXZ5QrydalsT9PC2w5kJbFEO8cSScx5WOYiL6mJLtvkGVkQDc/4ZVccxGifzjfUT9f1fdfpgotYVusMRDqhSpwP"
    "Fsd5HMcmvck4rxYDGHysVUMyngg/KwBzII0HWK98NvsBi/Dxdwvrk9qznDissXFXmgdRi10Lyz9Dkocydv+E5Fc+"
    "WK/Xq3ljqgXKd0CDFH6CCmiw4p9MvO7Aw/mdide+Ug1R7bV/5cXr+nVxUQ4eLoodWb/mvPxaYdQk1Wl9uW4AMy+O"
    "ZTW4ft+AqroGpRuFd4Ukqw8nCaQTSO+/eRzW925/GWsSb+lf4ezT/PfrJhlZPvq4sfwiS2K7XvQ3nr082L9TVJp+"
    "lqjvhZkfksWwCi2/zMl+orvG5P3RCR2fVJOZpzDBZtnYzqs80ZSbbEb/RQLbkX36vE4a26/RQ1HUMsVunDUcCsD4"
    "NwZN1cLJS/7g+Fn1fbEj8QW6RPFFk8iUwv7VZeniC3WZ0XjGcTSKJZWy5EBeFYCWz4J6wRIRPZLFKz2ynX0kP5bf"
    "WBONfaalV5elZz/OeDveD9P0CdNxNrZ8uZzEw8u/wlgADgMTCsBiVT9tnJiWWuA81fU9Aldn6O/InRcROT+QhzJs"
    "pp1ZhemVHW620/0M7ZzE0qOFbz/OYZpPWOzXx8KvF5g2Hs6qzJdHjZBCUGcK1K8X7tcP7ufxy8irDwich1GeYu4G"
    "mjGHYhyLQ1lA7kt3Zvz4zVG7XL1RYALFPWA87iNnL6kf7teTstfhtF548US+Vx+c5LtG2Hjzg0f+PIFzqYN8deYE"
    "tO21eXLFJOCj+TC+movyJ6jvD6p8jpg8PoGWMx0Amh/Mtxdf4FN/EHv2Q32R/gJkB65KdlVN6GmE14GI3ozgHEzx"
    "eKXXJTxD5/T2hO1vrjp3HNvh/tc4OXG4vP9lokRUN+Q56bezalmdke0AVUv18/Nv/c93v/ufv974H/Y87QNk8Zmi"
    "R/1trBg8HMo/xlY+JB0On/8Y29rVTwZyLZL2BCNgH9h/4skzJsKTIpRn3p01EuH6QPokiMe5Z/95OvW0TVOf/zES"
    "wbn1MVh/7sVHOHm93spr70QQr3B/EfoXpGHq+Xvi4ifp5JP4TIP1wreHhfEN82X3EwFF9DUKaBfQi4D8ZeY8Xi2X"
    "y5XuZ3y3Wi6gfRfmvoqnPW1IvP4jGchhprnzCe+fS6RZRN+YYMLOrTovNi3L1RucnRByPMOYsJCjun/0fRCusxP5"
    "zuf0wWHvRsxnMeAPrVE3Tgsc70U6joILIHlZGOgrg369MEHS12c7xPR12+DR0dEzA4H6D5u19P6OQ9KeynIe/s/L"
    "inlgfryQd7u/qyof61lGUoHH/zIt/vTLp1H07BXwXzRp3R4="
)
#: 4096 bytes: glyph ``c``'s row ``r`` is byte ``16 * c + r``
FONT_8X16 = zlib.decompress(base64.b64decode(_PACKED))
assert len(FONT_8X16) == 256 * GLYPH_HEIGHT
