"""Real copy transformations applied frame by frame (then re-encoded by the builder).

Spatial edits keep time; temporal edits change it and report how (``speed``, ``offset``) so the
benchmark builder can record where the copied source segment sits in the query. Every transform
draws its parameters from the ``numpy.random.Generator`` it is given: a benchmark is
deterministic from its seed.

Where Meta's AugLy covers a transformation (``pip install "dupwatch[bench-augly]"``: the base
``augly`` package, image functions only), :func:`text_overlay` and :func:`emoji_overlay` use it
per frame, with every parameter drawn from our generator; without it (or with
:func:`use_augly` ``(False)``) they fall back to our own PIL code. Each :class:`Edit` records
which implementation made it in ``params["impl"]`` (``augly-1.0.0`` or ``dupwatch``). AugLy's
*video* module is not used: ``augly[video]`` pins Pillow < 9 (no wheel for Python 3.11: it
downgrades Pillow 13 from source), pulls torchaudio/librosa/opencv and shells out to ffmpeg
binaries that the one-command install does not provide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from evaluation.truth import KIND_SEPARATOR
from evaluation.video_io import Clip

Frame = np.ndarray


def _map_frames(clip: Clip, fn: Callable[[Frame], Frame]) -> Clip:
    return Clip([fn(frame) for frame in clip.frames], clip.fps)


def _pil(frame: Frame) -> Image.Image:
    return Image.fromarray(frame)


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


@dataclass
class Edit:
    """The result of one transformation: the new clip, plus how its time relates to the input's."""

    clip: Clip
    name: str
    speed: float = 1.0
    """Input seconds per output second (2.0 = twice as fast)."""
    offset: float = 0.0
    """Output second at which the input's first frame appears (insertion into other content)."""
    params: dict[str, float | str] = field(default_factory=dict)


# --- spatial -----------------------------------------------------------------------------------


def crop(clip: Clip, rng: np.random.Generator) -> Edit:
    keep = float(rng.uniform(0.6, 0.85))
    width, height = clip.size
    cw, ch = _even(width * keep), _even(height * keep)
    x0 = int(rng.integers(0, width - cw + 1))
    y0 = int(rng.integers(0, height - ch + 1))
    return Edit(_map_frames(clip, lambda f: f[y0 : y0 + ch, x0 : x0 + cw]), "crop", params={"keep": keep})


def pad(clip: Clip, rng: np.random.Generator) -> Edit:
    """Letterbox/pillarbox bars (black or coloured)."""
    frac = float(rng.uniform(0.1, 0.25))
    colour = tuple(int(c) for c in rng.integers(0, 60, size=3))
    vertical = bool(rng.integers(0, 2))

    def fn(frame: Frame) -> Frame:
        h, w = frame.shape[:2]
        if vertical:
            bar = _even(h * frac / 2)
            out = np.empty((h + 2 * bar, w, 3), np.uint8)
            out[:] = colour
            out[bar : bar + h] = frame
        else:
            bar = _even(w * frac / 2)
            out = np.empty((h, w + 2 * bar, 3), np.uint8)
            out[:] = colour
            out[:, bar : bar + w] = frame
        return out

    return Edit(_map_frames(clip, fn), "pad", params={"fraction": frac})


def flip(clip: Clip, rng: np.random.Generator) -> Edit:
    return Edit(_map_frames(clip, lambda f: np.ascontiguousarray(f[:, ::-1])), "flip")


def rotate(clip: Clip, rng: np.random.Generator) -> Edit:
    angle = float(rng.choice([-1, 1]) * rng.uniform(5, 20))
    return Edit(_map_frames(clip, lambda f: np.asarray(_pil(f).rotate(angle, resample=Image.BILINEAR))), "rotate", params={"angle": angle})


def resize(clip: Clip, rng: np.random.Generator) -> Edit:
    scale = float(rng.uniform(0.35, 0.7))
    width, height = clip.size
    size = (_even(width * scale), _even(height * scale))
    return Edit(_map_frames(clip, lambda f: np.asarray(_pil(f).resize(size, Image.BILINEAR))), "resize", params={"scale": scale})


