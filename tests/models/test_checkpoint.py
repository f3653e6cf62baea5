"""Nothing SentiFlow reads is unpickled: a crafted pickle posing as a checkpoint or cache entry is refused
with a clear error and its code never runs; two trainings never share a run directory."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from models.checkpoint import CheckpointError
from models.run_dir import load_run, run_dir_lock
from pipeline.cache import CacheError, FeatureCache


class _Exploit:
    """Unpickling this runs a command: what a hostile "checkpoint" from the web would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_pickle(path: Path, marker: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": _Exploit(marker)}, fh)
    # the same bytes torch.save would write for a legacy checkpoint are refused too
    assert path.stat().st_size > 0


def test_pickle_renamed_to_checkpoint_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"
    (run / "run.json").write_text('{"format": 1, "model": "unimodal", "model_config": {}, '
                                  '"spec": {"dims": {"text": 4}, "seq_lens": {"text": 3}}}', encoding="utf-8")
    _crafted_pickle(run / "model.safetensors", marker)
    with pytest.raises(CheckpointError, match="not a valid safetensors file.*never unpickles"):
        load_run(run)
    assert not marker.exists()


def test_pickle_in_cache_entry_is_refused_and_flagged(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    entry = cache.put("a" * 40, {"x": torch.zeros(3)}, {"extractor": "logmel"})
    marker = tmp_path / "pwned"
    _crafted_pickle(entry.path / "tensors.safetensors", marker)
    with pytest.raises(CacheError, match="is corrupt: tensors file"):
        cache.get("a" * 40).load()
    assert cache.verify().corrupt[0][0] == "a" * 40
    assert not marker.exists()


def test_two_trainings_never_share_a_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with run_dir_lock(run):
        with pytest.raises(CheckpointError, match="being written by training process"):
            with run_dir_lock(run):
                pass
    # a lock left by a training that died is taken over
    (run / ".training.lock").write_text("999999999")
    with run_dir_lock(run):
        assert (run / ".training.lock").read_text() == str(os.getpid())
    assert not (run / ".training.lock").exists()
