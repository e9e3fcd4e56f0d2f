"""Video files to clips: decoding with PyAV, resizing, clip cutting and a decode cache.

torchvision 0.29 no longer reads videos and torchcodec does not work on every machine
the study runs on, so frames are decoded with PyAV (``av``). PyAV is a boundary:
every failure to read a file becomes a :class:`cdlib.runtime.errors.VideoError` naming the
file and saying what is wrong with it in words; no PyAV exception escapes.

Pipeline for one file (:func:`load_clips`)::

    read_video(path)            uint8 [L, H0, W0, 3]   every frame, RGB
    resize_video(frames, H, W)  uint8 [L, H, W, 3]     bilinear, antialiased when shrinking
    cut_clips(frames, T, ...)   uint8 [N, T, H, W, 3]  non-overlapping clips

The result is cached on disk (:class:`DecodeCache`), keyed by the file's absolute
path, size and modification time and by every parameter above, so a changed file
or a changed setting is decoded afresh and a repeated load costs one
``torch.load``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
import torch.nn.functional as F

from cdlib.runtime.artifacts import atomic_write
from cdlib.runtime.errors import VideoError

__all__ = [
    "TAILS",
    "DecodeCache",
    "cut_clips",
    "decode_clips",
    "default_cache_dir",
    "load_clips",
    "num_clips",
    "read_video",
    "resize_video",
]

TAILS = ("drop", "pad")

#: a stream that decodes to fewer than this fraction of the frames its container
#: declares is reported as truncated (a few frames short is normal: B-frame
#: reordering, an off-by-one in the AVI header)
MIN_DECODED_FRACTION = 0.9

#: bump when the cached payload or the decoding pipeline changes meaning
CACHE_FORMAT = 1


# ---------------------------------------------------------------------------
# decoding


def _check_file(path: Path) -> None:
    """Reasons that need no decoder: missing, not a file, empty."""
    if not path.exists():
        raise VideoError(path, "file not found")
    if not path.is_file():
        raise VideoError(path, "not a regular file (a directory?); expected a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "zero-byte file (empty); expected a video")


def _open(path: Path):
    """``av.open`` with its failures translated into words."""
    try:
        return av.open(str(path), mode="r")
    except av.error.InvalidDataError as exc:
        raise VideoError(
            path, "not a readable video: unknown container format, or its header is damaged or truncated"
        ) from exc
    except av.error.FFmpegError as exc:
        raise VideoError(path, f"cannot be opened as a video ({exc.strerror or type(exc).__name__})") from exc
    except OSError as exc:  # permission denied and the like
        raise VideoError(path, f"cannot be read ({exc.strerror or exc})") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(path, f"no video stream in the file (streams found: {', '.join(kinds)})")
    return container.streams.video[0]


def read_video(path: str | os.PathLike) -> torch.Tensor:
    """Every frame of the first video stream of ``path`` as RGB uint8 ``[L, H, W, 3]``.

    Raises :class:`VideoError` when the file is missing or empty, is not a video
    (unknown format, damaged header), has no video stream, fails to decode part-way,
    decodes to no frame, or decodes to far fewer frames than its container declares
    (below :data:`MIN_DECODED_FRACTION`: a truncated copy). Frames whose size differs
    from the first frame's (a mid-stream resolution change) are rescaled to it.
    """
    path = Path(path)
    _check_file(path)
    container = _open(path)
    frames: list[np.ndarray] = []
    try:
        stream = _video_stream(container, path)
        declared = int(stream.frames or 0)
        # Slice threads help large frames and cost nothing on tiny ones; frame threads
        # (AUTO) were measured slower here on 64x64 videos.
        stream.thread_type = "SLICE"
        # One reformatter for the whole stream keeps its swscale context: converting
        # frame by frame with ``frame.to_ndarray(format=...)`` was measured 6x slower.
        reformatter = VideoReformatter()
        size = None
        for frame in container.decode(stream):
            if size is None:
                size = (frame.width, frame.height)
            rgb = reformatter.reformat(frame, width=size[0], height=size[1], format="rgb24")
            frames.append(rgb.to_ndarray())
    except VideoError:
        raise
    except av.error.FFmpegError as exc:
        where = f"after {len(frames)} frames" if frames else "at the first frame"
        raise VideoError(
            path, f"corrupt or truncated video stream: decoding failed {where} ({exc.strerror or type(exc).__name__})"
        ) from exc
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # anything else from inside PyAV, e.g. an unsupported pixel format
        raise VideoError(path, f"cannot be decoded ({type(exc).__name__}: {exc})") from exc
    finally:
        container.close()
    if not frames:
        raise VideoError(path, "the video stream decodes to no frames (empty or corrupt stream)")
    if declared > 0 and len(frames) < MIN_DECODED_FRACTION * declared:
        raise VideoError(
            path,
            f"truncated or corrupt video stream: decoded {len(frames)} of the {declared} frames "
            "the container declares",
        )
    return torch.from_numpy(np.stack(frames))


# ---------------------------------------------------------------------------
# resizing and cutting


def resize_video(frames: torch.Tensor, height: int, width: int, chunk: int = 64) -> torch.Tensor:
    """Resize uint8 ``[L, H, W, 3]`` frames to ``[L, height, width, 3]``.

    Bilinear interpolation, antialiased when either side shrinks (otherwise a
    320×240 frame brought down to 32×32 aliases badly). The aspect ratio is not
    preserved: the study's models take a fixed square-ish input. Works in chunks of
    ``chunk`` frames to bound the float memory of long videos.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [L, H, W, 3], got shape {tuple(frames.shape)}")
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}×{width}")
    length, in_h, in_w, _ = frames.shape
    if (in_h, in_w) == (height, width):
        return frames
    antialias = height < in_h or width < in_w
    out = torch.empty((length, height, width, 3), dtype=torch.uint8)
    for start in range(0, length, chunk):
        # PyTorch's CPU bilinear kernel takes uint8 directly (the one torchvision uses):
        # 10-30x faster than going through float, within 1 grey level of it.
        # [L, H, W, 3] permuted is a channels-last NCHW view, which the kernel takes without a copy.
        part = frames[start : start + chunk].permute(0, 3, 1, 2)
        part = F.interpolate(part, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias)
        out[start : start + chunk] = part.permute(0, 2, 3, 1)
    return out


