"""Rendering of the repository's jinja2 templates (compose/, nginx/): the one place that turns a
template and its settings into text, with undefined settings failing loudly instead of rendering
as empty strings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2

from isletops.errors import ConfigError

# Templates ship in the source tree beside ops/; ISLETOPS_HOME points elsewhere when installed.
PROJECT_ROOT = Path(os.environ.get("ISLETOPS_HOME", Path(__file__).resolve().parents[2]))
TEMPLATE_DIRS: dict[str, Path] = {
    "compose": PROJECT_ROOT / "compose",
    "nginx": PROJECT_ROOT / "nginx",
    "helm": PROJECT_ROOT / "helm",
}


def template_environment(area: str) -> jinja2.Environment:
    """A jinja2 environment over one template area (`compose`, `nginx` or `helm`)."""
    try:
        directory = TEMPLATE_DIRS[area]
    except KeyError:
        raise ConfigError(f"There are no '{area}' templates.", f"Known areas: {', '.join(TEMPLATE_DIRS)}.") from None
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - YAML and nginx config, never HTML  # nosec B701
    )


def render_template(area: str, name: str, settings: dict[str, Any]) -> str:
    """Render template `name` of `area` with `settings`; a missing setting is named in the error."""
    try:
        return template_environment(area).get_template(name).render(**settings)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"Template {area}/{name} does not exist.") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"Template {area}/{name} needs a setting that is missing: {exc.message}.") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"Template {area}/{name} is broken at line {exc.lineno}: {exc.message}.") from None
