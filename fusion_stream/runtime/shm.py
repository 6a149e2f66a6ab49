"""Shared memory for large arrays between processes of one machine (``ipc://`` only).

A publisher on an ``ipc://`` endpoint owns a bounded pool (unless ``shm=False`` or
``$FUSION_STREAM_SHM=0``; on by default where ``/dev/shm`` exists): one POSIX shared-memory
segment (a file in ``/dev/shm``, mode 0600) of ``slots`` equal slots, reused round-robin. An
array of at least ``threshold`` bytes goes into the next slot and the message carries a small
descriptor frame (segment, offset, size, generation) instead of the bytes
(:func:`wire.encode_descriptor`). A subscriber maps the segment read-only once and hands out
numpy views of it: no copy.

Layout of a segment::

    [segment header, 64 B: magic, slot count, slot size, slot stride]
    [slot 0: 64 B slot header (generation, u64 LE) | data ...] [slot 1 ...] ...

A slot is never rewritten while a subscriber holds a view of it. Each view owns a read lock on
its slot's byte range (an open-file-description lock, ``F_OFD_SETLK``, on its own descriptor of
the segment); the publisher takes a write lock on a slot before writing it and skips a slot it
cannot lock. If every slot is held, that array travels as bytes in its ZeroMQ frame (counted in
:attr:`ShmPool.fallbacks`): a slow subscriber costs one copy, never an overwritten view. The
kernel drops the locks when the view is garbage-collected (its descriptor closed) or its process
dies, so nothing needs a broker or a clean exit.

The descriptor is sent before the array is copied into its slot, which stays write-locked until
the copy ends; a subscriber waits for its read lock (up to :data:`WRITE_WAIT_S`), so the copy
runs while the subscriber is being woken up rather than before it is.

Generations still tell a reader that its message waited too long: the publisher sets a slot's
generation to 0, copies, then writes a new, never reused generation, all under the write lock. A
subscriber takes the read lock, then compares the slot's generation with the descriptor's; a
mismatch (the slot was reused while the message waited in a queue) is dropped as ``stale``.

Segment names carry the graph's identity and the publisher's id (``fusion_stream-<graph>-<src>-<k>``),
so the registry removes the segments of a publisher that died with its entry
(:func:`remove_segments`), as it removes its ``ipc://`` socket file.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import math
import mmap
import os
import re
import stat
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from fusion_stream.core import wire
from fusion_stream.errors import ParamError, TransportError, WireError

ENV_SHM: Final = "FUSION_STREAM_SHM"
"""``0``: no publisher uses shared memory unless told ``shm=True``; ``1``: every ``ipc://`` one
does unless told ``shm=False``; unset: they do where ``/dev/shm`` exists."""
SHM_DIR: Final = Path("/dev/shm")
DEFAULT_SLOTS: Final = 8
DEFAULT_THRESHOLD: Final = 1024 * 1024
"""Arrays below this travel in ZeroMQ frames. bench/transport.py, two runs on this loaded 2-core
machine, one-way p50 shm vs today's path: 64 KiB 657/659 and 613/527 µs (no gain), 256 KiB
1.08/1.23 and 1.12/1.09 ms (a toss-up), 1 MiB 1.37/1.90 and 2.11/2.09 ms with 2.4x the throughput
in the first, 4 MiB 2.4/3.8 and 7.7/10.3 ms."""
SEGMENT_MAGIC: Final = b"FSSHM\x00\x00\x01"
SEGMENT_HEADER: Final = 64
SLOT_HEADER: Final = 64
_PAGE: Final = mmap.PAGESIZE
_HEADER_FMT: Final = "<8sIIQQ"  # magic, slots, pad, slot size, stride
_GEN: Final = struct.Struct("<Q")
_COPYING_AT: Final = 8
"""Offset in a slot's header of the generation being copied in (0 when none is)."""
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map the pages at once, no faults later
_NAME_RE: Final = re.compile(r"^fusion_stream-[0-9a-f]{12}-[0-9a-f]{8}-[0-9]{1,9}$")
_FLOCK: Final = struct.Struct("hhqqi4x")  # struct flock: type, whence, start, len, pid (0 for OFD locks)
WRITE_WAIT_S: Final = 0.25
"""How long a subscriber waits for a slot whose copy is under way (40 MB take ~10 ms); a message
whose slot stays write-locked longer (a publisher stopped mid-copy, or a slot being reused) is
dropped as ``stale``."""
_WRITE_POLL_S: Final = 50e-6
log = logging.getLogger(__name__)
_MAX_MAPPED: Final = 16
"""Segments a subscriber keeps mapped (least recently used dropped; views keep theirs alive)."""


