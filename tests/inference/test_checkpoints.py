"""Safe checkpoint loader: every published layout loads; other pickled globals are refused unexecuted."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from inference.parity import default_parity_dir
from inference.checkpoints import CheckpointError, UnsafeCheckpointError, load_checkpoint, load_into

PARITY = default_parity_dir()

CALLS: list[str] = []


class Payload:
    """A custom class: unpickling it must not be allowed (and must not run __reduce__)."""

    def __reduce__(self):  # noqa: D105
        return (CALLS.append, ("executed",))


class EvilCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name,kind,n", [
    ("dns_cg_student.pth", "training", 22),
    ("dns_fg_att_student.pth", "training", 11),
    ("dns_fg_bin_student.pth", "training", 9),
    ("dns_selector_cg-fg_att.pth", "training", 25),
    ("s2vs_similarity_network.pth", "training", 11),
    ("pca_small.pth", "pca", 3),
])
def test_fixture_layouts(name: str, kind: str, n: int) -> None:
    ck = load_checkpoint(PARITY / name)
    assert ck.kind == kind
    assert len(ck.state_dict) == n
    if kind == "training":
        assert "experiment_path" in ck.args
        assert "global_step" in ck.extra


def test_plain_weights_only_load_refuses_namespace() -> None:
    with pytest.raises(pickle.UnpicklingError):
        torch.load(PARITY / "dns_fg_att_student.pth", weights_only=True)


def test_shapes_read_from_state_dict() -> None:
    ck = load_checkpoint(PARITY / "dns_cg_student.pth")
    assert ck.shape("netvlad.centroids") == (8, 512)
    with pytest.raises(CheckpointError, match="no key"):
        ck.shape("netvlad.missing")


def test_bare_state_dict_and_itq(tmp_path: Path) -> None:
    torch.save({"attention.context_vector.weight": torch.zeros(1, 8), "video_comperator.conv1.bias": torch.zeros(32)},
               tmp_path / "visil.pth")
    assert load_checkpoint(tmp_path / "visil.pth").kind == "state_dict"
    torch.save({"proj": torch.eye(4)}, tmp_path / "itq.pth")
    assert load_checkpoint(tmp_path / "itq.pth").kind == "itq"


def test_os_system_payload_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": EvilCommand(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="allow-list"):
        load_checkpoint(path)
    assert not marker.exists()


def test_custom_class_refused_and_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert CALLS == []


def test_namespace_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(a=1), "global_step": 3}, path)
    ck = load_checkpoint(path)
    assert ck.args == {"a": 1} and ck.extra["global_step"] == 3


def test_unknown_layout_and_garbage(tmp_path: Path) -> None:
    torch.save({"foo": 1}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        load_checkpoint(tmp_path / "odd.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "absent.pth")


def test_load_into_lists_every_problem() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = dict(model.state_dict())
    del sd["1.bias"]
    sd["0.weight"] = torch.zeros(3, 5)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_into(model, sd)
    text = str(info.value)
    assert "missing keys (1): 1.bias" in text
    assert "unexpected keys (1): extra.weight" in text
    assert "0.weight: checkpoint (3, 5) vs model (3, 4)" in text