def num_clips(num_frames: int, clip_length: int, tail: str = "drop", max_clips: int = 0) -> int:
    """How many clips :func:`cut_clips` returns for a video of ``num_frames`` frames."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {', '.join(TAILS)}, got {tail!r}")
    n = num_frames // clip_length if tail == "drop" else -(-num_frames // clip_length)
    return min(n, max_clips) if max_clips > 0 else n


def cut_clips(frames: torch.Tensor, clip_length: int, tail: str = "drop", max_clips: int = 0) -> torch.Tensor:
    """Cut ``[L, ...]`` frames into non-overlapping clips ``[N, T, ...]`` (``T = clip_length``).

    Clip ``j`` holds frames ``j*T .. j*T+T-1``. The last ``L mod T`` frames do not
    fill a clip: ``tail="drop"`` discards them (``N = L // T``), ``tail="pad"`` fills
    the last clip by repeating the final frame (``N = ceil(L / T)``).

    ``max_clips > 0`` keeps at most that many clips, evenly spaced over the video:
    of ``N`` clips, ``k = max_clips`` are kept, the ``i``-th being the first clip of
    the ``i``-th of ``k`` equal stretches, ``floor(i * N / k)`` — so the kept clips
    cover the whole video, start with clip 0, and stay in temporal order.

    Raises ``ValueError`` when no clip results (``L < T`` with ``drop``, or ``L = 0``).
    """
    if clip_length <= 0:
        raise ValueError(f"clip_length must be positive, got {clip_length}")
    if max_clips < 0:
        raise ValueError(f"max_clips must be >= 0 (0: all clips), got {max_clips}")
    length = frames.shape[0]
    n = num_clips(length, clip_length, tail)
    if n == 0:
        raise ValueError(f"{length} frames make no clip of {clip_length} frames (tail={tail!r})")
    if n * clip_length > length:  # tail == "pad"
        pad = frames[-1:].expand(n * clip_length - length, *frames.shape[1:])
        frames = torch.cat([frames, pad])
    clips = frames[: n * clip_length].reshape(n, clip_length, *frames.shape[1:])
    if 0 < max_clips < n:
        keep = (torch.arange(max_clips) * n) // max_clips
        clips = clips[keep]
    return clips.contiguous()


def decode_clips(
    path: str | os.PathLike,
    height: int,
    width: int,
    clip_length: int,
    tail: str = "drop",
    max_clips: int = 0,
) -> torch.Tensor:
    """:func:`read_video` → :func:`resize_video` → :func:`cut_clips`, without the cache.

    A video with fewer frames than one clip is a :class:`VideoError` whatever
    ``tail`` says: padding would make its only clip mostly copies of one frame.
    """
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {', '.join(TAILS)}, got {tail!r}")
    frames = read_video(path)
    if frames.shape[0] < clip_length:
        raise VideoError(path, f"has {frames.shape[0]} frames, fewer than one clip of {clip_length}")
    return cut_clips(resize_video(frames, height, width), clip_length, tail=tail, max_clips=max_clips)


# ---------------------------------------------------------------------------
# the decode cache


def default_cache_dir() -> Path:
    """``<artifacts root>/decoded`` (the root from :func:`cdlib.runtime.artifacts.default_root`)."""
    from cdlib.runtime.artifacts import default_root

    return default_root() / "decoded"


def _checksum(clips: torch.Tensor) -> int:
    return zlib.crc32(clips.contiguous().numpy().tobytes())


class DecodeCache:
    """Decoded, resized and cut clips on disk, one ``<key>.pt`` file per (video, setting).

    The key hashes the file's absolute path, size and modification time (ns) and
    ``(height, width, clip_length, tail, max_clips)``: editing or replacing a video
    invalidates its entries. Files are written atomically and carry a CRC32 of the
    clip bytes and their own key; an entry that fails to load, has the wrong key,
    shape or dtype, or whose checksum does not match is treated as absent (and
    overwritten by the fresh decode), never trusted.

    ``hits``, ``misses`` and ``rebuilt`` (damaged entries replaced) count what
    happened, for reports and tests.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    @staticmethod
    def key(path: str | os.PathLike, height: int, width: int, clip_length: int, tail: str, max_clips: int) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        spec = {
            "format": CACHE_FORMAT,
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "height": int(height),
            "width": int(width),
            "clip_length": int(clip_length),
            "tail": tail,
            "max_clips": int(max_clips),
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def file(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> torch.Tensor | None:
        """The cached clips, or ``None`` when absent or damaged."""
        file = self.file(key)
        if not file.is_file():
            return None
        try:
            entry = torch.load(file, map_location="cpu", weights_only=True)
            clips = entry["clips"]
            ok = (
                entry.get("format") == CACHE_FORMAT
                and entry.get("key") == key
                and isinstance(clips, torch.Tensor)
                and clips.dtype == torch.uint8
                and clips.ndim == 5
                and entry.get("crc32") == _checksum(clips)
            )
        except Exception:  # truncated zip, garbage bytes, wrong structure: all mean "rebuild"
            ok = False
        if not ok:
            self.rebuilt += 1
            return None
        return clips

    def store(self, key: str, clips: torch.Tensor) -> None:
        clips = clips.contiguous()
        entry = {"format": CACHE_FORMAT, "key": key, "crc32": _checksum(clips), "clips": clips}
        atomic_write(self.file(key), lambda handle: torch.save(entry, handle))


def load_clips(
    path: str | os.PathLike,
    height: int,
    width: int,
    clip_length: int,
    tail: str = "drop",
    max_clips: int = 0,
    cache: DecodeCache | str | os.PathLike | None | bool = None,
) -> torch.Tensor:
    """Clips ``uint8 [N, T, height, width, 3]`` of one video file, through the decode cache.

    ``cache`` is a :class:`DecodeCache`, a cache folder, ``None`` (the default folder,
    :func:`default_cache_dir`) or ``False`` (no cache: decode every time). Failures
    raise :class:`VideoError` (see :func:`read_video` and :func:`decode_clips`).
    """
    if cache is False:
        return decode_clips(path, height, width, clip_length, tail, max_clips)
    if not isinstance(cache, DecodeCache):
        cache = DecodeCache(None if cache in (None, True) else cache)
    _check_file(Path(path))
    key = DecodeCache.key(path, height, width, clip_length, tail, max_clips)
    clips = cache.load(key)
    if clips is not None:
        cache.hits += 1
        return clips
    cache.misses += 1
    clips = decode_clips(path, height, width, clip_length, tail, max_clips)
    try:
        cache.store(key, clips)
    except OSError:  # a read-only or full cache folder slows things down but is not an error
        pass
    return clips
