"""Disk and CD-ROM images: a raw image file as the medium of an IDE drive.

Room: dom0's block I/O, the file under a drive (qemu's ``block.c`` with
its raw driver, as Xen 3.0.4's qemu-dm opened an image named in XenStore,
:mod:`spec.dm_config`). No device behaviour: the IDE controller
(:mod:`spec.devices.ide`) is the one that turns a request into reads and
writes here, and a refused request into a drive error. Imports nothing of
the model; ``impl/`` may import it too (it is I/O, like :mod:`spec.loader`,
and both engines must see the same bytes and the same refusals).

A medium (:class:`Medium`) is what a drive holds:

* ``kind``: ``"disk"`` or ``"cdrom"``;
* ``sector_size``: 512 for a disk, 2048 for a CD (an ATAPI block);
* ``sectors``: the image's size in those units (0 with no medium);
* ``read_only``: a CD always; a disk of mode ``r``;
* ``read(lba, count) -> bytes`` and ``write(lba, data)``: whole sectors at a
  sector address. A request that reaches outside the image, a write to a
  read-only medium, a length that is not whole sectors, a drive with no
  medium, or the host failing the read or write is a :class:`MediumError`
  (the device reports it to the guest as a drive error; it never stops
  qemu-dm). The guest can never reach a byte outside its image.

A writable disk writes through: each write goes to the file at once
(``pwrite``, no cache of its own), so the file is the disk at every
moment; :meth:`Medium.flush` (qemu-dm calls it when it stops) has the host
put it on stable storage (``fsync``). A read-only medium never writes: the
file is opened read-only.

:func:`open_image` checks everything that can be checked before the domain
runs, so that a bad image is a clear error when the domain is created, not
a drive error in the guest: the file must exist, be a regular file (a
directory, a device node or a pipe is refused: ``phy:`` block devices are
not offered), be readable (and writable for a disk of mode ``w``), not be
empty, be a whole number of sectors, and fit the drive's addressing: a disk
at most 2\\ :sup:`48` - 1 sectors (ATA's 48-bit LBA), a CD at most
2\\ :sup:`32` blocks (the 32-bit block address of ATAPI's ``READ
CAPACITY``). Each refusal is an :class:`ImageError` that names the file.

A CD-ROM drive may be empty (xm's ``',hdc:cdrom,r'``): :func:`empty_drive`.
Its medium can change while the domain runs (``xm block-configure``,
:func:`spec.dm_config.change_media`): :meth:`Medium.insert` and
:meth:`Medium.eject` change what the same drive object holds, and
``generation`` counts the changes (what the drive reports as a medium
change to the guest).
"""

from __future__ import annotations

import os
import stat

#: the sector size of each kind of drive
SECTOR_SIZE = {"disk": 512, "cdrom": 2048}
#: the most sectors each kind of drive can address: ATA's 48-bit LBA (the
#: sector count words 100-103 of IDENTIFY DEVICE hold), ATAPI's 32-bit
#: block address (``READ CAPACITY`` gives the last block's)
MAX_SECTORS = {"disk": (1 << 48) - 1, "cdrom": 1 << 32}


class ImageError(Exception):
    """An image file that cannot be a drive's medium; names the file."""


class MediumError(Exception):
    """A request the medium refuses (the drive reports an error)."""


def _describe(kind: str) -> str:
    return "CD-ROM image" if kind == "cdrom" else "disk image"


def _check_kind(kind: str) -> None:
    if kind not in SECTOR_SIZE:
        raise ImageError(f"kind {kind!r}: a drive is a 'disk' or a 'cdrom'")


def check_image(path: str | os.PathLike, kind: str, writable: bool) -> int:
    """The size in bytes of the image ``path`` for a drive of ``kind``
    (opened for writing when ``writable``), or :class:`ImageError` saying
    why it cannot be one (module docstring)."""
    medium = open_image(path, kind, writable)
    size = medium.sectors * medium.sector_size
    medium.close()
    return size


