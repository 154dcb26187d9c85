"""The run's one-page summary (agent/summary.py) on tiny real models.

One offline-teacher run of a drawn task whose instruction carries a `<script>`;
the page is read back as text: what it links to, its loss curves counted
against the run's own trace, its escaping, and the cost of its before video.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from agent_support import agent_config, drawn_task, reasoner, run_scripted, scorer, tool_events
from scripted_server import Reply, ScriptedServer
from tiny_wan import one_torch_thread

from agent.offline_teacher import OfflineTeacher
from agent.run import RunOutcome, run_task
from agent.summary import BASE_VIDEO, SUMMARY_FILE, write_summary
from agent.teacher_config import OfflinePolicyConfig
from reasoner.cost import ForwardCounter
from reasoner.spec import RewardSpec
from tools.context import RunContext, to_uint8

ATTACK = '<script>alert("x")</script> Move the red square to the blue square.'
STEPS = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOutcome, Path, int]:
    """One finished run; the page written once, with the forward passes that cost."""
    config = agent_config(budgets={"max_lora_steps": STEPS}, tto={"tau": None})
    task = dataclasses.replace(drawn_task(), instruction=ATTACK)
    run_dir = tmp_path_factory.mktemp("summary") / "run"
    outcome = run_task(
        config,
        task,
        run_dir,
        reasoner=reasoner(),
        scorer=scorer(),
        teacher=OfflineTeacher(OfflinePolicyConfig(burst=2, max_revisions=0)),
    )
    with ForwardCounter(reasoner().transformer) as counter:
        page = write_summary(outcome, config, task, reasoner(), checker=None)
    return outcome, page, counter.count


def links(html: str) -> list[str]:
    return [unquote(ref) for ref in re.findall(r'(?:src|href)="([^"]*)"', html)]


def curve_points(html: str) -> dict[str, int]:
    """Term name -> points drawn in its curve (one SVG circle per finite loss)."""
    boxes = re.findall(r'data-term="([^"]+)">(.*?)</svg>', html, flags=re.S)
    return {name: body.count("<circle") for name, body in boxes}


def test_the_page_links_only_files_of_the_run_folder(run) -> None:
    outcome, page, _ = run
    assert page == outcome.run_dir / SUMMARY_FILE and page.is_file()
    html = page.read_text()
    refs = [r for r in links(html) if r != "data:,"]  # the empty favicon: no request
    assert {"images/first_frame.png", "before.gif", "before.mp4", "video.gif", "video.mp4"} <= set(
        refs
    )
    root = outcome.run_dir.resolve()
    for ref in refs:
        target = (outcome.run_dir / ref).resolve()
        assert target.is_relative_to(root) and target.is_file(), ref
    assert "<script" not in html.lower() and "http" not in html  # no JS, no network


def test_one_curve_per_optimized_term_with_one_point_per_evaluation(run) -> None:
    outcome, page, _ = run
    html = page.read_text()
    # Hand count from the trace: the optimize results list one loss per evaluation.
    bursts = [e["result"] for e in tool_events(outcome.run_dir) if e["name"] == "optimize"]
    evaluations = sum(len(b["losses"]) for b in bursts)
    assert outcome.state["lora_steps"] == STEPS
    assert evaluations == STEPS + 1  # every step, then the closing evaluation of the last
    spec = RewardSpec.model_validate(outcome.state["specs"][-1]["spec"])
    optimized = [name for name, role, _ in spec.queries() if role != "verifier"]
    optimized += [f"check[{i}]:{c.name or c.kind}" for i, c in enumerate(spec.checks)]
    assert len(optimized) >= 3
    assert curve_points(html) == dict.fromkeys(optimized, evaluations)
    total = re.search(r'id="total-curve".*?</svg>', html, flags=re.S)
    assert total is not None and total.group(0).count("<circle") == evaluations
    # The final scores table has every term, the held-out verifiers too.
    for name, _, _ in spec.queries():
        assert f"<td>{name}</td>" in html


def test_the_task_text_is_escaped(run) -> None:
    _, page, _ = run
    html = page.read_text()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Move the red square" in html
    assert "<script>" not in html


def test_the_before_video_is_the_base_sample_and_costs_one_sample_once(run) -> None:
    outcome, page, first_cost = run
    config = agent_config(budgets={"max_lora_steps": STEPS}, tto={"tau": None})
    task = dataclasses.replace(drawn_task(), instruction=ATTACK)
    before = np.load(outcome.run_dir / BASE_VIDEO)
    # What the run started from: a fresh optimizer's video before any step.
    ctx = RunContext(outcome.run_dir / "check", task, reasoner(), scorer(), config.tto)
    ctx.set_spec(RewardSpec.model_validate(outcome.state["specs"][-1]["spec"]))
    start, iterate = ctx.render("current")
    assert iterate == 0
    np.testing.assert_array_equal(before, to_uint8(start))
    assert not np.array_equal(before, np.load(outcome.video_path))  # the LoRA changed it
    # One sample: the sampler's steps, one transformer pass each; a rewrite costs nothing.
    assert first_cost == config.reasoner.video_model.num_inference_steps
    with ForwardCounter(reasoner().transformer) as counter:
        again = write_summary(outcome, config, task, reasoner(), checker=None)
    assert counter.count == 0 and again.read_text() == page.read_text()


def test_a_run_without_a_spec_shows_its_final_video_as_before(tmp_path: Path) -> None:
    script = [Reply(tool_calls=[("finish", {"decision": "give_up", "reason": "no idea"})])]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run")
    assert outcome.result["source"].startswith("base model")
    with ForwardCounter(reasoner().transformer) as counter:
        page = write_summary(outcome, agent_config(), drawn_task(), reasoner())
    assert counter.count == 0  # the final video is the base sample already
    html = page.read_text()
    assert "No reward spec was written" in html and "gave_up: no idea" in html
    # The same frames, so the same playable files.
    for suffix in ("gif", "mp4"):
        before = (outcome.run_dir / f"before.{suffix}").read_bytes()
        assert before == (outcome.run_dir / f"video.{suffix}").read_bytes()


def test_terms_the_setup_leaves_out_are_marked_on_the_page(run) -> None:
    from agent.summary import SpecRow, mark_unscored

    rows = [
        SpecRow("goal", "goal", "last", "", "Does it end there?"),
        SpecRow("check[0]:reach", "goal", "last", "1", "reach_by_end {}", is_check=True),
    ]
    assert mark_unscored(rows, "all") == rows
    assert [r.scored for r in mark_unscored(rows, "checks")] == [False, True]
    assert [r.scored for r in mark_unscored(rows, "queries")] == [True, False]
    # This run optimized everything: nothing is marked.
    assert "not optimized" not in run[1].read_text()