def shm_wanted(shm: bool | None) -> bool:
    """``shm`` if given, else ``$FUSION_STREAM_SHM`` (``0`` / ``1``), else whether ``/dev/shm`` exists."""
    if shm is not None:
        return shm
    env = os.environ.get(ENV_SHM, "")
    return env == "1" or (env != "0" and SHM_DIR.is_dir())


def _lock(fd: int, kind: int, start: int, length: int) -> bool:
    """Take (or with ``F_UNLCK`` drop) an OFD lock on a byte range without waiting; False if held."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _lock_when_written(fd: int, start: int, length: int, copying: Callable[[], bool]) -> bool:
    """Read-lock a slot, waiting up to :data:`WRITE_WAIT_S` while its publisher copies this
    message's array into it (it sends the descriptor first: ``copying()``); False if it is
    still write-locked then, or at once if it is write-locked for anything else (lent, or being
    reused for a later message: waiting would only make a slow subscriber slower)."""
    if _lock(fd, fcntl.F_RDLCK, start, length):
        return True
    if not copying():
        return False
    deadline = time.monotonic() + WRITE_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(_WRITE_POLL_S)
        if _lock(fd, fcntl.F_RDLCK, start, length):
            return True
    return False


def segment_prefix(graph_dir: Path, src: int) -> str:
    """Name prefix of the segments of publisher ``src`` in the graph stored at ``graph_dir``."""
    graph_id = hashlib.sha256(str(graph_dir).encode()).hexdigest()[:12]
    return f"fusion_stream-{graph_id}-{src:08x}-"


def remove_segments(graph_dir: Path, src: int) -> int:
    """Unlink the user's own segments of publisher ``src`` (a dead one); returns how many."""
    prefix = segment_prefix(graph_dir, src)
    removed = 0
    for name in _segment_names():
        if not name.startswith(prefix):
            continue
        path = SHM_DIR / name
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _segment_names() -> list[str]:
    """Names of the fusion_stream segments in :data:`SHM_DIR` (none if it cannot be listed)."""
    try:
        return [n for n in os.listdir(SHM_DIR) if _NAME_RE.match(n)]
    except OSError:
        return []


_ORPHAN_MIN_AGE_S: Final = 5.0
"""A segment younger than this is never an orphan (its publisher may be between creating and
locking it)."""


def remove_orphans() -> int:
    """Unlink this user's segments that no process holds any more; returns how many.

    A publisher read-locks its segment's header for as long as it has the segment open, so a
    segment whose header can be write-locked was left by a publisher killed where no registry
    sweep will see it (its graph's runtime folder gone). Views mapped elsewhere stay valid. The
    first pool of each process runs this (:func:`_remove_orphans_once`)."""
    removed = 0
    for name in _segment_names():
        path = SHM_DIR / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or not ours to open
        try:
            st = os.fstat(fd)
            own = stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
            old = time.time() - st.st_mtime > _ORPHAN_MIN_AGE_S
            if own and old and _lock(fd, fcntl.F_WRLCK, 0, SEGMENT_HEADER):
                path.unlink(missing_ok=True)
                removed += 1
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d shared-memory segment(s) left in %s by publishers that are gone", removed, SHM_DIR)
    return removed


@functools.cache
def _remove_orphans_once() -> int:
    return remove_orphans()