def open_image(path: str | os.PathLike, kind: str, writable: bool) -> "Medium":
    """The image file ``path`` as the medium of a drive of ``kind``
    (``"disk"`` or ``"cdrom"``), writable (a disk of mode ``w``) or not.
    Raises :class:`ImageError` for a file that cannot be one."""
    _check_kind(kind)
    name = os.fspath(path)
    what = _describe(kind)
    if writable and kind == "cdrom":
        raise ImageError(f"{what} {name}: a CD-ROM is read-only (give mode r)")
    if not name:
        raise ImageError(f"{what}: no file named")
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise ImageError(f"{what} {name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{what} {name}: cannot be reached ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{what} {name}: is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{what} {name}: not a regular file (an image is a file; block "
                         f"devices, phy:, are not offered)")
    try:
        fd = os.open(name, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
    except PermissionError:
        if writable and os.access(name, os.R_OK):
            raise ImageError(f"{what} {name}: read-only for this user, and mode w writes "
                             f"to it (give mode r, or make the file writable)") from None
        raise ImageError(f"{what} {name}: cannot be read (permission denied)") from None
    except OSError as exc:
        if writable and exc.errno == 30:             # EROFS
            raise ImageError(f"{what} {name}: on a read-only file system, and mode w "
                             f"writes to it (give mode r)") from None
        raise ImageError(f"{what} {name}: cannot be opened ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        unit = SECTOR_SIZE[kind]
        if size == 0:
            raise ImageError(f"{what} {name}: is empty (0 bytes)")
        if size % unit:
            raise ImageError(f"{what} {name}: is {size} bytes, not a whole number of "
                             f"{unit}-byte sectors ({size // unit} and {size % unit} bytes)")
        if size // unit > MAX_SECTORS[kind]:
            limit = ("48-bit LBA" if kind == "disk" else "ATAPI's 32-bit block address")
            raise ImageError(f"{what} {name}: {size // unit} sectors is too large for the "
                             f"drive ({limit}: at most {MAX_SECTORS[kind]} sectors of {unit} "
                             f"bytes)")
        try:
            os.pread(fd, 1, 0)
        except OSError as exc:
            raise ImageError(f"{what} {name}: cannot be read ({exc.strerror})") from None
    except BaseException:
        os.close(fd)
        raise
    return Medium(kind, not writable, size // unit, name, fd)


def empty_drive(kind: str = "cdrom") -> "Medium":
    """A drive with no medium (xm's empty CD, ``',hdc:cdrom,r'``)."""
    _check_kind(kind)
    return Medium(kind, kind == "cdrom", 0, None, None)


class Medium:
    """What a drive holds: an open image file, or nothing (module docstring)."""

    def __init__(self, kind: str, read_only: bool, sectors: int, path: str | None,
                 fd: int | None) -> None:
        self.kind = kind
        self.sector_size = SECTOR_SIZE[kind]
        self.read_only = read_only
        self.sectors = sectors
        #: the image file (None: no medium)
        self.path = path
        self._fd = fd
        #: how many times the medium changed (insert or eject) since start
        self.generation = 0

    @property
    def present(self) -> bool:
        """A medium is in the drive."""
        return self._fd is not None

    def __repr__(self) -> str:
        mode = "r" if self.read_only else "w"
        return f"<Medium {self.kind} {self.path or '(empty)'} {mode} {self.sectors} sectors>"

    def _check(self, lba: int, count: int, what: str) -> None:
        if self._fd is None:
            raise MediumError(f"{what}: no medium in the drive")
        if not (isinstance(lba, int) and isinstance(count, int)) or lba < 0 or count < 0:
            raise MediumError(f"{what} of {count} sectors at {lba}: not a sector address")
        if lba + count > self.sectors:
            raise MediumError(f"{what} of sectors {lba}..{lba + count - 1}: beyond the end "
                              f"of the image ({self.sectors} sectors)")

    def read(self, lba: int, count: int) -> bytes:
        """``count`` sectors from sector ``lba`` (:class:`MediumError` if
        any of them is outside the image)."""
        self._check(lba, count, "read")
        length = count * self.sector_size
        try:
            data = os.pread(self._fd, length, lba * self.sector_size)
        except OSError as exc:
            raise MediumError(f"read of {count} sectors at {lba}: {exc.strerror}") from None
        if len(data) != length:          # the file shrank under the domain
            raise MediumError(f"read of {count} sectors at {lba}: the image file ends "
                              f"early (it was changed outside the domain)")
        return data

    def write(self, lba: int, data: bytes) -> None:
        """Whole sectors ``data`` at sector ``lba``, written through to the
        file (:class:`MediumError` for a read-only medium, a partial
        sector or a sector outside the image)."""
        if self.read_only:
            raise MediumError(f"write at {lba}: the medium is read-only")
        if len(data) % self.sector_size:
            raise MediumError(f"write of {len(data)} bytes at {lba}: not whole "
                              f"{self.sector_size}-byte sectors")
        self._check(lba, len(data) // self.sector_size, "write")
        try:
            done = os.pwrite(self._fd, data, lba * self.sector_size)
        except OSError as exc:
            raise MediumError(f"write at {lba}: {exc.strerror}") from None
        if done != len(data):
            raise MediumError(f"write at {lba}: only {done} of {len(data)} bytes written")

    def flush(self) -> None:
        """Have the host put what was written on stable storage."""
        if self._fd is not None and not self.read_only:
            try:
                os.fsync(self._fd)
            except OSError:
                pass                    # what could be written was; nothing to report to

    def close(self) -> None:
        """Flush and let the file go (the drive is then empty)."""
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None

    def eject(self) -> None:
        """Take the medium out (a CD: the drive is then empty)."""
        self.close()
        self.path = None
        self.sectors = 0
        self.generation += 1

    def insert(self, path: str | os.PathLike) -> None:
        """Put the image ``path`` in the drive (a CD-ROM's medium change),
        replacing what it held; :class:`ImageError` leaves the drive empty."""
        self.close()
        self.path, self.sectors = None, 0
        self.generation += 1
        medium = open_image(path, self.kind, not self.read_only)
        self.path, self.sectors, self._fd = medium.path, medium.sectors, medium._fd
        medium._fd = None
