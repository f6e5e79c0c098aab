"""Decode a local video into 1 fps, resized, centre-cropped RGB frames (architecture.md step 3).

Sampling (anchors.md §1.1, made timestamp-based so VFR works): for k = 0, 1, 2, ... the frame
kept for second k/fps is the first frame whose presentation time (relative to the first frame)
is at or after k/fps. A gap in the stream yields one frame, not one per missing second, so a
header or pts jump that claims hours never allocates for hours. Frames without a usable pts or
time base are timed by their index and the stream rate (25 fps if none is known).

Resize: short side to ``short_side`` with bicubic (the official pipelines use cv2 INTER_CUBIC),
then a centre square of ``crop``. Display rotation (``frame.rotation``) is applied to the crop.

Picture in picture (``DecodeConfig.inset_views``, on by default): the whole resized frame (before
the centre crop) of the first :data:`ingest.inset.DETECT_FRAMES` sampled frames is kept, an inset
rectangle is looked for on them once (:mod:`ingest.inset`), and when one is found every sampled
frame's inset is also cut out (inside its own bars, :func:`ingest.inset.inset_content`), resized
and centre-cropped like the main view, or as a reframe view when the inset is portrait
(``DecodedVideo.inset``). Extra memory: those few whole frames, then one crop per frame; extra
time: one detection (tens of ms) and, for videos with an inset, one more resize per frame.
Without an inset, a portrait video (``DecodeConfig.reframe_views``, on by default) gets its
reframe view in the same place (:mod:`ingest.reframe`; ``DecodedVideo.inset_kind`` says which).

Borders (``DecodeConfig.crop_borders``, on by default): the whole resized frames of the first
:data:`ingest.borders.DETECT_FRAMES` sampled frames are kept, letterbox/pillarbox bars (constant or
blurred fill) are looked for on them once (:mod:`ingest.borders`), and when found every main view is
cut from the content instead of the whole frame (``DecodedVideo.borders``, ``DecodeStats.borders``).

Seeking (``mode="auto"``): with a full sample index (MP4/MOV), when a keyframe lies between the
decoder's position and the next wanted time, we seek to the wanted time (the demuxer lands on that
keyframe) instead of decoding the frames in between. It never decodes more frames than a full
decode. ``auto`` uses it only when the index says it skips at least ``SEEK_MIN_SKIP`` (30 %) of
the frames, because every seek flushes the threaded decoder. Measured (``dupwatch bench decode``,
2 shared cores, best of 5): at 1 fps the bundled videos (keyframes every 1.2–2 s or only one)
gain nothing — 426/426 frames on the S²VS example, 208/250 on bikes — so auto decodes linearly;
a 30 s clip with 0.5 s keyframes decodes 480/900 frames (0.39 s vs 0.61 s); at 0.25 fps the S²VS
example needs 190/426 frames and bikes 48/250 (0.05 s vs 0.16 s). Rule of thumb: seeking pays
when the keyframe interval is shorter than the sampling interval.

Limits (``DecodeConfig``): width/height/pixels from the header *and* per decoded frame (FFmpeg's
``max_pixels`` is also set on the probing and decoding codec contexts, so a 16000² PNG bomb is
refused without allocating it); a header duration above ``max_duration_s`` is refused before
decoding, a frame time above it while decoding; ``max_frames`` sampled frames; decoded bytes
(w·h·1.5 per decoded frame); wall time ``timeout_s``. Only the sampled crops are kept
(``max_frames`` × crop² × 3 bytes at most). ``duration_s`` trusts the header only when the frames
agree with it.

Containers (``ALLOWED_FORMATS``): FFmpeg's ``format_whitelist`` admits only self-contained
video containers, so playlists and other demuxers that open further files or URLs (HLS, DASH,
concat, image sequences, ...) are refused before they read anything (``container_not_allowed``),
and ``protocol_whitelist=file`` forbids network protocols. The file is read through a reader
capped at ``max_bytes`` (``sources.max_bytes``): a file that grows after the size check is never
read past it. A still image (PNG, JPEG, ... even renamed ``.mp4``) is ``still_image``.

Deadline: ``timeout_s`` holds inside FFmpeg's calls that read: the capped reader refuses any read
past the deadline (:class:`DecodeDeadline`, re-raised by PyAV out of ``avformat_open_input``,
stream probing, demuxing and seeking), and PyAV's interrupt callback (``av.open(timeout=)``)
covers protocol IO. Between frames the loop checks the deadline itself. A single codec call on
data already read cannot be interrupted; it is bounded by ``max_pixels``.

Chunks (:class:`FrameStream`): sampled frames are written into one reused buffer of
``chunk_frames`` crops and handed out chunk by chunk (:class:`dupwatch.records.FrameChunk`), so a
consumer that keeps only features (``embed_stream``) holds one chunk of pixels whatever the length.
The limits count as the stream goes (frame times, sampled frames, decoded bytes): a header that
claims 10 s for a 5-hour stream is ``too_long`` as soon as a frame passes ``max_duration_s``.
:func:`decode_video` collects every chunk into a :class:`DecodedVideo` (short videos, tools).

Truncated files: if the container opens and at least one frame decodes, a decode error later
ends decoding and we keep what we have (a partial upload still indexes its first part; the
truncation is logged). A container that does not open (e.g. MP4 with the moov box cut off) is
``corrupt_video``; one that opens but yields no frame is ``corrupt_video`` (errors) or
``zero_frames`` (clean end).
"""

