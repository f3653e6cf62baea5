"""Dataset adapters carry emotion columns (MOSEI/MOSEAS) and the binary task of UR-FUNNY into the task layer."""

from __future__ import annotations

import json

import pytest
import torch

from models.tasks import TaskConfig, label_values, task_targets
from pipeline.corpora.base import DatasetError
from pipeline.corpora.moseas import load_moseas
from pipeline.corpora.mosei import load_mosei
from pipeline.corpora.urfunny import load_urfunny

EMOTION_HEADER = "video_id,clip_id,text,label,mode,happy,sad,anger,surprise,disgust,fear\n"


def _touch(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_mosei_mmsa_labels_carry_emotions_into_a_multilabel_task(tmp_path) -> None:
    (tmp_path / "label.csv").write_text(EMOTION_HEADER +
                                        "v1,1,great,2.0,train,2.33,0,0,0.67,0,0\n"
                                        "v1,2,awful,-2.0,test,0,1.0,1.67,0,0.33,0\n", encoding="utf-8")
    ds = load_mosei(tmp_path)
    assert ds.emotions == ["happy", "sad", "anger", "surprise", "disgust", "fear"]
    assert ds.summary()["emotions"] == ds.emotions
    task = TaskConfig.from_dict(ds.emotion_task(), where="task")
    assert task.kind == "multilabel" and task.pos_weight == "auto" and task.n_outputs == 6
    values = torch.tensor([label_values(task, r.label, r.targets) for r in ds.table])
    assert task_targets(task, values).tolist() == [[1, 0, 0, 1, 0, 0], [0, 1, 1, 0, 1, 0]]


def test_moseas_emotions_and_no_emotion_error(tmp_path) -> None:
    _touch(tmp_path / "es" / "Raw/v1/1.mp4")
    (tmp_path / "es" / "label.csv").write_text("video_id,clip_id,text,label,mode,happy,sad\n"
                                               "v1,1,me encantó,2.0,train,1.0,0\n", encoding="utf-8")
    ds = load_moseas(tmp_path, "es")
    assert ds.emotions == ["happy", "sad"] and ds.table.rows[0].targets == {"happy": 1.0, "sad": 0.0}
    (tmp_path / "es" / "label.csv").write_text("video_id,clip_id,text,label,mode\nv1,1,me encantó,2.0,train\n",
                                               encoding="utf-8")
    with pytest.raises(DatasetError, match=r"moseas-es: the labels have no emotion columns \(happy, sad"):
        load_moseas(tmp_path, "es").emotion_task()


def test_urfunny_is_a_binary_task_at_threshold_half(tmp_path) -> None:
    for i in ("10", "11"):
        _touch(tmp_path / "urfunny2_videos" / f"{i}.mp4")
    (tmp_path / "labels.csv").write_text("id,label,text\n10,1,a punchline\n11,0,no joke\n")
    (tmp_path / "folds.json").write_text(json.dumps({"train": ["10"], "dev": [], "test": ["11"]}))
    ds = load_urfunny(tmp_path)
    task = TaskConfig.from_dict(ds.task_options(), where="task")
    assert (task.kind, task.threshold) == ("binary", 0.5)
    assert task_targets(task, torch.tensor([r.label for r in ds.table])).tolist() == [1.0, 0.0]
