"""Agent configs: the shipped ones validate, the teacher swap is one line, bad ones explain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.components import build_reasoner, build_scorer, check_shipped_models
from agent.config import load_agent_config
from agent.launch import load_config, load_task
from evals.mini import paths
from evals.tasks import parse_task_id, split_of_seed
from reasoner.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "agent"


@pytest.mark.parametrize(
    "name", ["embedded", "mini", "mini-vqa", "vllm-qwen3vl4b-wan22-5b", "small-gpu-wan21-1.3b"]
)
def test_shipped_configs_validate_and_fit_the_mini_world(name: str) -> None:
    config = load_agent_config(CONFIGS / f"{name}.yaml")
    vm = config.reasoner.video_model
    assert vm.height == vm.width <= 512  # mini-world tasks are square, at most 512 px
    assert config.tto.max_steps == config.budgets.max_lora_steps
    assert config.tto.num_frames <= vm.num_frames
    if config.teacher.kind == "openai":
        assert config.teacher.base_url and config.teacher.api_key_env


def test_mini_config_names_the_shipped_models_relative_to_the_repo() -> None:
    config = load_agent_config(CONFIGS / "mini.yaml")
    assert config.reasoner.video_model.source == paths.MINI_VGM_SOURCE
    # The mini scorer is below the 90 % bar: the main job optimizes the checks only.
    assert config.scorer.source is None and config.scorer.include == "checks"
    assert not Path(paths.MINI_SCORER_SOURCE).is_absolute()  # no machine path in the repo
    assert config.tto.num_frames == config.reasoner.video_model.num_frames  # K = every frame
    assert config.budgets.max_lora_steps == 16 and config.budgets.wall_clock_s == 150
    assert 1e-3 <= config.tto.lr <= 5e-3


def test_mini_vqa_config_is_the_mini_config_with_the_shipped_scorer() -> None:
    mini = load_agent_config(CONFIGS / "mini.yaml")
    vqa = load_agent_config(CONFIGS / "mini-vqa.yaml")
    assert vqa.scorer.source == paths.MINI_SCORER_SOURCE and vqa.scorer.include == "all"
    same = vqa.model_copy(update={"scorer": mini.scorer})
    assert same.model_dump() == mini.model_dump()  # nothing else differs


def test_missing_shipped_models_stop_with_the_command_that_trains_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_agent_config(CONFIGS / "mini-vqa.yaml")  # names both shipped models
    vgm, scorer = tmp_path / "vgm", tmp_path / "scorer"
    monkeypatch.setitem(paths.SHIPPED_SOURCES, paths.MINI_VGM_SOURCE, vgm)
    monkeypatch.setitem(paths.SHIPPED_SOURCES, paths.MINI_SCORER_SOURCE, scorer)
    with pytest.raises(ConfigError, match="vlm-teacher train vgm"):
        check_shipped_models(config)
    with pytest.raises(ConfigError, match="vlm-teacher train vgm"):
        build_reasoner(config)
    vgm.mkdir()
    with pytest.raises(ConfigError, match=r"evals\.mini\.train_scorer"):
        check_shipped_models(config)
    with pytest.raises(ConfigError, match=r"evals\.mini\.train_scorer"):
        build_scorer(config.scorer)
    scorer.mkdir()
    check_shipped_models(config)  # both folders present: nothing to say


@pytest.mark.skipif(
    not paths.MINI_VGM_DIR.is_dir(),
    reason="the trained mini video model is not shipped (evals/mini/weights/vgm)",
)
def test_mini_config_builds_the_shipped_models_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the repo-relative sources must not depend on the cwd
    config = load_agent_config(CONFIGS / "mini.yaml")
    reasoner = build_reasoner(config)
    assert reasoner.latent_shape[2] == config.reasoner.video_model.num_frames  # pixel space
    assert build_scorer(config.scorer) is None  # the main job: checks only
    if paths.MINI_SCORER_DIR.is_dir():
        vqa = load_agent_config(CONFIGS / "mini-vqa.yaml")
        assert build_scorer(vqa.scorer) is not None


def test_make_demo_runs_the_main_job_on_a_held_out_mini_task() -> None:
    makefile = (CONFIGS.parents[1] / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    command = re.search(r"vlm-teacher run --config (\S+) --task (\S+) --fresh", recipe)
    assert command is not None, recipe
    config_path, task_id = command.groups()
    assert config_path == "configs/agent/mini.yaml"
    _, seed = parse_task_id(task_id)
    assert split_of_seed(seed) == "test"  # never trained on
    config = load_agent_config(CONFIGS.parents[1] / config_path)
    task = load_task(task_id, config)  # rendered at the mini VGM's size and frame count
    assert task.num_frames == config.reasoner.video_model.num_frames


def test_swapping_the_teacher_is_one_line(tmp_path: Path) -> None:
    text = (CONFIGS / "vllm-qwen3vl4b-wan22-5b.yaml").read_text()
    swapped = tmp_path / "swapped.yaml"
    swapped.write_text(
        text.replace("model: Qwen/Qwen3-VL-4B-Instruct", "model: Qwen/Qwen3-VL-8B-Instruct", 1)
    )
    lines = zip(text.splitlines(), swapped.read_text().splitlines(), strict=True)
    changed = [a for a, b in lines if a != b]
    assert len(changed) == 1
    a = load_agent_config(CONFIGS / "vllm-qwen3vl4b-wan22-5b.yaml")
    b = load_agent_config(swapped)
    assert b.teacher.model == "Qwen/Qwen3-VL-8B-Instruct"
    assert a.model_dump() | {"teacher": None} == b.model_dump() | {"teacher": None}
    assert a.teacher.model_copy(update={"model": b.teacher.model}) == b.teacher
    # The same from the command line.
    c = load_config(
        CONFIGS / "embedded.yaml",
        teacher_url="http://gpu-box:8000/v1",
        teacher_model="Qwen/Qwen3-VL-8B-Instruct",
    )
    assert (c.teacher.kind, c.teacher.base_url) == ("openai", "http://gpu-box:8000/v1")


def bad(tmp_path: Path, **changes: object) -> str:
    """The error of the embedded config with `section__field=value` changes."""
    data = yaml.safe_load((CONFIGS / "embedded.yaml").read_text())
    data["reasoner"] = str(CONFIGS.parent / "reasoner" / "tiny-pixel.yaml")
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        data.setdefault(section, {})[field] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_agent_config(path)
    return str(err.value)


def test_bad_configs_say_what_to_change(tmp_path: Path) -> None:
    assert "budgets.max_lora_steps" in bad(tmp_path, tto__max_steps=3)
    assert "tto.num_frames" in bad(tmp_path, tto__num_frames=40)
    assert "base_url" in bad(tmp_path, teacher__kind="openai")
    assert "include: checks" in bad(tmp_path, scorer__source=None)
    assert "unknown field" in bad(tmp_path, teacher__api_key="sk-inline-secret")
    assert "wall_clock_s" in bad(tmp_path, tto__time_budget_s=10.0)
    with pytest.raises(ConfigError, match="does not exist"):
        load_agent_config(tmp_path / "missing.yaml")


def test_extends_lays_a_config_over_another_from_any_folder(tmp_path: Path) -> None:
    """`extends:` merges section by section; the base's relative reasoner path still
    resolves against the base's own folder."""
    sub = tmp_path / "mine" / "deeper"
    sub.mkdir(parents=True)
    child = sub / "child.yaml"
    child.write_text(
        yaml.safe_dump(
            {
                "extends": str(CONFIGS / "mini.yaml"),
                "tto": {"lr": 1e-3},
                "budgets": {"max_lora_steps": 8},
            }
        )
    )
    base = load_agent_config(CONFIGS / "mini.yaml")
    config = load_agent_config(child)
    assert config.tto.lr == 1e-3 and config.budgets.max_lora_steps == 8
    assert config.tto.tau == base.tto.tau  # the rest of the tto section is the base's
    assert config.budgets.wall_clock_s == base.budgets.wall_clock_s
    assert config.reasoner == base.reasoner  # ../reasoner/mini.yaml, from configs/agent/
    # A relative `extends` is relative to the file that holds it.
    (sub / "grandchild.yaml").write_text("extends: child.yaml\nteacher: {offline: {burst: 2}}\n")
    grand = load_agent_config(sub / "grandchild.yaml")
    assert grand.teacher.offline.burst == 2 and grand.budgets.max_lora_steps == 8


def test_extends_loops_and_bad_values_say_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="in a loop"):
        load_agent_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: [mini.yaml]\n")
    with pytest.raises(ConfigError, match="extends must be the path"):
        load_agent_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml does not exist"):
        load_agent_config(tmp_path / "d.yaml")