from __future__ import annotations

import bisect
import errno
import io
import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Literal

import av
import av.error
import numpy as np

from dupwatch.config import DecodeConfig
from dupwatch.errors import PermanentError
from dupwatch.records import DecodeSummary, DecodedVideo, FrameChunk
from ingest.borders import BorderTracker
from ingest.inset import DETECT_FRAMES, InsetBox, detect_inset, inset_content
from ingest.reframe import is_portrait, portrait_content, reframe_view

log = logging.getLogger(__name__)

SeekMode = Literal["auto", "full", "seek"]
SEEK_MIN_SKIP = 0.3
"""``auto`` seeks when the index shows at least this fraction of frames can be skipped."""
FALLBACK_FPS = 25.0
MAX_ASPECT_FAST = 4.0
"""Above this aspect ratio we crop at source resolution first (a 4000×16 strip would else be scaled to 64000×256)."""
_CONTAINER_MAGIC = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
ALLOWED_FORMATS = (
    "mov", "mp4", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "ogg", "asf", "mxf", "nut",
    "ivf", "h264", "hevc", "m4v", "gif", "yuv4mpegpipe",
    # audio containers: admitted so that they are refused as ``no_video_stream`` (cover art only)
    "mp3", "wav", "flac", "aac",
    # single images: admitted so that they are refused as ``still_image``, never decoded as a video
    "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe", "j2k_pipe", "jpegls_pipe",
    "qoi_pipe", "pam_pipe", "pbm_pipe", "pgm_pipe", "ppm_pipe", "psd_pipe", "svg_pipe", "dpx_pipe", "exr_pipe",
)
"""Demuxers FFmpeg may use (``format_whitelist``). None of them opens another file or URL: no HLS,
DASH, concat, image2 (file patterns), tee, data or other playlist/protocol demuxers."""
STILL_IMAGE_FORMAT_SUFFIX = "_pipe"
READ_BUFFER_BYTES = 256 * 1024
_PLAYLIST_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"[playlist]", b"<smil", b"#EXT")


class VideoDecoder(ABC):
    """A decoder turns a local file into a :class:`DecodedVideo` or raises a classified error."""

    @abstractmethod
    def decode(self, path: Path, video_id: str) -> DecodedVideo:
        """Decode ``path``; raise :class:`PermanentError` with a reason for bad input."""


class PyAVDecoder(VideoDecoder):
    """The default decoder (PyAV with its bundled FFmpeg)."""

    def __init__(self, config: DecodeConfig, *, mode: SeekMode = "auto") -> None:
        self.config = config
        self.mode = mode
        self.last_stats: DecodeStats | None = None

    def decode(self, path: Path, video_id: str, *, max_bytes: int | None = None) -> DecodedVideo:
        video, stats = _decode(Path(path), self.config, video_id, self.mode, max_bytes=max_bytes)
        self.last_stats = stats
        return video


@dataclass
class DecodeStats:
    """What one decode cost (for benchmarks and logs)."""

    frames_decoded: int = 0
    seeks: int = 0
    seek_used: bool = False
    truncated: bool = False
    wall_s: float = 0.0
    borders: dict[str, object] | None = None
    """The bars cropped before the main view (:mod:`ingest.borders`), ``None`` when none."""


def decode_video(
    path: Path | str, config: DecodeConfig, video_id: str, *, mode: SeekMode = "auto", max_bytes: int | None = None
) -> DecodedVideo:
    """Sample ``path`` at ``config.fps``; see the module docstring for the rules."""
    return _decode(Path(path), config, video_id, mode, max_bytes=max_bytes)[0]


def decode_video_with_stats(path: Path | str, config: DecodeConfig, video_id: str, *, mode: SeekMode = "auto") -> tuple[DecodedVideo, DecodeStats]:
    return _decode(Path(path), config, video_id, mode)


