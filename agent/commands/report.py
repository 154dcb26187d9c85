"""`vlm-teacher report <dir>`: the Markdown table and HTML page of a batch folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    folder: Annotated[
        Path, typer.Argument(help="A batch folder written by `vlm-teacher eval --out`.")
    ],
    gallery_limit: Annotated[
        int, typer.Option(min=1, help="Most instances shown with videos on the HTML page.")
    ] = 200,
) -> None:
    """Write report.md and report.html into a batch folder."""
    from evals.report import write_report

    if not (folder / "results.jsonl").is_file():
        raise typer.BadParameter(
            f"{folder} has no results.jsonl; pass the --out folder of a `vlm-teacher eval` run",
            param_hint="FOLDER",
        )
    md_path, html_path = write_report(folder, gallery_limit=gallery_limit)
    typer.echo(f"wrote {md_path}")
    typer.echo(f"wrote {html_path}")