def _unlink_own(path: Path, pid: int) -> None:
    """Unlink a pool's segment, only in the process that made it (a forked child exits too)."""
    if os.getpid() == pid:
        path.unlink(missing_ok=True)


class ShmPool:
    """A publisher's bounded ring of slots (see the module docstring); implements :class:`wire.ShmSink`."""

    def __init__(self, prefix: str, *, slots: int = DEFAULT_SLOTS, threshold: int = DEFAULT_THRESHOLD) -> None:
        if slots < 2:
            raise ParamError("shm_slots", f"needs at least 2 slots, got {slots}")
        if threshold <= wire.MAX_DESCRIPTOR_BYTES:
            raise ParamError("shm_threshold", f"must exceed {wire.MAX_DESCRIPTOR_BYTES} bytes, got {threshold}")
        self._prefix = prefix
        self._slots = slots
        self._threshold = threshold
        self._count = 0  # segments made so far (a bigger array needs a new one)
        self._name = ""
        self._fd = -1  # kept open: the write locks are taken on it
        self._map: mmap.mmap | None = None
        self._gens: list[np.ndarray] = []
        self._slot_size = 0
        self._stride = 0
        self._next = 0
        self._generation = 0
        self.fallbacks = 0
        """Arrays sent as bytes because subscribers held views of every slot."""
        self.skipped = 0
        """Slots passed over because a subscriber still held a view of them."""
        self.loans_published = 0
        """Lent arrays sent as their own slot's descriptor (no copy)."""
        self._lent: dict[int, tuple[int, int]] = {}
        """Slot index → (address of the data of the array lent out of it, loan number); the slot
        is write-locked meanwhile. The number tells this loan's finalizer from a later loan's of
        the same slot (same address), so an old loan collected late never unlocks a new one."""
        self._loans = 0
        self._pending: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        """Slots reserved by :meth:`put`, write-locked until :meth:`flush`: (slot, generation, slot's
        array, array to copy in)."""
        self.unavailable = ""
        """Why no segment could be made ('' while it works): every array then goes as bytes."""
        self._remove: weakref.finalize[..., ShmPool] | None = None
        """Unlinks the current segment: on close, on a bigger segment, when the pool is collected
        or the interpreter exits (a script that never closes its publisher leaves nothing behind)."""

    @property
    def threshold(self) -> int:
        return self._threshold

    @property
    def segment(self) -> str:
        """Name of the current segment ('' before the first array)."""
        return self._name

    def loan(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """A writable array in a free slot, write-locked until :meth:`put` publishes it or it is
        released (:meth:`release`, or its garbage collection); None if every slot is held. A
        loan bigger than a slot makes a segment of bigger slots, unless other loans are out."""
        nbytes = math.prod(shape) * dtype.itemsize
        # bigger slots, in a new segment: only while nothing is lent (the old segment's
        # descriptor, which holds the loans' write locks, closes)
        grow = self._map is None or (nbytes > self._slot_size and not self._lent)
        if grow and not self._try_grow(max(nbytes, self._threshold)):
            return None
        if nbytes > self._slot_size:
            raise TransportError(
                f"a loan of {nbytes} bytes exceeds the shared-memory slot size of {self._slot_size} bytes "
                f"while {len(self._lent)} smaller loan(s) are out (return them first, or raise shm_threshold "
                "to at least the array size)"
            )
        assert self._map is not None
        for k in range(self._slots):
            i = (self._next + k) % self._slots
            start = SEGMENT_HEADER + i * self._stride
            if i in self._lent or not _lock(self._fd, fcntl.F_WRLCK, start, self._stride):
                self.skipped += 1
                continue
            self._next = (i + 1) % self._slots
            self._gens[i][:] = 0  # being written: no descriptor of this slot is valid now, none waits
            arr: np.ndarray = np.ndarray(shape, dtype, buffer=self._map, offset=start + SLOT_HEADER)
            self._loans += 1
            self._lent[i] = (arr.ctypes.data, self._loans)
            weakref.finalize(arr, self._return, i, self._loans)
            return arr
        return None  # the caller lends a plain array and counts it

    def release(self, arr: np.ndarray) -> None:
        """Give back a lent array that will not be published (its slot is free again)."""
        i = self._lent_slot(arr)
        if i is None:
            raise TransportError("this array is not a loan of this publisher that is still lent")
        arr.flags.writeable = False
        self._return(i, self._lent[i][1])

    def _return(self, i: int, number: int) -> None:
        """Unlock slot ``i`` if it is still lent as loan ``number`` (a later grow forgets old loans)."""
        if (lent := self._lent.get(i)) is not None and lent[1] == number:
            del self._lent[i]
            _lock(self._fd, fcntl.F_UNLCK, SEGMENT_HEADER + i * self._stride, self._stride)

    def _in_map(self, arr: np.ndarray) -> bool:
        """Whether ``arr``'s bytes lie in the current segment (a loan, or a view of one)."""
        if self._map is None:
            return False
        base = np.frombuffer(self._map, np.uint8, 1).ctypes.data
        return base <= arr.ctypes.data < base + len(self._map)

    def _lent_slot(self, arr: np.ndarray) -> int | None:
        """The slot of an open loan: the lent array itself or a leading slice of it (``loan[:n]``,
        contiguous and starting at its first byte, so the descriptor's bytes are its bytes)."""
        if self._map is None or not arr.flags.writeable or not arr.flags.c_contiguous:
            return None
        base = np.frombuffer(self._map, np.uint8, 1).ctypes.data
        i = (arr.ctypes.data - base - SEGMENT_HEADER) // self._stride
        lent = self._lent.get(i)
        if lent is None or lent[0] != arr.ctypes.data or arr.nbytes > self._slot_size:
            return None
        return i

    def owns(self, arr: np.ndarray) -> bool:
        """Whether ``arr`` lies in this pool's segment (lent, or once lent)."""
        return self._in_map(arr)

    def _publish_loan(self, arr: np.ndarray) -> wire.ShmRef:
        """The descriptor of a lent array, its slot unlocked for readers; no copy."""
        i = self._lent_slot(arr)
        if i is None:
            if arr.flags.writeable and not arr.flags.c_contiguous:
                raise TransportError(
                    "a view of a loan that is not contiguous cannot be published without a copy "
                    "(publish the loan or a leading slice of it, loan[:n])"
                )
            raise TransportError(
                "this shared-memory array is not an open loan: it was already published or released "
                "(loan a new one for each message)"
            )
        self._generation += 1
        self._gens[i][0] = self._generation
        arr.flags.writeable = False
        offset = arr.ctypes.data - np.frombuffer(self._map, np.uint8, 1).ctypes.data  # type: ignore[arg-type]
        self._return(i, self._lent[i][1])
        self.loans_published += 1
        return wire.ShmRef(self._name, offset, arr.nbytes, self._generation)

    def put(self, arr: np.ndarray) -> wire.ShmRef | None:
        """Reserve a slot no subscriber holds for ``arr`` and say where (a new, bigger segment if
        it does not fit); None if every slot is held (the caller sends the bytes instead).

        The copy is left to :meth:`flush`, which the publisher calls once the descriptor is on
        its way: the slot stays write-locked until then, and a subscriber waits for that lock
        before it reads, so the copy overlaps the subscriber's wake-up instead of preceding it.
        A lent array (:meth:`loan`) is not copied: its own slot is published."""
        if self._in_map(arr):
            return self._publish_loan(arr)
        if (self._map is None or arr.nbytes > self._slot_size) and not self._try_grow(arr.nbytes):
            self.fallbacks += 1
            return None
        assert self._map is not None
        for k in range(self._slots):
            i = (self._next + k) % self._slots
            ours = i in self._lent or any(i == p[0] for p in self._pending)  # our own locks do not stop us
            if ours or not _lock(self._fd, fcntl.F_WRLCK, SEGMENT_HEADER + i * self._stride, self._stride):
                self.skipped += 1
                continue
            self._next = (i + 1) % self._slots
            self._generation += 1
            self._gens[i][:] = (0, self._generation)  # being copied in: only its own reader may wait
            offset = SEGMENT_HEADER + i * self._stride + SLOT_HEADER
            dest: np.ndarray = np.ndarray(arr.shape, arr.dtype, buffer=self._map, offset=offset)
            self._pending.append((i, self._generation, dest, arr))
            return wire.ShmRef(self._name, offset, arr.nbytes, self._generation)
        self.fallbacks += 1
        return None

    def flush(self) -> None:
        """Copy the arrays :meth:`put` reserved slots for, stamp their generations and unlock them."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for i, generation, dest, arr in pending:
            try:
                np.copyto(dest, arr, casting="no")
                self._gens[i][0] = generation
            finally:
                _lock(self._fd, fcntl.F_UNLCK, SEGMENT_HEADER + i * self._stride, self._stride)

    def _try_grow(self, nbytes: int) -> bool:
        """:meth:`_grow`, or False once a segment could not be made (no ``/dev/shm``, or full):
        the publisher then sends bytes, as it would without shared memory, and says why once."""
        if self.unavailable:
            return False
        try:
            self._grow(nbytes)
        except TransportError as err:
            self.unavailable = str(err)
            log.warning("%s; arrays go in ZeroMQ frames from now on (FUSION_STREAM_SHM=0 turns this off)", err)
            return False
        return True

    def _grow(self, nbytes: int) -> None:
        self.flush()  # the reserved slots' locks go with the old segment's descriptor
        slot_size = -(-max(nbytes, self._threshold) // _PAGE) * _PAGE
        stride = slot_size + _PAGE  # the slot header gets a page: the data stays page-aligned + 64
        size = SEGMENT_HEADER + self._slots * stride
        name = f"{self._prefix}{self._count}"
        self._count += 1
        path = SHM_DIR / name
        _remove_orphans_once()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise TransportError(f"cannot create shared memory {path}: {err.strerror}") from err
        try:
            _lock(fd, fcntl.F_RDLCK, 0, SEGMENT_HEADER)  # "alive" while this descriptor is open
            os.fchmod(fd, 0o600)  # whatever the umask
            os.ftruncate(fd, size)
            # Allocate every page now: a full /dev/shm fails here, not as SIGBUS in a later copy,
            # and no copy pays first-touch page faults (they made a 4 MiB copy ~30x slower).
            os.posix_fallocate(fd, 0, size)
            new = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)
        except OSError as err:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise TransportError(f"cannot size shared memory {path} to {size} bytes: {err}") from err
        struct.pack_into(_HEADER_FMT, new, 0, SEGMENT_MAGIC, self._slots, 0, slot_size, stride)
        self._unlink_current()  # readers keep their mappings of the old one; nothing more is written there
        self._remove = weakref.finalize(self, _unlink_own, path, os.getpid())
        self._name, self._fd, self._map = name, fd, new
        self._slot_size, self._stride, self._next = slot_size, stride, 0
        self._gens = [  # per slot: [generation, generation being copied in]
            np.ndarray((2,), np.uint64, buffer=new, offset=SEGMENT_HEADER + i * stride) for i in range(self._slots)
        ]
        # SEGMENT_HEADER + i*stride + SLOT_HEADER: offset of slot i's data (stride leaves room for it)
        assert SLOT_HEADER <= _PAGE

    def _unlink_current(self) -> None:
        self.flush()
        self._lent.clear()  # loans of this segment: their locks go with its descriptor
        if self._remove is not None:
            self._remove()  # runs once: unlinks the segment's name
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._gens = []
        self._map = None  # unmapped once the last view of it is gone

    def close(self) -> None:
        """Remove the segment (subscribers' mappings stay valid until they drop them)."""
        self._unlink_current()
        self._name = ""


@dataclass(frozen=True, slots=True)
class _Mapped:
    fd: int
    """Kept open: each view reopens the segment through it (``/proc/self/fd``) for its own lock."""
    view: memoryview
    size: int
    slots: int
    slot_size: int
    stride: int


def _reopen(fd: int) -> int:
    """A new open file description of the same file (``dup`` would share the old one's locks)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


class ShmMapper:
    """A subscriber's read-only mappings of publishers' segments; implements :data:`wire.ShmResolver`.

    Every descriptor is checked before a byte is read: the name is one of ours, the segment is a
    regular file of this user with mode 0600, the offset is the data start of a slot inside it,
    the size fits the slot, the slot can be read-locked (else it is being rewritten: ``stale``)
    and its generation is the descriptor's (else ``stale``). The view handed out holds the read
    lock until it is garbage-collected: the publisher cannot rewrite that slot meanwhile."""

    def __init__(self) -> None:
        self._maps: OrderedDict[str, _Mapped] = OrderedDict()

    def __call__(self, ref: wire.ShmRef) -> memoryview:
        m = self._maps.get(ref.segment)
        if m is None:
            m = self._open(ref.segment)
        else:
            self._maps.move_to_end(ref.segment)
        start = ref.offset - SEGMENT_HEADER - SLOT_HEADER
        if start < 0 or start % m.stride or start // m.stride >= m.slots:
            raise WireError("shm-bounds", f"offset {ref.offset} is not the start of a slot of {ref.segment!r}")
        if ref.nbytes > m.slot_size or ref.offset + ref.nbytes > m.size:
            raise WireError("shm-bounds", f"{ref.nbytes} bytes at {ref.offset} overrun a slot of {ref.segment!r}")
        fd = _reopen(m.fd)
        try:
            header = ref.offset - SLOT_HEADER

            def copying() -> bool:
                return bool(_GEN.unpack_from(m.view, header + _COPYING_AT)[0] == ref.generation)

            if not _lock_when_written(fd, SEGMENT_HEADER + start, m.stride, copying):
                raise WireError("stale", f"slot of {ref.segment!r} at {ref.offset} is being rewritten")
            (gen,) = _GEN.unpack_from(m.view, ref.offset - SLOT_HEADER)
            if gen != ref.generation:
                raise WireError(
                    "stale",
                    f"slot of {ref.segment!r} at {ref.offset} holds generation {gen}, message wants {ref.generation}",
                )
        except BaseException:
            os.close(fd)
            raise
        held = np.frombuffer(m.view, np.uint8, ref.nbytes, ref.offset)
        weakref.finalize(held, os.close, fd)  # closing the descriptor drops the read lock
        return held.data  # a memoryview that keeps ``held`` (and so the lock) alive

    def _open(self, name: str) -> _Mapped:
        if not _NAME_RE.match(name):
            raise WireError("shm-segment", f"{name!r} is not a fusion_stream shared-memory segment name")
        path = SHM_DIR / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as err:
            raise WireError("shm-segment", f"cannot open {path}: {err.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o600:
                raise WireError(
                    "shm-foreign",
                    f"{path} is not a regular file of uid {os.getuid()} with mode 0600 "
                    f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})",
                )
            if st.st_size < SEGMENT_HEADER:
                raise WireError("shm-segment", f"{path} has {st.st_size} bytes, less than a segment header")
            mm = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
            magic, slots, _pad, slot_size, stride = struct.unpack_from(_HEADER_FMT, mm, 0)
            if (
                magic != SEGMENT_MAGIC
                or slots < 1
                or stride < slot_size + SLOT_HEADER
                or SEGMENT_HEADER + slots * stride > st.st_size
            ):
                raise WireError("shm-segment", f"{path} does not hold a valid segment header")
        except BaseException:
            os.close(fd)
            raise
        m = _Mapped(fd, memoryview(mm), st.st_size, slots, slot_size, stride)
        self._maps[name] = m
        while len(self._maps) > _MAX_MAPPED:
            os.close(self._maps.popitem(last=False)[1].fd)  # unmapped when the last view of it is gone
        return m

    def close(self) -> None:
        """Forget every segment (views handed out stay valid and keep their locks)."""
        while self._maps:
            os.close(self._maps.popitem()[1].fd)
