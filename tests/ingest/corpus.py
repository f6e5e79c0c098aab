"""Bad-input video corpus, generated with PyAV (no ffmpeg binary needed).

Each ``make_*`` function writes one small file into ``directory`` and returns its path.
:data:`CASES` lists every case with the outcome the decoder must produce (documented in
``ingest/decode.py``): ``Ok(frames)`` or ``Refused(reason)``. ``write_corpus(dir)`` writes all.
"""

from __future__ import annotations

import random
import struct
import zlib
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np

FPS = 10


def _pattern(width: int, height: int, i: int) -> np.ndarray:
    """A moving gradient (compresses to something non-trivial, differs per frame)."""
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    img = np.empty((height, width, 3), np.uint8)
    i %= 256  # same pattern (everything is mod 256), no uint16 overflow on long videos
    img[..., 0] = (x * 3 + i * 9) % 256
    img[..., 1] = (y * 5 + i * 7) % 256
    img[..., 2] = ((x + y) + i * 13) % 256
    return img


def encode(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    times: Sequence[float] | None = None,
    n_frames: int = 30,
    codec: str = "libx264",
    fps: int = FPS,
    time_base: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rotation: float | None = None,
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode frames at ``times`` seconds (default ``i / fps``) into ``path``."""
    times = list(times) if times is not None else [i / fps for i in range(n_frames)]
    tb = Fraction(time_base) if time_base else Fraction(1, 1000)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = tb
        stream.codec_context.time_base = tb
        if gop:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_pattern(width, height, i), format="rgb24")
            frame.pts = round(t / tb)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_good(directory: Path) -> Path:
    return encode(directory / "good.mp4", n_frames=30)


def make_truncated_mp4(directory: Path) -> Path:
    """moov at the end (PyAV's default): cutting the tail loses the index → unreadable."""
    full = encode(directory / "_full_tail_moov.mp4", n_frames=40)
    data = full.read_bytes()
    full.unlink()
    path = directory / "truncated.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def make_truncated_faststart_mp4(directory: Path) -> Path:
    """moov first (faststart): the cut loses only media data → the first part decodes."""
    full = encode(directory / "_full_faststart.mp4", n_frames=60, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    full.unlink()
    path = directory / "truncated_faststart.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def _boxes(data: bytes) -> Iterable[tuple[bytes, int, int]]:
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        if size < 8:
            break
        yield kind, pos, size
        pos += size


def make_moov_missing(directory: Path) -> Path:
    full = encode(directory / "_with_moov.mp4", n_frames=20)
    data = full.read_bytes()
    full.unlink()
    kept = b"".join(data[pos : pos + size] for kind, pos, size in _boxes(data) if kind != b"moov")
    path = directory / "moov_missing.mp4"
    path.write_bytes(kept)
    return path


def make_zero_byte(directory: Path) -> Path:
    path = directory / "zero_byte.mp4"
    path.write_bytes(b"")
    return path


def make_random_bytes(directory: Path) -> Path:
    path = directory / "random_bytes.mp4"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    return path


def make_text(directory: Path) -> Path:
    path = directory / "text.mp4"
    path.write_text("this is not a video\n" * 200)
    return path


def _audio_frames(stream: av.audio.stream.AudioStream, seconds: float) -> Iterable[av.AudioFrame]:
    rate = stream.codec_context.sample_rate
    samples = stream.codec_context.frame_size or 1024
    total = int(rate * seconds)
    for start in range(0, total, samples):
        t = (np.arange(samples) + start) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        yield frame


def make_audio_only(directory: Path) -> Path:
    path = directory / "audio_only.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for frame in _audio_frames(stream, 1.0):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_cover_art_only(directory: Path) -> Path:
    """Audio plus a cover picture (a video stream with the attached_pic disposition)."""
    path = directory / "cover_art.mp4"
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=16000, layout="mono")
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        frame = av.VideoFrame.from_ndarray(_pattern(64, 64, 0), format="rgb24")
        frame.pts = 0
        for packet in [*cover.encode(frame), *cover.encode()]:
            out.mux(packet)
        for audio_frame in _audio_frames(audio, 1.0):
            for packet in audio.encode(audio_frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def make_zero_frames(directory: Path) -> Path:
    """A container with a video stream that holds no packet (audio carries the file)."""
    path = directory / "zero_frames.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono")
        for frame in _audio_frames(audio, 1.0):
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def make_single_frame(directory: Path) -> Path:
    return encode(directory / "single_frame.mp4", n_frames=1)


def make_tiny(directory: Path) -> Path:
    """2×2 pixels: yuv420p needs even sizes; ffv1 in Matroska takes 1×1 too, see make_one_pixel."""
    return encode(directory / "tiny_2x2.mp4", width=2, height=2, n_frames=20)


def make_one_pixel(directory: Path) -> Path:
    return encode(directory / "one_pixel.mkv", width=1, height=1, n_frames=20, codec="ffv1", pix_fmt="yuv444p")


def make_extreme_aspect(directory: Path) -> Path:
    return encode(directory / "aspect_4000x16.mp4", width=4000, height=16, n_frames=20)


def make_above_limits(directory: Path) -> Path:
    """1280×720, refused by a test config with max 640×480 (an 8K clip works the same way)."""
    return encode(directory / "above_limits_720p.mp4", width=1280, height=720, n_frames=2, options={"preset": "ultrafast"})


def make_8k_plus(directory: Path) -> Path:
    """One frame just above the default 7680×4320 limit: refused from the header, never decoded."""
    return encode(directory / "8k_plus.mp4", width=7696, height=4320, n_frames=1, codec="mpeg4", pix_fmt="yuv420p", options={"qscale": "31"})


def make_pts_jump(directory: Path) -> Path:
    """Four frames, the last at 10 h (a pts jump; the mp4 header itself says ~3 s)."""
    return encode(directory / "pts_jump_10h.mp4", times=[0.0, 1.0, 2.0, 36000.0])


def make_ten_hour_header(directory: Path) -> Path:
    """Three seconds of frames in Matroska whose Segment Duration claims 10 hours.

    (FFmpeg recomputes MP4 durations from the sample table, so patching mvhd/mdhd does not lie
    convincingly; the Matroska Duration float is taken as is.)
    """
    tmp = encode(directory / "_three_seconds.mkv", n_frames=30, codec="mpeg4")
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    at = data.find(b"\x44\x89\x88")  # EBML Duration, 8-byte float, in TimestampScale units (ms)
    assert at != -1, "no Duration element"
    data[at + 3 : at + 11] = struct.pack(">d", 36000 * 1000.0)
    path = directory / "ten_hour_header.mkv"
    path.write_bytes(bytes(data))
    return path


VFR_TIMES = (0.0, 0.1, 0.5, 0.9, 1.7, 1.75, 3.2, 3.3, 4.0, 4.4)
VFR_EXPECTED = (0.0, 1.7, 3.2, 4.0)
"""First frame at or after each whole second (a gap yields one frame)."""


def make_vfr(directory: Path) -> Path:
    return encode(directory / "vfr.mp4", times=VFR_TIMES)


def make_rotated(directory: Path) -> Path:
    """64×32 with a white top stripe and a display matrix of 90° (counter-clockwise)."""
    path = directory / "rotated_90.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(10):
            img = np.zeros((32, 64, 3), np.uint8)
            img[:8, :] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_unsupported_codec(directory: Path) -> Path:
    """MPEG-4 part 2 in AVI with the fourcc replaced by one FFmpeg does not know."""
    tmp = encode(directory / "_mpeg4.avi", n_frames=10, codec="mpeg4")
    data = tmp.read_bytes()
    tmp.unlink()
    assert b"FMP4" in data
    path = directory / "unsupported_codec.avi"
    path.write_bytes(data.replace(b"FMP4", b"ZQ9X"))
    return path


def _png_bomb(width: int, height: int) -> bytes:
    """A grey 8-bit PNG of ``width``×``height`` made of zeros, compressed in a stream (low memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0 + zero pixels
    parts = []
    block = row * 256
    for _ in range(height // 256):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (height % 256)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def make_bomb(directory: Path, side: int = 16000) -> Path:
    """A ~250 KB QuickTime file whose one PNG frame decodes to 16000×16000 (256 MB gray, 768 MB RGB)."""
    path = directory / "bomb_16000.mov"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = side, side, "gray"
        stream.time_base = Fraction(1, 1)
        packet = av.Packet(_png_bomb(side, side))
        packet.stream = stream
        packet.pts = packet.dts = 0
        packet.time_base = Fraction(1, 1)
        out.mux(packet)
    return path


def _outside_secret(directory: Path) -> Path:
    """A real video next to (not inside) the corpus folder: what a playlist must not reach."""
    outside = directory.parent / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    secret = outside / "secret.ts"
    if not secret.exists():
        encode(secret, n_frames=30)
    return secret


def make_hls_absolute_escape(directory: Path) -> Path:
    """An HLS playlist inside the root listing ``file:///…/outside/secret.ts``."""
    secret = _outside_secret(directory)
    path = directory / "escape_absolute.m3u8"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\nfile://{secret}\n#EXT-X-ENDLIST\n")
    return path


def make_hls_relative_escape(directory: Path) -> Path:
    """An HLS playlist inside the root listing ``../outside/secret.ts``, renamed ``.mp4``."""
    _outside_secret(directory)
    path = directory / "escape_relative.mp4"
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n../outside/secret.ts\n#EXT-X-ENDLIST\n")
    return path


def make_hls_live(directory: Path) -> Path:
    """A live HLS playlist (no ``#EXT-X-ENDLIST``): FFmpeg would wait for new segments forever."""
    encode(directory / "_live_seg0.ts", n_frames=10)
    path = directory / "live.m3u8"
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\n_live_seg0.ts\n")
    return path


def make_concat_escape(directory: Path) -> Path:
    """An ffconcat list naming the outside file."""
    secret = _outside_secret(directory)
    path = directory / "escape.ffconcat"
    path.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    return path


def make_still_png_as_mp4(directory: Path) -> Path:
    """A 64×48 PNG still renamed ``.mp4``."""
    path = directory / "still_png.mp4"
    path.write_bytes(_png_bomb(64, 48))
    return path


def make_still_jpeg_as_mp4(directory: Path) -> Path:
    """A JPEG still renamed ``.mp4`` (one MJPEG frame written by PyAV's ``image2pipe`` muxer)."""
    path = directory / "still_jpeg.mp4"
    with av.open(str(path), "w", format="image2pipe") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(_pattern(64, 48, 0), format="rgb24")
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_long_tiny(directory: Path, seconds: float = 4 * 3600 - 10, step: float = 1.0, name: str = "long_4h_16x16.mp4") -> Path:
    """A real, decodable 16×16 H.264 video lasting ``seconds``: one frame every ``step`` seconds
    (a frame per sampled second, so every frame becomes a crop), long GOPs. 4 h is ~0.5 MB."""
    times = [i * step for i in range(int(seconds / step) + 1)]
    return encode(directory / name, width=16, height=16, times=times, fps=max(1, round(1 / step)), gop=600,
                  options={"preset": "ultrafast"})


def make_lying_header_5h(directory: Path) -> Path:
    """Five hours of 16×16 frames (one every 5 s) in Matroska whose Duration claims 10 seconds."""
    tmp = encode(directory / "_five_hours.mkv", width=16, height=16, times=[i * 5.0 for i in range(3600)], fps=1, gop=600,
                 options={"preset": "ultrafast"})
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    at = data.find(b"\x44\x89\x88")
    assert at != -1, "no Duration element"
    data[at + 3 : at + 11] = struct.pack(">d", 10 * 1000.0)
    path = directory / "lying_header_5h.mkv"
    path.write_bytes(bytes(data))
    return path


@dataclass(frozen=True)
class Ok:
    frames: int


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    expected: Ok | Refused
    note: str = ""


CASES: tuple[Case, ...] = (
    Case("good", make_good, Ok(3)),
    Case("truncated_mp4", make_truncated_mp4, Refused("corrupt_video"), "moov at the end is cut off"),
    Case("truncated_faststart_mp4", make_truncated_faststart_mp4, Ok(-1), "partial: 1 ≤ frames < 6"),
    Case("moov_missing", make_moov_missing, Refused("corrupt_video")),
    Case("zero_byte", make_zero_byte, Refused("not_a_video")),
    Case("random_bytes", make_random_bytes, Refused("not_a_video")),
    Case("text", make_text, Refused("not_a_video")),
    Case("audio_only", make_audio_only, Refused("no_video_stream")),
    Case("cover_art_only", make_cover_art_only, Refused("no_video_stream"), "attached picture is not a video"),
    Case("zero_frames", make_zero_frames, Refused("zero_frames")),
    Case("single_frame", make_single_frame, Ok(1)),
    Case("tiny_2x2", make_tiny, Ok(2), "upscaled to the crop"),
    Case("one_pixel", make_one_pixel, Ok(2), "ffv1 1×1, upscaled"),
    Case("extreme_aspect", make_extreme_aspect, Ok(2), "cropped at source resolution first"),
    Case("above_limits", make_above_limits, Refused("resolution_too_large"), "with SMALL_LIMITS (max 640×480)"),
    Case("ten_hour_header", make_ten_hour_header, Refused("too_long"), "header claims 10 h > max 4 h: refused before decoding"),
    Case("pts_jump_10h", make_pts_jump, Refused("too_long"), "frame at 10 h > max 4 h: refused while decoding"),
    Case("vfr", make_vfr, Ok(len(VFR_EXPECTED))),
    Case("rotated", make_rotated, Ok(1)),
    Case("unsupported_codec", make_unsupported_codec, Refused("unsupported_codec")),
    Case("bomb", make_bomb, Refused("resolution_too_large"), "16000² PNG, refused before any decode"),
    Case("hls_absolute_escape", make_hls_absolute_escape, Refused("container_not_allowed"), ".m3u8 listing file:///…/outside/secret.ts"),
    Case("hls_relative_escape", make_hls_relative_escape, Refused("container_not_allowed"), "playlist listing ../outside/secret.ts, named .mp4"),
    Case("hls_live", make_hls_live, Refused("container_not_allowed"), "no #EXT-X-ENDLIST: refused before FFmpeg waits"),
    Case("concat_escape", make_concat_escape, Refused("container_not_allowed"), "ffconcat list naming an outside file"),
    Case("still_png_as_mp4", make_still_png_as_mp4, Refused("still_image")),
    Case("still_jpeg_as_mp4", make_still_jpeg_as_mp4, Refused("still_image")),
    Case("lying_header_5h", make_lying_header_5h, Refused("too_long"), "claims 10 s, frames run 5 h: refused at the first frame past 4 h"),
)

LONG_CASES: tuple[Case, ...] = (
    Case("long_4h_16x16", make_long_tiny, Ok(14391), "a real 4 h upload (one frame a second): indexed, chunk by chunk"),
)
"""Uploads whose sampled frames are many: decoded through ``FrameStream`` (``test_long_uploads``),
never collected whole by ``decode_video``."""


SLOW_CASES: tuple[Case, ...] = (
    Case("8k_plus", make_8k_plus, Refused("resolution_too_large"), "7696×4320, refused from the header (7 s, 0.8 GB to make)"),
)


def write_corpus(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {case.name: case.make(directory) for case in CASES}