# -- opening and header checks ------------------------------------------------------------------


def _looks_like_container(path: Path) -> bool:
    """Known video container magic: a broken one is ``corrupt_video``, anything else ``not_a_video``."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return (
        head[4:8] in _CONTAINER_MAGIC
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
        or head.startswith((b"RIFF", b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"))
        or (len(head) > 0 and head[0] == 0x47 and path.stat().st_size % 188 == 0)  # MPEG-TS
    )


class DecodeDeadline(Exception):
    """Raised by the reader inside an FFmpeg call (open, probe, demux, seek) past ``timeout_s``."""


class _CappedReader(io.RawIOBase):
    """A read-only file that ends at ``limit`` bytes, whatever the file on disk grows to.

    FFmpeg reads through it (PyAV file-object IO), so no demuxer reads past ``sources.max_bytes``.
    ``name`` is the path, so FFmpeg's probe still sees the file extension.
    """

    def __init__(self, path: Path, limit: int, deadline: float | None = None) -> None:
        super().__init__()
        self._file = path.open("rb")
        self._limit = limit
        self._deadline = deadline
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DecodeDeadline("read after the decode deadline")  # PyAV re-raises it from the FFmpeg call
        left = max(0, self._limit - self._file.tell())
        return self._file.read(left if size is None or size < 0 else min(size, left))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            end = min(self._limit, self._file.seek(0, io.SEEK_END))
            return self._file.seek(max(0, end + offset))
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def _head(path: Path, n: int = 64) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(n)
    except OSError:
        return b""


def _container_options(config: DecodeConfig) -> dict[str, str]:
    # ``options`` also reach the decoders that probe the streams inside av.open: without
    # max_pixels a 16000x16000 PNG allocates 256 MB before we ever see its header.
    return {
        "max_pixels": str(config.max_pixels),
        "format_whitelist": ",".join(dict.fromkeys(ALLOWED_FORMATS)),
        "protocol_whitelist": "file",
    }


def _av_open(path: Path, config: DecodeConfig, limit: int, deadline: float) -> Any:
    """Open through the capped reader; the interrupt callback stops FFmpeg at ``deadline``."""
    left = max(0.001, deadline - time.monotonic())
    reader = _CappedReader(path, limit, deadline)
    try:
        container = av.open(
            reader, mode="r", metadata_errors="ignore", options=_container_options(config), buffer_size=READ_BUFFER_BYTES,
            timeout=(left, left),
        )
    except BaseException:
        reader.close()
        raise
    _READERS[id(container)] = reader
    return container


_READERS: dict[int, _CappedReader] = {}
"""The capped reader of each open container (PyAV containers take no attributes), closed with it."""


def _close(container: Any) -> None:
    container.close()
    reader = _READERS.pop(id(container), None)
    if reader is not None:
        reader.close()


def _open(path: Path, config: DecodeConfig, *, max_bytes: int | None = None, deadline: float | None = None) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PermanentError(f"cannot read {path.name}: {exc.strerror}", reason="source_not_found") from None
    if size == 0:
        raise PermanentError("file is empty (0 bytes)", reason="not_a_video")
    limit = max_bytes if max_bytes is not None else size
    deadline = deadline if deadline is not None else time.monotonic() + config.timeout_s
    try:
        container = _av_open(path, config, limit, deadline)
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError, OSError, DecodeDeadline) as exc:
        if time.monotonic() >= deadline or isinstance(exc, (av.error.ExitError, DecodeDeadline)):
            raise PermanentError(f"opening the video took longer than timeout_s={config.timeout_s}", reason="decode_timeout") from None
        head = _head(path).lstrip(b"\xef\xbb\xbf \t\r\n")
        refused = getattr(exc, "errno", None) == errno.EINVAL
        if head.startswith(_PLAYLIST_MAGIC):
            raise PermanentError("playlists and other multi-file containers are not accepted", reason="container_not_allowed") from None
        if refused and not _looks_like_container(path):
            # EINVAL from avformat_open_input: the probe found a demuxer outside ALLOWED_FORMATS
            raise PermanentError(f"container format is not accepted: {exc}", reason="container_not_allowed") from None
        if _looks_like_container(path):
            raise PermanentError(f"container cannot be read (truncated or missing index): {exc}", reason="corrupt_video") from None
        raise PermanentError(f"not a recognised video file: {exc}", reason="not_a_video") from None
    name = str(getattr(container.format, "name", "") or "")
    if any(part.endswith(STILL_IMAGE_FORMAT_SUFFIX) for part in name.split(",")):
        _close(container)
        raise PermanentError(f"file is a still image ({name}), not a video", reason="still_image")
    return container


def _probe_refused_size(path: Path, config: DecodeConfig, limit: int, deadline: float) -> bool:
    """Did FFmpeg's stream probe refuse a frame above ``max_pixels``? (Rare path: size unknown.)

    The probe cannot open a decoder for such a stream, so the size reads as 0 and the reason is
    only in FFmpeg's log. PyAV logging is off by default (it costs and can stall threaded
    decoders), so it is switched on just for this re-open, which allocates no frame.
    """
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            try:
                _close(_av_open(path, config, limit, deadline))
            except (av.error.FFmpegError, OSError):
                return False
    finally:
        av.logging.set_level(previous)
    return any("max pixel count" in str(line[-1]) for line in logs)


def _pick_stream(container: Any) -> Any:
    """The first real video stream; cover art (``attached_pic``) and still images do not count."""
    still = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    for stream in container.streams.video:
        if not (int(stream.disposition) & int(still)):
            return stream
    if container.streams.video:
        raise PermanentError("file holds only cover art or a still image, no video stream", reason="no_video_stream")
    raise PermanentError("file has no video stream", reason="no_video_stream")


def _rate(stream: Any) -> float | None:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        try:
            value = getattr(stream, attr)
        except Exception:  # noqa: BLE001 - PyAV may raise on odd streams
            value = None
        if value and 0 < float(value) <= 1000:
            return float(value)
    return None


def _header_duration(container: Any, stream: Any) -> float | None:
    tb = stream.time_base
    if stream.duration and tb and tb.numerator > 0:
        return float(stream.duration * tb)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _check_size(width: int, height: int, config: DecodeConfig) -> None:
    if width <= 0 or height <= 0:
        raise PermanentError(f"video has no valid size ({width}x{height})", reason="corrupt_video")
    if width > config.max_width or height > config.max_height or width * height > config.max_pixels:
        raise PermanentError(
            f"{width}x{height} exceeds the limits (max {config.max_width}x{config.max_height}, {config.max_pixels} pixels)",
            reason="resolution_too_large",
        )


# -- seeking plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """Keyframe timestamps (stream ticks and seconds) from the demuxer's sample index."""

    key_ticks: list[int]
    key_seconds: list[float]
    sample_seconds: list[float]


