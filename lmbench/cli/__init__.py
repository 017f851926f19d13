"""The ``lmbench`` command line: thin commands that parse options and call the library.

Heavy modules (torch, mlflow, pydantic specs) are imported inside the commands so that
``lmbench --help`` stays fast. Every error a user can fix is a ``UserError``: printed as one line
naming the key or file, exit code 2, before any run or file is created.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

app = typer.Typer(
    help="Fair, reproducible language-model architecture comparisons (PyTorch + Optuna + MLflow).\n\n"
         "First hour: `lmbench compare --quick`, then `lmbench status NAME [--watch]`, `lmbench report NAME` "
         "and `lmbench ui` (it prints the runs page to open). Tables fit the terminal; a failed run is one "
         "line, exit 1 (`--debug` shows the traceback); runs of processes that died are marked KILLED by "
         "the next command.\n\n"
         "Passwords in --storage / --tracking-uri URLs are used, never stored or printed; better, keep "
         "them in ~/.pgpass and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and share runs "
         "with `lmbench server --auth`.",
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

@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of failures and the libraries' INFO "
                                        "logs (Optuna, MLflow); without it a failure is one line.")] = False,
) -> None:
    """Options of every command (the app's help text is Typer's ``help=`` above)."""
    from lmbench.logs import DEBUG_ENV

    if debug:
        os.environ[DEBUG_ENV] = "1"  # spawned worker processes follow
    else:
        os.environ.pop(DEBUG_ENV, None)


def user_errors(fn):
    """A UserError is one line on stderr, exit 2; a failed run is one line (run id, FAILED, the
    reason), exit 1; any other failure is one line too, exit 1. ``--debug`` shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from lmbench.errors import UserError, failed_run_of
        from lmbench.logs import debugging
        from lmbench.secrets import scrub

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort,
                click.exceptions.ClickException):
            raise  # the CLI's own ways out (typer.Exit is a RuntimeError)
        except UserError as e:
            if failed_run_of(e) is None:  # found before any run: the user's to fix
                typer.echo(scrub(f"error: {e}"), err=True)
                raise typer.Exit(2) from None
            _fail(e, debugging())
        except Exception as e:  # noqa: BLE001 - the one place that turns failures into one line
            _fail(e, debugging())

    return wrapper


def _fail(e: BaseException, debug: bool) -> None:
    """Print a failure as one line (the run that failed, if any) and exit 1; re-raise with --debug."""
    from lmbench.errors import failed_run_of, one_line
    from lmbench.secrets import scrub

    if debug:
        raise e
    run_id = failed_run_of(e)
    where = f"run {run_id} FAILED: " if run_id else ""
    typer.echo(scrub(f"error: {where}{one_line(e)}") + "  (--debug shows the traceback)", err=True)
    raise typer.Exit(1) from None


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    from lmbench import logs

    logs.setup(logging.WARNING if quiet else logging.INFO, RichHandler(show_path=False, show_time=False))


ModelsOpt = Annotated[str | None, typer.Option("--models", help="Comma-separated architectures, e.g. rnn,lstm,gru.")]
TrialsOpt = Annotated[int | None, typer.Option("--trials", help="Total Optuna trials per model (re-runs continue).")]
SeedsOpt = Annotated[int | None, typer.Option("--seeds", help="Final runs per model/value, same seeds for all.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Processes sharing each study on this machine "
                                                "(0: create the studies and wait for `lmbench worker`s).")]
DevicesOpt = Annotated[str | None, typer.Option("--devices", help="cuda:0,cuda:1 | all | cpu, round-robin over workers.")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage", envvar="LMBENCH_STORAGE",
    help="Optuna storage URL (default: a journal file in studies/); a password in it is used, never stored "
         "(or leave it out: libpq reads PGPASSWORD / ~/.pgpass).")]


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())




# the commands register themselves on ``app`` (imported last: they use the options above)
from lmbench.cli import experiments, fleet, info  # noqa: E402, F401  isort: skip
