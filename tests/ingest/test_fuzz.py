"""Property tests with a bounded budget: parsers and guards fail only with the project's error classes."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.sources import FIXTURE_VIDEOS
from dupwatch.config import DecodeConfig, SourceConfig
from dupwatch.errors import PermanentError, TransientError
from dupwatch.records import DecodedVideo
from ingest.decode import decode_video
from ingest.events import UploadEvent, parse_upload_event
from ingest.netguard import address_problem, resolve_local_path, vet_url
from ingest.sources import VideoSource

REAL_VIDEO = FIXTURE_VIDEOS / "s2vs_example_video1.mp4"
# The first 300 KB (moov is at the start of this file) keeps each mutated decode fast.
HEAD = REAL_VIDEO.read_bytes()[:300_000]
FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.sampled_from([1, 2, "1", None, 1.0, True]),
        "event_id": st.text(max_size=140),
        "video_id": st.text(max_size=140) | st.sampled_from(["vid-1", "../x", ".hidden", "a" * 128]),
        "tenant": st.text(max_size=70),
        "uri": st.text(max_size=100),
        "uploaded_at": st.sampled_from(["2026-11-22T04:30:00Z", "2026-11-22", "x", 0]) | st.text(max_size=30),
        "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=4),
        "extra": json_values,
    },
)


@FAST
@given(st.binary(max_size=2048))
def test_parser_on_arbitrary_bytes(raw: bytes) -> None:
    try:
        event = parse_upload_event(raw, max_bytes=1024)
    except PermanentError as exc:
        assert exc.reason in {"invalid_json", "invalid_event", "event_too_large", "unsupported_schema_version"}
    else:
        assert isinstance(event, UploadEvent)


@FAST
@given(st.one_of(json_values, event_like))
def test_parser_on_arbitrary_json(value: object) -> None:
    raw = json.dumps(value).encode()
    try:
        event = parse_upload_event(raw, max_bytes=65536)
    except PermanentError:
        return
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in event.video_id + event.event_id)
    assert not event.video_id.startswith(".")


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
    return ip.is_global and not ip.is_multicast


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
special = st.sampled_from(
    ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.0.1", "169.254.169.254", "::1", "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1", "0.0.0.0", "::"]
).map(ipaddress.ip_address)


@FAST
@given(st.one_of(ipv4, ipv6, special))
def test_no_private_address_passes(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if address_problem(ip, allow_private=False) is None:
        assert _is_public(ip), ip
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    try:
        target = vet_url(f"http://{host}/v.mp4", allow_hosts=[str(ip)], allow_private=False)
    except PermanentError:
        return
    assert _is_public(ipaddress.ip_address(target.ip))


url_text = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "file", "gopher", "data", ""]),
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["127.0.0.1", "0x7f.1", "2130706433", "[::1]", "localhost", "a@127.0.0.1", "127.0.0.1:80@x", "[::ffff:127.0.0.1]"]),
    ),
    st.text(max_size=30),
)


@FAST
@given(url_text)
def test_vet_url_never_returns_a_private_target(url: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # every name is hostile

    try:
        target = vet_url(url, allow_hosts=["*.x", "localhost", "127.0.0.1"], allow_private=False, resolver=resolver)
    except PermanentError:
        return
    raise AssertionError(f"{url!r} passed as {target}")


_ROOT_DIR = tempfile.TemporaryDirectory(prefix="dupwatch-fuzz-root-")  # removed at interpreter exit
ROOT = Path(_ROOT_DIR.name)
(ROOT / "ok").mkdir(exist_ok=True)
(ROOT / "ok" / "v.mp4").write_bytes(b"v")
segments = st.lists(st.sampled_from(["..", ".", "ok", "v.mp4", "", "%2e%2e", "etc", "passwd", "\x00", "~"]), max_size=6)


@FAST
@given(segments, st.sampled_from(["", "file://", "file://localhost"]), st.booleans())
def test_local_paths_never_escape_the_root(parts: list[str], prefix: str, absolute: bool) -> None:
    raw = (str(ROOT) + "/" if absolute else "") + "/".join(parts)
    uri = prefix + raw if prefix else raw
    try:
        path = resolve_local_path(uri, [ROOT])
    except PermanentError as exc:
        assert exc.reason in {"path_not_allowed", "source_not_found", "url_scheme_not_allowed"}
        return
    assert path.is_relative_to(ROOT.resolve()) and path.is_file()


@FAST
@given(st.text(max_size=60))
def test_source_open_raises_only_classified_errors(uri: str) -> None:
    source = VideoSource(SourceConfig(local_roots=[ROOT], http_allow_hosts=["*.x"]), resolver=lambda h, p: ["10.0.0.1"])
    try:
        with source.open(uri) as local:
            assert local.path.is_relative_to(ROOT.resolve())
    except (PermanentError, TransientError):
        pass


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(HEAD) - 1), st.integers(0, 255)), min_size=1, max_size=40),
    st.integers(1_000, len(HEAD)),
)
def test_decoder_on_mutated_real_video(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(HEAD[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(bytes(data))
        handle.flush()
        try:
            video = decode_video(handle.name, DecodeConfig(timeout_s=20), "fuzz")
        except (PermanentError, TransientError):
            return
    assert isinstance(video, DecodedVideo) and video.num_frames >= 1
    assert video.frames.shape[1:] == (224, 224, 3) and np.all(np.isfinite(video.timestamps))


# -- the decoder on mutated real files (fixed seed, generated here) --------------------------------
FUZZ_SEED = 19
FUZZ_CASES = int(os.environ.get("DUPWATCH_FUZZ_CASES", "500"))
"""Raise (e.g. ``DUPWATCH_FUZZ_CASES=20000``) for a longer run; the default keeps CI in seconds."""
FUZZ_CONFIG = DecodeConfig(short_side=32, crop=32, max_frames=8, timeout_s=5.0, chunk_frames=24)
FUZZ_GUARD_S = FUZZ_CONFIG.timeout_s + 10.0


def _fuzz_seeds(directory: Path) -> list[tuple[str, bytes]]:
    """Small real files in the containers and codecs the worker sees most."""
    from tests.ingest.corpus import encode

    made = [
        encode(directory / "seed.mp4", n_frames=20, options={"preset": "ultrafast"}),
        encode(directory / "seed.mkv", n_frames=20, codec="mpeg4"),
        encode(directory / "seed.ts", n_frames=20, options={"preset": "ultrafast"}),
        encode(directory / "seed.avi", n_frames=20, codec="mpeg4"),
        encode(directory / "seed_faststart.mp4", n_frames=20, container_options={"movflags": "faststart"}),
    ]
    return [(p.suffix, p.read_bytes()) for p in made]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(out)) if out else 0
        if kind == 0:  # flip bytes
            for _ in range(rng.randint(1, 32)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 1:  # truncate
            del out[rng.randint(1, len(out)) :]
        elif kind == 2:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.randint(1, 512))
        elif kind == 3:  # duplicate a slice
            end = min(len(out), pos + rng.randint(1, 4096))
            out[pos:pos] = out[pos:end]
        elif kind == 4:  # overwrite a 32-bit field with an extreme value (box sizes, counts, timestamps)
            out[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x01"])
        else:  # delete a slice
            del out[pos : pos + rng.randint(1, 2048)]
        if not out:
            out = bytearray(b"\0")
    return bytes(out)


def test_decoder_on_mutated_generated_files(tmp_path: Path) -> None:
    """≥ 500 mutated real files: every one decodes or is refused with a reason, none hangs,
    nothing else is raised (a crash would take the test process down)."""
    seeds = _fuzz_seeds(tmp_path)
    rng = random.Random(FUZZ_SEED)
    outcomes: dict[str, int] = {}
    untyped: list[str] = []
    slow: list[str] = []
    for case in range(FUZZ_CASES):
        suffix, data = seeds[case % len(seeds)]
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(_mutate(data, rng))
        started = time.monotonic()
        try:
            video = decode_video(path, FUZZ_CONFIG, "fuzz")
            assert video.num_frames >= 1 and video.frames.shape[1:] == (32, 32, 3) and np.all(np.isfinite(video.timestamps))
            key = "indexed"
        except (PermanentError, TransientError) as exc:
            key = exc.reason
        except Exception as exc:  # noqa: BLE001 - what the fuzz looks for
            untyped.append(f"case {case} ({suffix}): {type(exc).__name__}: {exc}")
            key = "untyped"
        if time.monotonic() - started > FUZZ_GUARD_S:
            slow.append(f"case {case} ({suffix}): {time.monotonic() - started:.1f}s")
        outcomes[key] = outcomes.get(key, 0) + 1
    assert not untyped, untyped[:10]
    assert not slow, slow[:10]
    assert sum(outcomes.values()) == FUZZ_CASES >= 500
    assert outcomes.get("indexed", 0) > 0 and len(outcomes) > 2, outcomes  # the mutations reach both sides
