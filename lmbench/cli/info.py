"""Commands that show what there is: models, data, generate, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmbench.cli import (
    DeviceOpt,
    SeedOpt,
    SetOpt,
    SpecArg,
    StorageOpt,
    UriOpt,
    _setup_logging,
    app,
    user_errors,
)


@app.command()
@user_errors
def models() -> None:
    """List the architectures with their parameters, defaults, size presets, training recipe and batch order."""
    from lmbench.report.terminal import print_models

    print_models()

@app.command()
@user_errors
def data(
    source: Annotated[str | None, typer.Option("--source", help="Show statistics of this corpus.")] = None,
    spec: SpecArg = None,
    set_: SetOpt = None,
) -> None:
    """List the named datasets, or show statistics of a corpus (--source) as tokenised by a spec."""
    from rich.console import Console
    from rich.table import Table

    from lmbench.config import options
    from lmbench.data import corpus_stats, list_datasets

    console = Console()
    if source is None and spec is None:
        table = Table(title="datasets")
        for col in ("name", "description", "cached"):
            table.add_column(col)
        for d in list_datasets():
            table.add_row(d["name"], d["description"], "yes" if d.get("cached") else "no")
        console.print(table)
        return
    from lmbench.config import load_spec

    overrides = options.overrides(sets=set_, data=source)
    stats = corpus_stats(load_spec(spec, overrides).data)
    console.print_json(data=stats)

@app.command()
@user_errors
def generate(
    target: Annotated[str, typer.Argument(metavar="RUN_ID|CHECKPOINT", help="An MLflow run id or a checkpoint path.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")],
    strategy: Annotated[str | None, typer.Option("--strategy", help="greedy | sample | beam.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="sample: > 0 (default 1).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="sample: keep the k most likely tokens (0 = all).")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="sample: nucleus mass in (0, 1].")] = None,
    beams: Annotated[int | None, typer.Option("--beams", help="beam: width >= 1 (default 4).")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Tokens to generate at most (default 64).")] = None,
    seed: SeedOpt = None,
    num: Annotated[int, typer.Option("--num", help="Continuations to print (samples, or the best beams).")] = 1,
    device: DeviceOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Continue a prompt with a trained model (its best checkpoint and tokenizer, loaded safely)."""
    from lmbench.generation.decoding import settings
    from lmbench.training.loading import complete, load_model

    _setup_logging(quiet=False)
    s = settings(strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p, beams=beams,
                 max_tokens=max_tokens, seed=seed)
    if not prompt.strip():
        from lmbench.errors import UserError

        raise UserError("--prompt", "is empty: give some text to continue")
    outs = complete(load_model(target, tracking_uri=tracking_uri, device=device), prompt, s, num)
    for i, text in enumerate(outs, start=1):
        typer.echo(f"[{i}] {text}" if len(outs) > 1 else text)

@app.command()
@user_errors
def report(
    experiment: Annotated[str, typer.Argument(help="MLflow experiment (the spec's name or tracking.experiment).")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: reports/<experiment>).")] = None,
    format_: Annotated[str, typer.Option("--format", help="html | md | csv.")] = "html",
    open_: Annotated[bool, typer.Option("--open", help="Open the report in a web browser.")] = False,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Write the experiment's report from the MLflow runs and Optuna studies (one self-contained HTML file)."""
    from lmbench.report.build import build_report
    from lmbench.tracking.tracker import reap_store

    reap_store(tracking_uri)  # runs of processes that died show as KILLED, not RUNNING
    path = build_report(experiment, tracking_uri=tracking_uri, storage=storage, out=out, fmt=format_)
    typer.echo(f"report: {path}")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