def _read_index(stream: Any, start: float) -> _Index | None:
    try:
        entries = stream.index_entries
        count = len(entries)
    except Exception:  # noqa: BLE001 - not every demuxer builds one
        return None
    tb = stream.time_base
    if count < 2 or not tb or tb.numerator <= 0:
        return None
    if not stream.frames or count < 0.9 * stream.frames:
        return None  # a sparse index (e.g. Matroska cues: keyframes only) cannot plan a skip
    key_ticks: list[int] = []
    samples: list[float] = []
    for i in range(count):
        entry = entries[i]
        ts = entry.timestamp
        samples.append(float(ts * tb) - start)
        if entry.is_keyframe:
            key_ticks.append(ts)
    if len(key_ticks) < 2:
        return None
    return _Index(key_ticks, [float(t * tb) - start for t in key_ticks], sorted(samples))


def planned_skip_fraction(index: _Index, fps: float) -> float:
    """Fraction of frames a keyframe-skipping decode avoids, estimated from the index alone."""
    samples = index.sample_seconds
    if not samples:
        return 0.0
    duration = samples[-1]
    decoded = 0
    pos = 0  # index into samples of the next frame the decoder would produce
    k = 0
    while True:
        target = k / fps
        if target > duration:
            break
        first = bisect.bisect_left(samples, target - 1e-6)
        if first >= len(samples):
            break
        key = bisect.bisect_right(index.key_seconds, samples[first] - _seek_margin(fps)) - 1
        key_pos = bisect.bisect_left(samples, index.key_seconds[key] - 1e-6) if key >= 0 else 0
        if key_pos > pos:
            pos = key_pos
        decoded += first + 1 - pos
        pos = first + 1
        k = math.floor(samples[first] * fps + 1e-9) + 1
    return max(0.0, 1.0 - decoded / len(samples))


def _seek_margin(fps: float) -> float:
    """Keyframes closer than this before the wanted time are not worth a seek."""
    return 0.1 / fps


# -- frame conversion ---------------------------------------------------------------------------


