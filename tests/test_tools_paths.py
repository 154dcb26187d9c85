"""No tool argument can reach the filesystem outside the run's folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.paths import PathRefused, refuse_path_escapes, resolve_in

ESCAPES = [
    "../secret",
    "images/../../secret",
    "..",
    "/etc/passwd",
    "  /etc/passwd",
    "~/.ssh/id_rsa",
    "C:\\Windows\\system.ini",
    "c:/windows",
    "\\\\server\\share",
    "images\\..\\..\\x",
    "ok\x00.png",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_escaping_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(PathRefused):
        resolve_in(tmp_path, name)
    with pytest.raises(PathRefused):
        refuse_path_escapes({"video": name})


@pytest.mark.parametrize("name", ESCAPES)
def test_escapes_are_found_anywhere_in_nested_arguments(name: str) -> None:
    args = {"goal": {"text": "ok"}, "checks": [{"kind": "x", "object": {"color": name}}]}
    with pytest.raises(PathRefused, match=r"checks\[0\]\.object\.color"):
        refuse_path_escapes(args)
    with pytest.raises(PathRefused):
        refuse_path_escapes({name: 1})


def test_plain_names_and_ordinary_text_pass(tmp_path: Path) -> None:
    assert resolve_in(tmp_path, "images/a.png") == tmp_path.resolve() / "images" / "a.png"
    refuse_path_escapes(
        {"text": "Does the ball move left/right and stay 1/2 way up? Yes...", "n": [1, 2.5]}
    )


def test_a_symlink_out_of_the_run_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, run / "link")
    with pytest.raises(PathRefused, match="outside the run folder"):
        resolve_in(run, "link/file.txt")


segments = st.lists(
    st.sampled_from(["..", ".", "a", "images", "b.png", "", "~", "x..y"]), min_size=1, max_size=6
)


@given(parts=segments, sep=st.sampled_from(["/", "\\"]), lead=st.sampled_from(["", "/", "~/"]))
def test_any_accepted_name_stays_inside(tmp_path_factory, parts, sep, lead) -> None:
    root = tmp_path_factory.getbasetemp() / "root"
    root.mkdir(exist_ok=True)
    name = lead + sep.join(parts)
    try:
        path = resolve_in(root, name)
    except PathRefused:
        return
    assert path.is_relative_to(root.resolve())
    assert ".." not in name.replace("\\", "/").split("/")
