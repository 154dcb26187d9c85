"""RULER-Bench adapter: rows in, frames the judge sees, labels parsed, the benchmark's sums."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scripted_server import Reply, ScriptedServer, Status

from evals.ruler import (
    JudgeConfig,
    JudgedInstance,
    JudgeFormatError,
    JudgeUnavailable,
    RulerError,
    RulerJudge,
    RulerRow,
    aggregate,
    frames_for_judge,
    judge_frame_indices,
    load_rows,
    output_path,
    parse_labels,
    score_labels,
)

# Three instances in two categories. The checklists and the judge's labels are
# chosen so that every aggregation rule of the benchmark matters (a metric with
# two questions, a category without Instruction Following, macro averages).
ROWS = [
    {
        "prompt": "Drop a sodium pellet into water.",
        "index": 0,
        "task_name": "chemistry",
        "category": "science",
        "checklist": json.dumps(
            [
                {"Instruction Following": "Is a pellet dropped?"},
                {"Instruction Following": "Is the liquid water?"},
                {"Visual Consistency": "Does the beaker stay the same?"},
                {"Visual Fidelity": "Is the video free of artifacts?"},
                {"Rule Coherence": "Does the pellet fizz?"},
                {"Rule Coherence": "Does it move on the surface?"},
            ]
        ),
        "input_image_path": "images/beaker.png",
        "initial_scenario": "a beaker",
        "gt_image_path": "",
        "input_video_path": "",
    },
    {
        "prompt": "A ball rolls down a ramp.",
        "index": 3,
        "task_name": "physics",
        "category": "science",
        "checklist": [
            {"Instruction Following": "Does a ball roll?"},
            {"Visual Consistency": "Is the ramp stable?"},
            {"Visual Fidelity": "Is it sharp?"},
            {"Rule Coherence": "Does it speed up?"},
        ],
    },
    {
        "prompt": "Turn the red square blue.",
        "index": 0,
        "task_name": "color",
        "category": "vision rule",
        "checklist": [
            {"Visual Consistency": "Is the square kept?"},
            {"Visual Fidelity": "Is it clean?"},
            {"Rule Coherence": "Is it blue at the end?"},
            {"Rule Coherence": "Is the change gradual?"},
        ],
    },
]
LABELS = [
    ["Good", "Poor", "Medium", "Good", "Good", "Medium"],
    ["Good", "Good", "Medium", "Poor"],
    ["Medium", "Good", "Poor", "Poor"],
]


def answer(labels: list[str]) -> str:
    return f"<think>Short reasons.</think>\n<answer>{json.dumps(labels)}</answer>"


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (800, 600), (200, 30, 30)).save(tmp_path / "images" / "beaker.png")
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for row in ROWS:
            handle.write(json.dumps(row) + "\n")
    return tmp_path


def video(frames: int = 17, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)


def decode_part(part: dict) -> np.ndarray:
    url = part["image_url"]["url"]
    header, data = url.split(",", 1)
    assert header.startswith("data:image/")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_rows_load_from_both_checklist_encodings(data_dir: Path) -> None:
    rows = load_rows(data_dir / "rows.jsonl")
    assert [r.instance_id for r in rows] == ["chemistry/0", "physics/3", "color/0"]
    assert [item.metric for item in rows[0].checklist][:3] == [
        "Instruction Following",
        "Instruction Following",
        "Visual Consistency",
    ]
    assert rows[0].gt_image_path is None  # empty string in the data means "none"
    assert output_path("teacher", rows[1]) == Path("teacher/physics/3.mp4")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checklist": [{"Aesthetics": "Nice?"}]}, "unknown checklist metric"),
        ({"task_name": "../escape"}, "not a plain folder name"),
        ({"checklist": []}, "checklist"),
    ],
)
def test_bad_rows_are_rejected_with_the_row_number(
    tmp_path: Path, change: dict, message: str
) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([ROWS[1], {**ROWS[2], **change}]))
    with pytest.raises(RulerError, match=rf"row 2: .*{message}"):
        load_rows(path)


def test_judge_frames_are_sampled_at_2_fps_and_shrunk_to_512() -> None:
    # 16 fps -> every 8th frame, as the benchmark's int(16 / 2) stride.
    assert judge_frame_indices(17, 16.0) == [0, 8, 16]
    assert judge_frame_indices(50, 25.0) == list(range(0, 50, 12))
    assert judge_frame_indices(5, 1.0) == [0, 1, 2, 3, 4]  # slower than 2 fps: all frames
    frames = frames_for_judge(video(frames=9, height=300, width=1024), 8.0)
    assert len(frames) == 3  # indices 0, 4, 8
    assert frames[0].shape == (150, 512, 3)
    small = frames_for_judge(video(frames=3, height=32, width=32), 2.0)
    assert small[0].shape == (32, 32, 3)  # never enlarged


def test_labels_parse_and_bad_replies_say_why() -> None:
    labels, reasoning = parse_labels(
        '```\n<think>ok</think><answer>["Good","Poor"]</answer>\n```', 2
    )
    assert labels == ("Good", "Poor") and reasoning == "ok"
    with pytest.raises(RulerError, match="no <answer>"):
        parse_labels("Good, Poor", 2)
    with pytest.raises(RulerError, match="exactly 2 labels; got 3"):
        parse_labels('<answer>["Good","Poor","Good"]</answer>', 2)
    with pytest.raises(RulerError, match="Good, Medium or Poor"):
        parse_labels('<answer>["Good","Excellent"]</answer>', 2)


def test_judge_run_against_scripted_endpoint_aggregates_to_hand_computed_numbers(
    data_dir: Path,
) -> None:
    rows = load_rows(data_dir / "rows.jsonl")
    script = [
        Reply(content=answer(LABELS[0])),
        Reply(content="I think it is mostly Good."),  # no <answer>: re-asked once
        Reply(content=answer(LABELS[1])),
        Status(code=503, message="overloaded"),  # transport retry
        Reply(content=answer(LABELS[2])),
    ]
    config = JudgeConfig(
        model="judge-model", base_url="http://127.0.0.1:1/v1", retry_wait_s=0.0, timeout_s=10
    )
    judged = []
    with ScriptedServer(script) as server:
        judge = RulerJudge(config.model_copy(update={"base_url": server.base_url}), data_dir)
        for n, row in enumerate(rows):
            judged.append(judge.judge(row, video(seed=n), video_fps=16.0))
        requests = server.requests

    # What the judge was sent: input image first (shrunk to 512), prompt, 3 frames, questions.
    assert len(requests) == 5 and all(r["model"] == "judge-model" for r in requests)
    first = requests[0]["messages"]
    assert first[0]["role"] == "system" and "<answer>" in first[0]["content"]
    parts = first[1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert decode_part(images[0]).shape == (384, 512, 3)  # 800x600 input image, long side 512
    assert len(images) == 1 + 3
    assert all(decode_part(p).shape == (48, 64, 3) for p in images[1:])
    texts = " ".join(p["text"] for p in parts if p["type"] == "text")
    assert "Drop a sodium pellet" in texts and "Question 6: Does it move on the surface?" in texts
    # The re-ask shows the judge its unusable reply and the reason.
    reask = requests[2]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "I think it is mostly Good."}
    assert "no <answer>" in reask[-1]["content"]

    # Per instance, by hand: metric = mean label value / 2.
    assert judged[0].labels == tuple(LABELS[0])
    assert judged[0].metric_scores == {
        "Instruction Following": 0.5,  # Good, Poor -> (2 + 0) / 2 / 2
        "Visual Consistency": 0.5,
        "Visual Fidelity": 1.0,
        "Rule Coherence": 0.75,  # Good, Medium
    }
    assert judged[0].score == pytest.approx((0.5 + 0.5 + 1.0 + 0.75) / 4)
    assert judged[1].score == pytest.approx((1.0 + 1.0 + 0.5 + 0.0) / 4)
    assert judged[1].usage["calls"] == 2
    # Vision rule: no Instruction Following; the average is over three metrics.
    assert judged[2].metric_scores["Instruction Following"] == 0.0
    assert judged[2].score == pytest.approx((0.5 + 1.0 + 0.0) / 3)

    summary = aggregate(
        JudgedInstance(row.category, verdict.metric_scores)
        for row, verdict in zip(rows, judged, strict=True)
    )
    assert summary.counts == {"science": 2, "vision rule": 1}
    assert summary.categories["science"] == pytest.approx(
        {"IF": 75.0, "VC": 75.0, "VF": 75.0, "RC": 37.5, "Avg": 65.625}
    )
    assert summary.categories["vision rule"] == pytest.approx(
        {"VC": 50.0, "VF": 100.0, "RC": 0.0, "Avg": 50.0}
    )
    # Overall: macro over categories; IF from science alone; Avg = mean of the four.
    assert summary.overall == pytest.approx(
        {"IF": 75.0, "VC": 62.5, "VF": 87.5, "RC": 18.75, "Avg": 60.9375}
    )


def test_judge_gives_up_clearly(data_dir: Path) -> None:
    row = RulerRow.model_validate(ROWS[1])
    config = JudgeConfig(
        model="m", base_url="http://x/v1", retry_wait_s=0.0, max_attempts=2, max_format_retries=1
    )
    with ScriptedServer([Reply(content="no"), Reply(content="still no")]) as server:
        judge = RulerJudge(config.model_copy(update={"base_url": server.base_url}))
        with pytest.raises(JudgeFormatError, match="no usable labels in 2 replies"):
            judge.judge(row, video(), 16.0)
    with ScriptedServer([Status(500), Status(502)]) as server:
        judge = RulerJudge(config.model_copy(update={"base_url": server.base_url}))
        with pytest.raises(JudgeUnavailable, match="after 2 attempts"):
            judge.judge(row, video(), 16.0)


def test_score_labels_rejects_a_count_mismatch() -> None:
    row = RulerRow.model_validate(ROWS[1])
    with pytest.raises(ValueError, match="3 labels for 4"):
        score_labels(row, ["Good"] * 3)
