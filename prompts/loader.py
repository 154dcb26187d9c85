"""Prompt templates as data: YAML files of Jinja2 templates, rendered strictly.

A template that names a variable the caller did not pass fails loudly
(`StrictUndefined`) instead of sending the model a prompt with a hole in it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2
import yaml

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # plain text for a language model, not HTML
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def load_prompts(name: str) -> dict[str, Any]:
    """The mapping in `prompts/<name>.yaml` (templates and example data)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"prompt file name {name!r} must be letters, digits and underscores")
    text = resources.files("prompts").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"prompts/{name}.yaml must hold a mapping, got {type(data).__name__}")
    return data


def render(name: str, key: str, **variables: Any) -> str:
    """Render template `key` of `prompts/<name>.yaml` with `variables` (all must be given)."""
    prompts = load_prompts(name)
    if key not in prompts:
        raise KeyError(f"prompts/{name}.yaml has no template {key!r}; it has {sorted(prompts)}")
    return _ENV.from_string(prompts[key]).render(**variables).strip()