def grayscale(clip: Clip, rng: np.random.Generator) -> Edit:
    def fn(frame: Frame) -> Frame:
        grey = (frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)

    return Edit(_map_frames(clip, fn), "grayscale")


def sepia(clip: Clip, rng: np.random.Generator) -> Edit:
    matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return Edit(_map_frames(clip, lambda f: (f.astype(np.float32) @ matrix.T).clip(0, 255).astype(np.uint8)), "sepia")


def brightness_contrast(clip: Clip, rng: np.random.Generator) -> Edit:
    b, c = float(rng.uniform(0.6, 1.5)), float(rng.uniform(0.6, 1.5))

    def fn(frame: Frame) -> Frame:
        return np.asarray(ImageEnhance.Contrast(ImageEnhance.Brightness(_pil(frame)).enhance(b)).enhance(c))

    return Edit(_map_frames(clip, fn), "brightness_contrast", params={"brightness": b, "contrast": c})


def blur(clip: Clip, rng: np.random.Generator) -> Edit:
    radius = float(rng.uniform(1.5, 4.0))
    return Edit(_map_frames(clip, lambda f: np.asarray(_pil(f).filter(ImageFilter.GaussianBlur(radius)))), "blur", params={"radius": radius})


def noise(clip: Clip, rng: np.random.Generator) -> Edit:
    sigma = float(rng.uniform(8, 20))
    seed = int(rng.integers(0, 2**31))
    local = np.random.default_rng(seed)

    def fn(frame: Frame) -> Frame:
        return (frame.astype(np.float32) + local.normal(0, sigma, frame.shape)).clip(0, 255).astype(np.uint8)

    return Edit(_map_frames(clip, fn), "noise", params={"sigma": sigma})


# --- AugLy (optional) ---------------------------------------------------------------------------

OWN_IMPL = "dupwatch"
_AUGLY_ENABLED = True
_AUGLY_LATIN_FONTS = ("Impact.ttf", "Montserrat-Bold.ttf", "IBMPlexSans-Bold.ttf", "Lobster_1.3.ttf", "NotoSans-Regular.ttf", "LeagueSpartan-Bold.ttf")


def use_augly(enabled: bool) -> None:
    """Switch the AugLy implementations on (when importable) or off (our own code only)."""
    global _AUGLY_ENABLED
    _AUGLY_ENABLED = bool(enabled)


def augly_version() -> str | None:
    """AugLy's version when ``augly.image`` imports (it needs ``python-magic`` and libmagic), else ``None``."""
    try:
        from importlib.metadata import version

        import augly.image  # noqa: F401
    except Exception:  # ImportError, or OSError/ImportError from python-magic without libmagic
        return None
    try:
        return version("augly")
    except Exception:
        return "unknown"


def _augly() -> tuple[object, str] | None:
    if not _AUGLY_ENABLED:
        return None
    found = augly_version()
    if found is None:
        return None
    import augly.image as imaugs

    return imaugs, f"augly-{found}"


def _augly_fonts() -> list[tuple[str, list[str]]]:
    """AugLy's bundled fonts that can draw our (Latin) overlay words, with their character lists."""
    import pickle

    from augly import utils

    fonts = []
    for name in _AUGLY_LATIN_FONTS:
        ttf = Path(utils.FONTS_DIR) / name
        pkl = ttf.with_suffix(".pkl")
        if ttf.is_file() and pkl.is_file():
            with pkl.open("rb") as fh:
                chars = [chr(int(c)) for c in pickle.load(fh)]  # AugLy's own asset: the font's code points
            fonts.append((str(ttf), chars))
    return fonts


def _augly_emojis() -> list[str]:
    from augly import utils

    return sorted(str(p) for p in Path(utils.EMOJI_DIR).rglob("*.png"))


_WORDS = ["BREAKING", "viral", "LIVE", "must watch", "repost", "wow", "2026", "exclusive", "follow me"]