def _to_crop(frame: Any, config: DecodeConfig, *, keep_context: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Short side → ``short_side`` (bicubic), centre ``crop``², RGB uint8, display rotation applied.

    With ``keep_context`` also the whole resized frame (rotated like the crop), which the inset
    detector and the inset view are cut from; ``None`` for extreme aspect ratios (never resized whole).
    """
    w, h = frame.width, frame.height
    short = config.short_side
    scale = short / min(w, h)
    sw, sh = max(short, round(w * scale)), max(short, round(h * scale))
    c = config.crop
    context = None
    if max(sw, sh) <= MAX_ASPECT_FAST * short:
        rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="BICUBIC").to_ndarray()
        y0, x0 = (sh - c) // 2, (sw - c) // 2
        out = rgb[y0 : y0 + c, x0 : x0 + c]
        context = rgb if keep_context else None
    else:
        # Extreme aspect: take the source region that maps onto the crop, then scale only that.
        side = max(1, round(c / scale))
        rgb = frame.to_ndarray(format="rgb24")
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        region = np.ascontiguousarray(rgb[y0 : y0 + side, x0 : x0 + side])
        out = av.VideoFrame.from_ndarray(region, format="rgb24").reformat(width=c, height=c, interpolation="BICUBIC").to_ndarray()
    rotation = getattr(frame, "rotation", 0) or 0
    turns = round(rotation / 90) % 4
    if turns:
        out = np.rot90(out, k=turns)  # FFmpeg's display matrix angle is counter-clockwise
        context = np.rot90(context, k=turns) if context is not None else None
    return np.ascontiguousarray(out), context


def _inset_view(context: np.ndarray, box: InsetBox, config: DecodeConfig) -> np.ndarray:
    """The second view of a whole resized frame: the inset cut out, then resized and centre-cropped
    like the main view, or, for portrait content (a vertical video, or a vertical video's inset),
    its reframe view (:func:`ingest.reframe.reframe_view`)."""
    h, w = context.shape[:2]
    if is_portrait(box, w, h):  # a reframe box is portrait by construction (ingest.reframe.portrait_content)
        return reframe_view(context, box, config.short_side, config.crop)
    x0, y0, x1, y1 = box.pixels(w, h)
    region = np.ascontiguousarray(context[y0:y1, x0:x1])
    rh, rw = region.shape[:2]
    short = config.short_side
    scale = short / max(1, min(rw, rh))
    sw, sh = max(short, round(rw * scale)), max(short, round(rh * scale))
    limit = int(MAX_ASPECT_FAST * short)
    sw, sh = min(sw, limit), min(sh, limit)  # a sliver of an inset is squeezed, never blown up
    big = av.VideoFrame.from_ndarray(region, format="rgb24").reformat(width=sw, height=sh, interpolation="BICUBIC").to_ndarray()
    c = config.crop
    oy, ox = max(0, (sh - c) // 2), max(0, (sw - c) // 2)
    out = big[oy : oy + c, ox : ox + c]
    if out.shape[:2] != (c, c):  # a sliver narrower than the crop: pad, never fail
        out = np.pad(out, ((0, c - out.shape[0]), (0, c - out.shape[1]), (0, 0)))
    return np.ascontiguousarray(out)


class _InsetTracker:
    """Keeps the first :data:`~ingest.inset.DETECT_FRAMES` whole frames, detects the inset on them
    once, then cuts the inset view from every sampled frame; views are handed out per chunk
    (:meth:`take`), so memory is those frames, then one chunk of views."""

    def __init__(self, config: DecodeConfig, borders: BorderTracker) -> None:
        self.config = config
        self.borders = borders
        """Its bars are decided on the first frames, before this tracker decides (a portrait video's
        reframe view is cut from the content inside them)."""
        self.active = config.inset_views
        self.pending: list[np.ndarray] = []
        self.box: InsetBox | None = None
        self.views: list[np.ndarray] = []
        self.decided = False
        self.complete = True
        """False once a chunk went out without its views (the inset is then dropped)."""

    @property
    def wants_context(self) -> bool:
        return self.active and (not self.decided or self.box is not None)

    def add(self, context: np.ndarray | None) -> None:
        if not self.wants_context:
            return
        if context is None or (self.pending and context.shape != self.pending[0].shape):
            self._give_up()  # no whole frame (extreme aspect) or a size change mid-stream
            return
        if self.decided:
            self.views.append(_inset_view(context, self.box, self.config))  # type: ignore[arg-type]
            return
        self.pending.append(context)
        if len(self.pending) >= DETECT_FRAMES:
            self._decide()

    def _decide(self) -> None:
        self.decided = True
        frames = np.stack(self.pending) if len(self.pending) else None
        self.box = detect_inset(frames) if frames is not None else None
        if self.box is not None:
            self.box = inset_content(frames, self.box)  # type: ignore[arg-type]
        if self.box is None and frames is not None and self.config.reframe_views:
            self.box = portrait_content(frames.shape[2], frames.shape[1], self.borders.box)
        if self.box is not None:
            self.views = [_inset_view(c, self.box, self.config) for c in self.pending]
        self.pending = []

    def _give_up(self) -> None:
        self.active, self.box, self.views, self.pending = False, None, [], []

    def take(self, frames: int, *, last: bool) -> np.ndarray | None:
        """The inset views of the next ``frames`` sampled frames (``None`` when there are none)."""
        if last and self.active and not self.decided:
            self._decide()
        if not self.active or self.box is None or len(self.views) < frames:
            self.complete = False
            self.views = []
            return None
        out = np.stack(self.views[:frames])
        del self.views[:frames]
        return out

    def final_box(self) -> tuple[float, float, float, float] | None:
        if not self.active or self.box is None or not self.complete:
            return None
        b = self.box
        log.debug("%s view %s (line contrast %.2f)", b.kind, b.as_list(), b.coverage)
        return (b.x0, b.y0, b.x1, b.y1)

    def final_kind(self) -> str | None:
        """``inset`` or ``reframe`` when the second view was handed out with every chunk, else ``None``."""
        return self.box.kind if self.final_box() is not None else None  # type: ignore[union-attr]


# -- the decode loop ----------------------------------------------------------------------------


class FrameStream:
    """Decode ``path`` chunk by chunk: iterate to get :class:`FrameChunk` s, then read :attr:`summary`.

    Every chunk's arrays are views of one reused buffer of ``config.chunk_frames`` crops: they are
    valid until the next chunk is requested. Iterating raises :class:`PermanentError` with the
    documented reasons (possibly after some chunks were handed out: a consumer discards what it
    built). Use as a context manager, or iterate to the end, so the file is closed.
    """

    def __init__(self, path: Path | str, config: DecodeConfig, video_id: str, *, mode: SeekMode = "auto",
                 max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.video_id = video_id
        self.mode = mode
        self.max_bytes = max_bytes
        self.stats = DecodeStats()
        self.summary: DecodeSummary | None = None
        self.chunk_frames = max(int(config.chunk_frames), DETECT_FRAMES)
        self._container: Any = None

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            _close(self._container)
            self._container = None

    def __iter__(self) -> Iterator[FrameChunk]:
        try:
            yield from self._run()
        finally:
            self.close()

    def _run(self) -> Iterator[FrameChunk]:
        config = self.config
        started = time.monotonic()
        deadline = started + config.timeout_s
        self._container = container = _open(self.path, config, max_bytes=self.max_bytes, deadline=deadline)
        try:
            stream = _pick_stream(container)
            codec_ctx = stream.codec_context
            if codec_ctx is None or not getattr(codec_ctx, "name", None):
                raise PermanentError("video codec is unknown to this decoder", reason="unsupported_codec")
            width, height = int(codec_ctx.width or 0), int(codec_ctx.height or 0)
            if width or height:
                _check_size(width, height, config)
            elif _probe_refused_size(self.path, config, self.max_bytes or self.path.stat().st_size, deadline):
                raise PermanentError(
                    f"frame size exceeds max_pixels={config.max_pixels} (decompression bomb?)", reason="resolution_too_large"
                )
            header = _header_duration(container, stream)
            if header is not None and header > config.max_duration_s:
                raise PermanentError(f"header duration {header:.0f}s exceeds max_duration_s={config.max_duration_s:.0f}", reason="too_long")
            # The decoder refuses frames above max_pixels before allocating them (a header may lie).
            codec_ctx.options = {**dict(codec_ctx.options or {}), "max_pixels": str(config.max_pixels)}
            stream.thread_type = "AUTO"
            if config.threads:
                codec_ctx.thread_count = config.threads
            sampler = _Sampler(container, stream, config, self.mode, deadline, self.stats, self.chunk_frames)
            yield from sampler.chunks()
            rate = _rate(stream)  # read before the container closes: the stream dies with it
        except PermanentError:
            raise
        except av.error.DecoderNotFoundError as exc:
            raise PermanentError(f"no decoder for this video codec: {exc}", reason="unsupported_codec") from None
        except av.error.MemoryError:
            raise  # out of memory is not the file's fault: let the worker crash and restart
        except (av.error.ExitError, DecodeDeadline):
            raise PermanentError(f"decoding took longer than timeout_s={config.timeout_s}", reason="decode_timeout") from None
        except av.error.FFmpegError as exc:
            if time.monotonic() > deadline:
                raise PermanentError(f"decoding took longer than timeout_s={config.timeout_s}", reason="decode_timeout") from None
            # Anything FFmpeg refuses outside the frame loop (opening the decoder, seeking) is the file.
            raise PermanentError(f"FFmpeg refused the video: {exc}", reason="corrupt_video") from None
        finally:
            self.close()
        self.stats.wall_s = time.monotonic() - started
        if not sampler.count_sampled:
            raise PermanentError("video stream holds no decodable frame", reason="zero_frames" if sampler.clean else "corrupt_video")
        frame_dur = 1.0 / rate if rate else 0.0
        # Trust the header only when the frames we saw agree with it (a lying header claims hours).
        duration = sampler.end_t + frame_dur
        if sampler.clean and header is not None and abs(header - duration) <= 1.0 / config.fps + 1.0:
            duration = header
        self.summary = DecodeSummary(
            video_id=self.video_id,
            num_frames=sampler.count_sampled,
            duration_s=float(duration),
            source_width=sampler.src_size[0],
            source_height=sampler.src_size[1],
            source_fps=rate,
            inset_box=sampler.inset.final_box(),
            inset_kind=sampler.inset.final_kind(),
            borders=self.stats.borders,
        )


def _decode(path: Path, config: DecodeConfig, video_id: str, mode: SeekMode, *, max_bytes: int | None = None) -> tuple[DecodedVideo, DecodeStats]:
    """The whole video in memory: every chunk copied out of the stream's buffer, then joined."""
    stream = FrameStream(path, config, video_id, mode=mode, max_bytes=max_bytes)
    frames: list[np.ndarray] = []
    times: list[np.ndarray] = []
    insets: list[np.ndarray | None] = []
    for chunk in stream:
        frames.append(chunk.frames.copy())
        times.append(chunk.timestamps.copy())
        insets.append(chunk.inset.copy() if chunk.inset is not None else None)
    summary = stream.summary
    assert summary is not None
    inset = None
    if summary.inset_box is not None and all(i is not None for i in insets):
        inset = np.concatenate(insets)  # type: ignore[arg-type]
    video = DecodedVideo(
        video_id=video_id,
        frames=frames[0] if len(frames) == 1 else np.concatenate(frames),
        timestamps=np.concatenate(times),
        duration_s=summary.duration_s,
        source_width=summary.source_width,
        source_height=summary.source_height,
        source_fps=summary.source_fps,
        inset=inset,
        inset_box=summary.inset_box if inset is not None else None,
        inset_kind=summary.inset_kind if inset is not None else None,
        borders=summary.borders,
    )
    return video, stream.stats


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    for packet in container.demux(stream):
        yield from packet.decode()


class _Sampler:
    """The sampling loop: decoded frames → chunks of sampled crops in one reused buffer."""

    def __init__(self, container: Any, stream: Any, config: DecodeConfig, mode: SeekMode, deadline: float, stats: DecodeStats,
                 chunk_frames: int) -> None:
        self.container, self.stream, self.config, self.mode = container, stream, config, mode
        self.deadline, self.stats = deadline, stats
        self.buffer = np.empty((chunk_frames, config.crop, config.crop, 3), np.uint8)
        self.times = np.empty(chunk_frames, np.float64)
        self.borders = BorderTracker(config.short_side, config.crop, enabled=config.crop_borders)
        self.inset = _InsetTracker(config, self.borders)
        self.borders_settled = False
        self.src_size = (0, 0)
        self.count_sampled = 0
        self.end_t = 0.0
        self.clean = True

    def _chunk(self, n: int, *, last: bool) -> FrameChunk:
        if not self.borders_settled:
            self._settle_borders(n)
        return FrameChunk(frames=self.buffer[:n], timestamps=self.times[:n], inset=self.inset.take(n, last=last))

    def _settle_borders(self, n: int) -> None:
        """Before the first chunk leaves: the bars are decided (on the first
        :data:`ingest.borders.DETECT_FRAMES` frames, which a chunk always holds) and the frames
        sampled before the decision are re-cut from their content, in the buffer."""
        self.borders_settled = True
        crops, box = self.borders.finish(list(self.buffer[:n]))
        if box is not None:
            self.buffer[:n] = np.stack(crops)
        self.stats.borders = box.to_evidence() if box is not None else None

    def chunks(self) -> Iterator[FrameChunk]:
        container, stream, config, stats = self.container, self.stream, self.config, self.stats
        fps = config.fps
        tb: Fraction | None = stream.time_base if stream.time_base and stream.time_base.numerator > 0 else None
        rate = _rate(stream) or FALLBACK_FPS
        start = float(stream.start_time * tb) if (tb is not None and stream.start_time is not None) else None
        index = _read_index(stream, start or 0.0) if (self.mode != "full" and tb is not None) else None
        use_seek = index is not None and (self.mode == "seek" or planned_skip_fraction(index, fps) >= SEEK_MIN_SKIP)
        stats.seek_used = use_seek

        capacity = len(self.buffer)
        filled = 0
        decoded_bytes = 0
        next_k = 0
        last_t = -math.inf
        count = 0
        seek_from: float | None = None
        iterator = _frames(container, stream)
        while True:
            if time.monotonic() > self.deadline:
                raise PermanentError(f"decoding took longer than timeout_s={config.timeout_s}", reason="decode_timeout")
            try:
                frame = next(iterator)
            except StopIteration:
                break
            except (av.error.DecoderNotFoundError, av.error.ExitError):
                raise
            except (av.error.FFmpegError, ValueError, OverflowError) as exc:
                if "max pixel count" in str(exc):
                    raise PermanentError(f"frame exceeds max_pixels={config.max_pixels}: {exc}", reason="resolution_too_large") from None
                if time.monotonic() > self.deadline:
                    raise PermanentError(f"decoding took longer than timeout_s={config.timeout_s}", reason="decode_timeout") from None
                self.clean = False
                stats.truncated = True
                log.warning("decode of %s stopped after %d frames: %s", container.name, count, exc)
                break
            count += 1
            stats.frames_decoded += 1
            _check_size(frame.width, frame.height, config)
            decoded_bytes += frame.width * frame.height * 3 // 2
            if decoded_bytes > config.max_decoded_bytes:
                raise PermanentError(f"decoded more than max_decoded_bytes={config.max_decoded_bytes}", reason="decode_budget_exceeded")
            if frame.pts is not None and tb is not None:
                t_abs = float(frame.pts * tb)
                if start is None:
                    start = t_abs
                t = t_abs - start
            else:
                t = (count - 1) / rate
            if not math.isfinite(t) or t > config.max_duration_s:
                raise PermanentError(f"frame at {t:.0f}s is beyond max_duration_s={config.max_duration_s:.0f}", reason="too_long")
            self.end_t = max(self.end_t, t)
            if seek_from is not None:
                if t <= seek_from:
                    use_seek = False  # the seek landed behind us: this file seeks badly, go linear
                    stats.seek_used = False
                seek_from = None
            if t < last_t or t < next_k / fps - 1e-6:
                continue  # before the wanted time (or out of order): skip without converting
            if self.count_sampled >= config.max_frames:
                raise PermanentError(f"more than max_frames={config.max_frames} sampled frames", reason="too_long")
            if filled == capacity:
                yield self._chunk(filled, last=False)
                filled = 0
            try:
                crop, context = _to_crop(frame, config, keep_context=self.inset.wants_context or self.borders.wants_context)
                self.inset.add(context)
                crop = self.borders.view(crop, context)
            except (av.error.FFmpegError, ValueError) as exc:
                raise PermanentError(f"cannot convert {frame.format.name} {frame.width}x{frame.height} frames to RGB: {exc}", reason="unsupported_codec") from None
            if not self.count_sampled:
                rotated = round((getattr(frame, "rotation", 0) or 0) / 90) % 2 == 1
                self.src_size = (frame.height, frame.width) if rotated else (frame.width, frame.height)
            self.buffer[filled] = crop
            self.times[filled] = max(t, 0.0)
            filled += 1
            self.count_sampled += 1
            last_t = t
            next_k = math.floor(t * fps + 1e-9) + 1
            if use_seek and index is not None and tb is not None:
                if _maybe_seek(container, stream, index, next_k / fps, t, fps, (start or 0.0), tb, stats):
                    iterator = _frames(container, stream)
                    seek_from = t
        if filled:
            yield self._chunk(filled, last=True)


def _maybe_seek(
    container: Any, stream: Any, index: _Index, target: float, current: float, fps: float, start: float, tb: Fraction, stats: DecodeStats
) -> bool:
    """Seek when a keyframe lies between the decoder's position and ``target``; True if we did.

    We seek to the wanted time (minus a margin for frame reordering), not to the index entry:
    index timestamps are decode times, and the demuxer picks the keyframe at or before the time.
    """
    margin = _seek_margin(fps)
    i = bisect.bisect_right(index.key_seconds, target - margin) - 1
    if i < 0 or index.key_seconds[i] <= current + margin:
        return False
    ticks = int((start + target - margin) / tb)
    try:
        container.seek(ticks, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        return False
    stats.seeks += 1
    return True
