"""The ``lmbench`` command line: thin commands that parse options and call the library.

Heavy modules (torch, mlflow, pydantic specs) are imported inside the commands so that
``lmbench --help`` stays fast. Every error a user can fix is a ``UserError``: printed as one line
naming the key or file, exit code 2, before any run or file is created.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Fair, reproducible language-model architecture comparisons (PyTorch + Optuna + MLflow).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# -- shared option aliases (defined once, used by every command) -------------------------------
SpecArg = Annotated[Path | None, typer.Argument(help="Experiment spec (YAML). Defaults to the built-in spec.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec value: key.path=value (repeatable).")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Architecture (see `lmbench models`).")]
DataOpt = Annotated[str | None, typer.Option("--data", help="synthetic | tinyshakespeare | a .txt/.jsonl file or folder.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (train.seed).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only the final summary.")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Tiny profile (small model, few steps) for smoke tests.")]

# The --quick profile: a few seconds on a laptop CPU, but still a real run end to end.
QUICK = [
    "model.preset=small", "train.budget={steps: 40}", "train.eval_interval=20", "train.eval_tokens=2000",
    "train.log_interval=5", "train.batch_size=8", "data.seq_len=32", "data.size=20000",
]


def user_errors(fn):
    """Turn UserError into one clear line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from lmbench.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _overrides(quick: bool, sets: list[str] | None, **options) -> list[str]:
    """CLI options become --set overrides, so they are validated by the same spec models."""
    out = list(QUICK) if quick else []
    mapping = {"model": "model.arch", "data": "data.source", "seed": "train.seed", "device": "train.device",
               "tracking_uri": "tracking.tracking_uri", "steps": "train.budget", "tokens": "train.budget"}
    for name, value in options.items():
        if value is None:
            continue
        if name in ("steps", "tokens"):
            out.append(f"train.budget={{{name}: {value}}}")
        elif name == "data":
            out.append(f"data.source={_yaml_str(value)}")
        else:
            out.append(f"{mapping[name]}={_yaml_str(value) if isinstance(value, str) else value}")
    return out + list(sets or [])


def _yaml_str(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is valid YAML: quotes paths with odd characters


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, show_time=False)], force=True)


@app.command()
@user_errors
def train(
    spec: SpecArg = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Budget in optimizer steps.")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", help="Budget in training tokens.")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    tracking_uri: UriOpt = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue a run: its MLflow run id or checkpoint path.")] = None,
    quick: QuickOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one model, evaluate it on val and test, and record everything in MLflow."""
    from lmbench.errors import SpecError
    from lmbench.experiments import resume_training, run_training
    from lmbench.spec import load_spec

    _setup_logging(quiet)
    if steps is not None and tokens is not None:
        raise SpecError("--steps/--tokens", "give one budget, not both")
    if resume is not None:
        given = {"SPEC": spec, "--model": model, "--data": data, "--set": set_, "--steps": steps,
                 "--tokens": tokens, "--seed": seed, "--quick": quick or None}
        clash = [k for k, v in given.items() if v]
        if clash:
            raise SpecError(clash[0], "cannot be combined with --resume (the run's stored spec is used)")
        result = resume_training(resume, tracking_uri=tracking_uri, device=device, quiet=quiet)
    else:
        overrides = _overrides(quick, set_, model=model, data=data, seed=seed, device=device,
                               tracking_uri=tracking_uri, steps=steps, tokens=tokens)
        result = run_training(load_spec(spec, overrides), quiet=quiet)
    _print_result(result)


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {result.run_id}  ({result.stop_reason}, {result.steps} steps, "
                        f"{result.tokens:,} tokens, {result.seconds:.1f}s, {result.tokens_per_sec:,.0f} tok/s)")
    table.add_column("split")
    cols = {"loss": "loss", "ppl": "ppl", "accuracy": "acc", "bits_per_token": "bits/tok",
            "bits_per_char": "bits/char", "floor": "floor", "excess": "excess"}
    present = [c for c in cols if f"test_{c}" in result.final]
    for c in present:
        table.add_column(cols[c], justify="right")
    for split, prefix in (("val", "final_val"), ("test", "test")):
        table.add_row(split, *[f"{result.final[f'{prefix}_{c}']:.4f}" for c in present])
    Console().print(table)
    p = result.num_params
    typer.echo(f"params: {p['non_embedding']:,} non-embedding, {p['embedding']:,} embedding; "
               f"checkpoints: {result.checkpoint_dir}")


@app.command()
@user_errors
def models() -> None:
    """List the architectures with their parameters, defaults and size presets."""
    from rich.console import Console
    from rich.table import Table

    from lmbench.models import describe_archs

    console = Console()
    for arch in describe_archs():
        presets = arch["presets"]
        table = Table(title=f"{arch['name']}: {arch['description']}", title_justify="left")
        table.add_column("parameter")
        table.add_column("type")
        table.add_column("default")
        for p in presets:
            table.add_column(f"preset {p}")
        for f in arch["fields"]:
            table.add_row(f["name"], f["type"], str(f["default"]),
                          *[str(presets[p].get(f["name"], "")) for p in presets])
        console.print(table)


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
    from lmbench.spec import load_spec

    overrides = ([f"data.source={_yaml_str(source)}"] if source else []) + list(set_ or [])
    stats = corpus_stats(load_spec(spec, overrides).data)
    console.print_json(data=stats)


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