def text_overlay(clip: Clip, rng: np.random.Generator) -> Edit:
    """A caption burnt in: AugLy's ``overlay_text`` with one of its fonts when available, else PIL's font."""
    text = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4))).tolist())
    width, height = clip.size
    rel = float(rng.uniform(0.06, 0.12))
    size = max(10, int(height * rel))
    x = int(rng.uniform(0.02, 0.4) * width)
    y = int(rng.uniform(0.02, 0.8) * height)
    colour = tuple(int(c) for c in rng.integers(150, 256, size=3))
    # no extra draws on the AugLy path (the font follows from the text): the generator advances the
    # same with and without AugLy, so only this edit's pixels differ between the two
    augly = _augly()
    fonts = _augly_fonts() if augly is not None else []
    if augly is not None and fonts:
        import zlib

        imaugs, impl = augly
        font_file, chars = fonts[zlib.crc32(text.encode()) % len(fonts)]
        index = {c: i for i, c in enumerate(chars)}
        # AugLy's character lists have no space: one word per line
        indices = [[index[c] for c in word if c in index] for word in text.split()]

        def fn(frame: Frame) -> Frame:
            out = imaugs.overlay_text(_pil(frame), text=indices, font_file=font_file, font_size=rel * height / min(width, height),  # type: ignore[attr-defined]
                                      color=colour, x_pos=x / width, y_pos=y / height)
            return np.asarray(out.convert("RGB"))

        return Edit(_map_frames(clip, fn), "text", params={"text": text, "impl": impl, "font": Path(font_file).name})

    font = ImageFont.load_default(size=size)

    def own(frame: Frame) -> Frame:
        image = _pil(frame).copy()
        ImageDraw.Draw(image).text((x, y), text, fill=colour, font=font, stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
        return np.asarray(image)

    return Edit(_map_frames(clip, own), "text", params={"text": text, "impl": OWN_IMPL})


def _own_emoji(diameter: int, hue: tuple[int, int, int]) -> Image.Image:
    """A drawn smiley (RGBA): the fallback when AugLy's Twemoji images are not installed."""
    image = Image.new("RGBA", (diameter, diameter), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    d = diameter
    draw.ellipse((0, 0, d - 1, d - 1), fill=hue + (255,), outline=(60, 40, 0, 255), width=max(1, d // 24))
    eye = max(2, d // 9)
    for cx in (d * 0.33, d * 0.67):
        draw.ellipse((cx - eye / 2, d * 0.32, cx + eye / 2, d * 0.32 + eye * 1.4), fill=(40, 25, 0, 255))
    draw.arc((d * 0.22, d * 0.3, d * 0.78, d * 0.8), 20, 160, fill=(40, 25, 0, 255), width=max(2, d // 14))
    return image


def emoji_overlay(clip: Clip, rng: np.random.Generator) -> Edit:
    """An emoji sticker: AugLy's ``overlay_emoji`` with one of its Twemoji images when available."""
    width, height = clip.size
    rel = float(rng.uniform(0.15, 0.35))
    x_pos, y_pos = float(rng.uniform(0.0, 0.75)), float(rng.uniform(0.0, 0.7))
    opacity = float(rng.uniform(0.7, 1.0))
    pick = int(rng.integers(0, 2**31))  # the only other draw, on both paths
    augly = _augly()
    emojis = _augly_emojis() if augly is not None else []
    if augly is not None and emojis:
        imaugs, impl = augly
        path = emojis[pick % len(emojis)]

        def fn(frame: Frame) -> Frame:
            out = imaugs.overlay_emoji(_pil(frame), emoji_path=path, opacity=opacity, emoji_size=rel, x_pos=x_pos, y_pos=y_pos)  # type: ignore[attr-defined]
            return np.asarray(out.convert("RGB"))

        return Edit(_map_frames(clip, fn), "emoji", params={"impl": impl, "emoji": Path(path).name, "size": rel})

    local = np.random.default_rng(pick)
    hue = (int(local.integers(230, 256)), int(local.integers(170, 220)), int(local.integers(0, 60)))
    sticker = _own_emoji(max(8, int(height * rel)), hue)
    alpha = sticker.getchannel("A").point(lambda a: int(a * opacity))
    sticker.putalpha(alpha)
    pos = (int(x_pos * width), int(y_pos * height))

    def own(frame: Frame) -> Frame:
        image = _pil(frame).copy()
        image.paste(sticker, pos, sticker)
        return np.asarray(image)

    return Edit(_map_frames(clip, own), "emoji", params={"impl": OWN_IMPL, "size": rel})


def _logo_image() -> np.ndarray:
    from skimage import data

    logo = data.logo()  # the scikit-image logo, RGBA
    return np.asarray(logo)


def logo_overlay(clip: Clip, rng: np.random.Generator) -> Edit:
    logo = Image.fromarray(_logo_image())
    width, height = clip.size
    scale = float(rng.uniform(0.12, 0.25))
    lw = _even(width * scale)
    lh = _even(lw * logo.height / logo.width)
    logo = logo.resize((lw, lh), Image.BILINEAR)
    corner = int(rng.integers(0, 4))
    x = 8 if corner in (0, 2) else width - lw - 8
    y = 8 if corner in (0, 1) else height - lh - 8

    def fn(frame: Frame) -> Frame:
        image = _pil(frame).copy()
        image.paste(logo, (max(0, x), max(0, y)), logo)
        return np.asarray(image)

    return Edit(_map_frames(clip, fn), "logo", params={"scale": scale})


# --- temporal ----------------------------------------------------------------------------------


def speed(clip: Clip, rng: np.random.Generator) -> Edit:
    """Play faster or slower by dropping or repeating frames at the same frame rate."""
    factor = float(rng.choice([0.5, 0.75, 1.5, 2.0]))
    count = max(1, int(round(len(clip.frames) / factor)))
    index = np.minimum((np.arange(count) * factor).round().astype(int), len(clip.frames) - 1)
    return Edit(Clip([clip.frames[i] for i in index], clip.fps), "speed", speed=factor, params={"factor": factor})


def _fit(frame: Frame, size: tuple[int, int]) -> Frame:
    return np.asarray(_pil(frame).resize(size, Image.BILINEAR))


def insert_into(clip: Clip, other: Clip, rng: np.random.Generator) -> Edit:
    """Surround the copied segment with other content (before and after)."""
    size = clip.size
    before = float(rng.uniform(1.0, min(4.0, max(1.0, other.duration / 2))))
    after = float(rng.uniform(1.0, min(4.0, max(1.0, other.duration / 2))))
    n_before = int(round(before * clip.fps))
    n_after = int(round(after * clip.fps))
    filler = [_fit(other.frames[int(i * other.fps / clip.fps) % len(other.frames)], size) for i in range(n_before + n_after)]
    frames = filler[:n_before] + clip.frames + filler[n_before:]
    return Edit(Clip(frames, clip.fps), "insert", offset=n_before / clip.fps, params={"before": before, "after": after})


def picture_in_picture(clip: Clip, other: Clip, rng: np.random.Generator) -> Edit:
    """The copy shown small inside another video (the background is the other content), at its own
    aspect: ``scale`` of the host's width, or 0.9 of its height for a copy too tall for that."""
    width, height = other.size
    scale = float(rng.uniform(0.45, 0.65))
    aspect = clip.size[1] / clip.size[0]
    pw = min(width * scale, height * 0.9 / aspect)
    pw, ph = _even(pw), _even(pw * aspect)
    x = int(rng.integers(0, width - pw + 1))
    y = int(rng.integers(0, height - ph + 1))
    frames = []
    for i, frame in enumerate(clip.frames):
        background = other.frames[int(i * other.fps / clip.fps) % len(other.frames)].copy()
        background[y : y + ph, x : x + pw] = _fit(frame, (pw, ph))
        frames.append(background)
    return Edit(Clip(frames, clip.fps), "pip", params={"scale": scale, "x": x, "y": y, "width": pw, "height": ph})


def viewpoint_change(clip: Clip, rng: np.random.Generator) -> Edit:
    """A corner crop of 45–60 % of each side, sheared and scaled back to the frame size.

    It looks like another viewpoint, but it shows the same camera's pixels at the same moment, so
    it is a copy (FIVR's *duplicate scene*: same camera, any transformation), reported as the kind
    ``corner_crop``: a 9:16 strip keeps no more of the frame and is a copy too. Another camera
    (a *complementary scene*) cannot be made from one camera's frames."""
    width, height = clip.size
    keep = float(rng.uniform(0.45, 0.6))
    cw, ch = int(width * keep), int(height * keep)
    # the crop centre is pushed away from the frame centre, so little of the original framing remains
    x0 = int(rng.choice([0, width - cw]))
    y0 = int(rng.integers(0, height - ch + 1))
    shear = float(rng.uniform(0.08, 0.18)) * float(rng.choice([-1, 1]))
    coeffs = (1.0, shear, -shear * ch / 2, 0.0, 1.0, 0.0)

    def fn(frame: Frame) -> Frame:
        region = _pil(frame[y0 : y0 + ch, x0 : x0 + cw]).transform((cw, ch), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        return np.asarray(region.resize((_even(width), _even(height)), Image.BILINEAR))

    return Edit(_map_frames(clip, fn), "viewpoint", params={"keep": keep, "shear": shear})


# --- what people upload: resolution changes with bars, vertical reframes, heavy combinations ---------


def _canvas_fit(frame: Frame, size: tuple[int, int]) -> tuple[Frame, tuple[int, int, int, int]]:
    """``frame`` scaled to fit inside ``size`` keeping its aspect; (scaled frame, (x, y, w, h) where it goes centred)."""
    w, h = size
    fh, fw = frame.shape[:2]
    scale = min(w / fw, h / fh)
    cw, ch = _even(fw * scale), _even(fh * scale)
    return np.asarray(_pil(frame).resize((cw, ch), Image.BICUBIC)), ((w - cw) // 2, (h - ch) // 2, cw, ch)


def letterbox_resize(clip: Clip, rng: np.random.Generator) -> Edit:
    """Re-published at another resolution and aspect with bars: a wide clip as SD 4:3 (letterbox)
    or a narrower one in HD 16:9 (pillarbox), or an HD clip in a 2.39:1 cinema frame; black or grey bars."""
    width, height = clip.size
    aspect = width / height
    wide = [(640, 480), (720, 576), (480, 480)]  # SD 4:3, PAL, square: bars above and below
    narrow = [(1280, 720), (854, 480), (1920, 1080)]  # HD 16:9: bars left and right
    pool = [c for c in (wide if aspect >= 1.5 else narrow) if abs(c[0] / c[1] - aspect) > 0.15] or [(640, 480)]
    size = pool[int(rng.integers(len(pool)))]
    colour = int(rng.choice([0, 0, 16, 40]))

    def fn(frame: Frame) -> Frame:
        content, (x, y, cw, ch) = _canvas_fit(frame, size)
        out = np.full((size[1], size[0], 3), colour, np.uint8)
        out[y: y + ch, x: x + cw] = content
        return out

    kind = "letterbox" if size[0] / size[1] < aspect else "pillarbox"
    return Edit(_map_frames(clip, fn), kind, params={"width": size[0], "height": size[1], "bar_grey": colour})


def vertical_reframe(clip: Clip, rng: np.random.Generator) -> Edit:
    """A 9:16 vertical version of landscape footage: a centre crop, an off-centre crop (following
    the action), or the whole picture over a blurred, zoomed copy of itself (blurred fill)."""
    width, height = clip.size
    mode = str(rng.choice(["centre", "offcentre", "blurfill"]))
    out_w, out_h = (360, 640) if rng.random() < 0.5 else (540, 960)
    cw = min(width, _even(height * 9 / 16))
    x0 = (width - cw) // 2 if mode == "centre" else int(rng.integers(0, max(1, width - cw + 1)))

    def fn(frame: Frame) -> Frame:
        if mode == "blurfill":
            fill = _pil(frame).resize((out_w, out_h), Image.BILINEAR).filter(ImageFilter.GaussianBlur(16))
            out = np.asarray(fill).copy()
            content, (x, y, w, h) = _canvas_fit(frame, (out_w, out_h))
            out[y: y + h, x: x + w] = content
            return out
        return np.asarray(_pil(frame[:, x0: x0 + cw]).resize((out_w, out_h), Image.BICUBIC))

    return Edit(_map_frames(clip, fn), f"vertical_{mode}", params={"mode": mode, "x0": x0, "width": out_w})


def heavy_combination(clip: Clip, rng: np.random.Generator) -> Edit:
    """Three or four edits stacked (crop, colour, text, logo, blur, bars...), as re-uploads of screen
    content and memes are: each one mild, together heavy."""
    pool = ["crop", "brightness_contrast", "text", "logo", "blur", "grayscale", "sepia", "pad", "noise", "resize"]
    names = [str(n) for n in rng.choice(pool, size=int(rng.integers(3, 5)), replace=False)]
    if "grayscale" in names and "sepia" in names:
        names.remove("sepia")
    part = clip
    for name in names:
        part = SPATIAL[name](part, rng).clip
    return Edit(part, "heavy", params={"edits": "+".join(names)})


def grey_or_sepia(clip: Clip, rng: np.random.Generator) -> Edit:
    return grayscale(clip, rng) if rng.random() < 0.5 else sepia(clip, rng)


UPLOAD_EDITS: dict[str, Callable[[Clip, np.random.Generator], Edit]] = {
    "letterbox": letterbox_resize,
    "vertical": vertical_reframe,
    "heavy": heavy_combination,
    "grey_sepia": grey_or_sepia,
    "logo": lambda clip, rng: logo_overlay(clip, rng),
}
"""Edits of the "what people upload" benchmarks (``BenchmarkSpec.upload_edits``); each copy gets one of
these, then maybe a temporal edit (speed, embedded excerpt, picture in picture)."""

KINDS: tuple[str, ...] = ("letterbox", "vertical_reframe", "picture_in_picture", "embedded_excerpt", "heavy_combination",
                          "speed_change", "grey_sepia", "logo", "excerpt", "spatial", "corner_crop", "another_moment",
                          "another_camera")
"""Edit kinds named in the truth CSV's ``kind`` column (:func:`kind_of`)."""


def kind_of(edits: tuple[str, ...] | list[str]) -> str:
    """The kind a pair is reported under, from the query's edit names (most telling edit wins)."""
    e = list(edits)
    if "viewpoint" in e:
        return "corner_crop"
    if "pip" in e:
        return "picture_in_picture"
    if "insert" in e:
        return "embedded_excerpt"
    if any(x.startswith("vertical_") for x in e):
        return "vertical_reframe"
    if any(x in ("letterbox", "pillarbox") for x in e):
        return "letterbox"
    if "heavy" in e:
        return "heavy_combination"
    if any(x.startswith("speed") for x in e):
        return "speed_change"
    if any(x in ("grayscale", "sepia") for x in e):
        return "grey_sepia"
    if "logo" in e:
        return "logo"
    if e == ["cut"] or not e:
        return "excerpt"
    return "spatial"


def pair_kind(edits: tuple[str, ...] | list[str], relative_speed: float = 1.0) -> str:
    """The ``kind`` cell of a copy pair: :func:`kind_of` the query's edits, plus ``speed_change`` when
    the two videos play the source at different speeds (a speed change hides behind any spatial edit
    in :func:`kind_of`'s order, yet it is a kind of its own to report)."""
    kind = kind_of(edits)
    if abs(relative_speed - 1.0) > 1e-6 and kind != "speed_change":
        kind += KIND_SEPARATOR + "speed_change"
    return kind


SPATIAL: dict[str, Callable[[Clip, np.random.Generator], Edit]] = {
    "crop": crop,
    "pad": pad,
    "flip": flip,
    "rotate": rotate,
    "resize": resize,
    "grayscale": grayscale,
    "sepia": sepia,
    "brightness_contrast": brightness_contrast,
    "blur": blur,
    "noise": noise,
    "text": text_overlay,
    "logo": logo_overlay,
}
"""Spatial transformations by name (the re-encode happens for every query in the builder)."""

EXTRA_SPATIAL: dict[str, Callable[[Clip, np.random.Generator], Edit]] = {
    "emoji": emoji_overlay,
}
"""Spatial transformations a benchmark draws from only when asked (``BenchmarkSpec.extra_edits``,
``dupwatch bench build --extra-edits emoji``): adding them to :data:`SPATIAL` would change every
existing seed's benchmark."""


def implementation(edit: Edit) -> str:
    """Which code produced an edit (``augly-<version>`` or ``dupwatch``)."""
    return str(edit.params.get("impl", OWN_IMPL))
