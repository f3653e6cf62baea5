"""Other tools' feature files: the restricted unpickler, MMSA's layout, and the SDK's computational sequences."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest

from pipeline.interop import InteropError
from pipeline.interop.csd import Segment, id_to_sdk_key, open_csd, sdk_key_to_id, write_csd
from pipeline.interop.mmsa import iter_samples, load_mmsa
from pipeline.interop.restricted_pickle import UnsafePickleError, load_restricted
from tests.helpers.interop_files import mmsa_splits, word_aligned_entries, write_mmsa_pickle, write_sdk_csd


class _RunsACommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_arrays_dicts_lists_strings_and_numbers(tmp_path, protocol):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array(["x$_$1", "y$_$2"], dtype=object),
           "n": [1, 2.5, np.int64(3), np.float32(0.5)], "s": "text", "t": (1, "two"), "u": np.array(["é", "ab"])}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    back = load_restricted(path)
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["a"].dtype == np.float32 and list(back["ids"]) == ["x$_$1", "y$_$2"]
    assert back["n"] == [1, 2.5, 3, 0.5] and back["s"] == "text" and back["t"] == (1, "two")
    assert list(back["u"]) == ["é", "ab"]


def test_a_pickle_carrying_os_system_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"id": ["a"], "audio": _RunsACommand(str(marker))}}))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refused to load (posix|os)\.system: only numpy arrays"):
        load_restricted(path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="refused to load posix.system"):
        load_mmsa(path)
    assert not marker.exists()


def test_other_globals_and_broken_files_are_refused_by_name(tmp_path):
    from collections import OrderedDict

    path = tmp_path / "od.pkl"
    path.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(UnsafePickleError, match="refused to load collections.OrderedDict"):
        load_restricted(path)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(InteropError, match="junk.pkl: not a readable pickle"):
        load_restricted(junk)
    with pytest.raises(InteropError, match="cannot read"):
        load_restricted(tmp_path / "absent.pkl")


def test_mmsa_layout_is_checked_and_samples_keep_their_valid_rows(tmp_path):
    splits = mmsa_splits()
    samples = list(iter_samples(load_mmsa(write_mmsa_pickle(tmp_path / "f.pkl", splits))))
    assert [s.id for s in samples] == ["vidA_1", "vidA_2", "vid_B2_1", "vidC_4", "vidC_5"]
    first = samples[0]
    assert (first.video_id, first.clip_id, first.split) == ("vidA", "1", "train")
    assert first.features["audio"].shape == (7, 5) and first.features["visual"].shape == (5, 4)
    assert first.features["text"].shape == (3, 6)            # the text_bert mask's length
    np.testing.assert_array_equal(first.features["audio"], splits["train"]["audio"][0, :7])
    assert first.label == pytest.approx(float(splits["train"]["regression_labels"][0]))

    bad = mmsa_splits()
    bad["train"]["audio_lengths"][1] = 40
    s = [x for x in iter_samples(load_mmsa(write_mmsa_pickle(tmp_path / "b.pkl", bad))) if x.id == "vidA_2"][0]
    assert s.problems == {"audio": "audio length 40 is outside 0..9"} and "visual" in s.features
    shape_error = r"train.audio must be a numeric array \(N=1, T, D\), got \(2, 3\)"
    for broken, message in (([1, 2], "expected a dict with train/valid/test splits, found list"),
                            ({"train": {"audio": np.zeros((2, 3, 4))}}, "split 'train' is not a dict with an 'id'"),
                            ({"train": {"id": ["a"], "audio": np.zeros((2, 3))}}, shape_error)):
        with pytest.raises(InteropError, match=message):
            load_mmsa(write_mmsa_pickle(tmp_path / "x.pkl", broken) if isinstance(broken, dict) else
                      _dump(tmp_path / "x.pkl", broken))


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj))
    return path


def test_sdk_segment_ids_map_both_ways():
    assert sdk_key_to_id("vid_B2[0]") == "vid_B2_1" and sdk_key_to_id("vidA[11]", index_base=0) == "vidA_11"
    assert sdk_key_to_id("vidA_3") == "vidA_3" and sdk_key_to_id("vidA") == "vidA"
    assert id_to_sdk_key("vid_B2_1") == "vid_B2[0]" and id_to_sdk_key("vidA_11", index_base=0) == "vidA[11]"
    with pytest.raises(InteropError, match="is not <video>_<n> with n >= 1"):
        id_to_sdk_key("vidA_0")


def test_computational_sequence_reads_the_sdk_layout(tmp_path):
    entries = word_aligned_entries(5, seed=1)
    path = write_sdk_csd(tmp_path / "c.csd", "toy_COVAREP", entries, {"dimension names": list("abcde")})
    with open_csd(path) as cs:
        assert cs.root == "toy_COVAREP" and cs.keys == sorted(entries)
        assert cs.metadata["dimension names"] == list("abcde") and cs.metadata["dataset name"] == "toy"
        seg = cs.segment("vidA[1]")
        np.testing.assert_array_equal(seg.features, entries["vidA[1]"][0])
        np.testing.assert_array_equal(seg.intervals, entries["vidA[1]"][1])
        assert [k for k, s in cs.entries() if isinstance(s, Segment)] == sorted(entries)


def test_malformed_sequences_name_what_is_wrong(tmp_path):
    words = {"v[0]": (np.array([[b"hello"], [b"sp"]]), np.array([[0.0, 0.3], [0.3, 0.5]]))}
    with open_csd(write_sdk_csd(tmp_path / "w.csd", "toy_Words", words)) as cs:
        with pytest.raises(InteropError, match=r"entry 'v\[0\]': features are \|S5, not numbers.*word vectors"):
            cs.segment("v[0]")
    odd = {"v[0]": (np.zeros((3, 2)), np.zeros((2, 2))), "v[1]": (np.zeros((2, 2)), np.zeros((2, 3)))}
    with open_csd(write_sdk_csd(tmp_path / "o.csd", "toy", odd)) as cs:
        reasons = {k: str(s) for k, s in cs.entries()}
    assert "3 feature rows but 2 intervals" in reasons["v[0]"] and "expected (rows, 2)" in reasons["v[1]"]
    (tmp_path / "text.csd").write_text("not hdf5")
    with pytest.raises(InteropError, match="not an HDF5 file"):
        open_csd(tmp_path / "text.csd")
    with h5py.File(tmp_path / "two.csd", "w") as fh:
        fh.create_group("a/data")
        fh.create_group("b/data")
    with pytest.raises(InteropError, match="expected one top-level group .* found a, b"):
        open_csd(tmp_path / "two.csd")
    with pytest.raises(InteropError, match="computational sequence not found"):
        open_csd(tmp_path / "none.csd")


def test_written_sequences_have_the_sdk_layout(tmp_path):
    segs = [Segment("v[0]", np.ones((2, 3), np.float32), np.array([[0.0, 0.1], [0.1, 0.2]]))]
    write_csd(tmp_path / "out.csd", "mine", segs, {"root name": "mine", "dimension names": ["x", "y", "z"]})
    with h5py.File(tmp_path / "out.csd", "r") as fh:
        assert list(fh) == ["mine"] and list(fh["mine/data"]) == ["v[0]"]
        assert fh["mine/data/v[0]/features"].shape == (2, 3) and fh["mine/data/v[0]/intervals"].shape == (2, 2)
        assert json.loads(fh["mine/metadata/dimension names"][0]) == ["x", "y", "z"]
    with pytest.raises(InteropError, match="contains '/'"):
        write_csd(tmp_path / "bad.csd", "m", [Segment("a/b", np.ones((1, 1)), np.zeros((1, 2)))], {})
    assert not (tmp_path / "bad.csd").exists()
