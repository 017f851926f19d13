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
    """Train one model, evaluate it on val and test, and record everything in MLflow.

    Settings the spec leaves to their defaults come from the architecture's recipe (`lmbench
    models`); on a named or user corpus an unset budget is one epoch (printed with its reason)."""
    from lmbench.config import load_spec, options
    from lmbench.errors import SpecError
    from lmbench.experiments.single import resume_training, run_training
    from lmbench.report.terminal import print_run

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
        overrides = options.overrides(quick, set_, model=model, data=data, seed=seed, device=device,
                                      tracking_uri=tracking_uri, steps=steps, tokens=tokens)
        result = run_training(load_spec(spec, overrides), quiet=quiet)
    print_run(result)


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


@app.command()
@user_errors
def compare(
    spec: SpecArg = None,
    models_: ModelsOpt = None,
    trials: TrialsOpt = None,
    seeds: SeedsOpt = None,
    match_params: Annotated[int | None, typer.Option("--match-params", help="Size every model to N non-embedding params.")] = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    storage: StorageOpt = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
    quick: QuickOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Tune every model with the same budget, retrain each best config with K seeds, compare them.

    Each architecture is trained and tuned with its own recipe (optimizer, lr range, warmup, clipping,
    schedule; `lmbench models`) wherever the spec sets nothing; unset budgets scale with a named or
    user corpus. Ends with adequacy verdicts: did each search level off, did the final runs converge,
    and what difference could the seeds detect (80% power, alpha 0.05)."""
    from lmbench.config import load_spec, options
    from lmbench.experiments.compare import compare as run_compare
    from lmbench.report.terminal import print_results

    _setup_logging(quiet)
    extra = options.models_override(models_) + options.section_overrides("compare", seeds=seeds,
                                                                           match_params=match_params)
    overrides = options.overrides(quick, [*extra, *(set_ or [])], data=data, tracking_uri=tracking_uri,
                                  trials=trials, workers=workers, devices=devices, storage=storage)
    result = run_compare(load_spec(spec, overrides), quiet=quiet)
    print_results(result, "compare")


@app.command()
@user_errors
def ablate(
    spec: SpecArg = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Parameter to sweep (repeatable): dropout, lr, n_layers, optimizer, order (data.order), schedule, ...")] = None,
    values: Annotated[list[str] | None, typer.Option("--values", help="v1,v2,... for a single --param, or NAME=v1,v2 (repeatable).")] = None,
    model: ModelOpt = None,
    seeds: SeedsOpt = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="spec (the spec's config) | best (best trial of the model's study).")] = None,
    storage: StorageOpt = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
    quick: QuickOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """One-factor-at-a-time ablation around a baseline, every value with the baseline's seeds.

    Another optimizer starts from its recipe's learning rate; the output states the smallest
    difference the seeds could detect."""
    from lmbench.config import load_spec, options
    from lmbench.experiments.ablate import ablate as run_ablate
    from lmbench.report.terminal import print_results

    _setup_logging(quiet)
    extra = options.ablate_overrides(param, values)
    extra += options.section_overrides("ablate", seeds=seeds, baseline=baseline, model=model)
    overrides = options.overrides(quick, [*extra, *(set_ or [])], data=data, tracking_uri=tracking_uri,
                                  storage=storage)
    result = run_ablate(load_spec(spec, overrides), quiet=quiet)
    print_results(result, "ablate")


@app.command()
@user_errors
def tune(
    spec: SpecArg = None,
    model: ModelOpt = None,
    trials: TrialsOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    storage: StorageOpt = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
    quick: QuickOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run one model's Optuna study to its total and print the best trial."""
    from lmbench.config import load_spec, options
    from lmbench.experiments.compare import tune as run_tune

    _setup_logging(quiet)
    overrides = options.overrides(quick, set_, model=model, data=data, tracking_uri=tracking_uri,
                                  trials=trials, workers=workers, devices=devices, storage=storage)
    s = load_spec(spec, overrides)
    result = run_tune(s, s.model.arch, quiet=quiet)
    typer.echo(f"best val loss {result['best_value']:.4f} with {result['best_params']}")


@app.command()
@user_errors
def scale(
    spec: SpecArg = None,
    models_: ModelsOpt = None,
    compute: Annotated[str | None, typer.Option("--compute", help="Compute budgets in training FLOPs, e.g. "
                                                "1e12,3e12,1e13 (default: 1e10,2e10,4e10).")] = None,
    sizes: Annotated[int | None, typer.Option("--sizes", help="Model sizes per budget (>= 3; default 4).")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Runs per size and budget (default 2).")] = None,
    ratio: Annotated[float | None, typer.Option("--ratio", help="Size ratio of neighbouring sizes (default 2).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Hyperparameters from the best trials of this "
                                              "experiment's studies (a compare); default: each "
                                              "architecture's recipe under the spec.")] = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    storage: StorageOpt = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
    quick: QuickOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare architectures by how they scale with compute: IsoFLOP ladders of sizes per budget,
    each run on the tokens that spend the budget exactly, then N*(C), L*(C) and crossovers."""
    from lmbench.config import load_spec, options
    from lmbench.experiments.scale import scale as run_scale
    from lmbench.report.scaling_text import print_scale

    _setup_logging(quiet)
    extra = options.scale_overrides(quick, models_, compute, sizes=sizes, seeds=seeds, ratio=ratio,
                                    **{"from": from_})
    overrides = options.overrides(quick, [*extra, *(set_ or [])], data=data, tracking_uri=tracking_uri,
                                  workers=workers, devices=devices, storage=storage)
    print_scale(run_scale(load_spec(spec, overrides), quiet=quiet))


@app.command("run")
@user_errors
def run_spec(
    spec: Annotated[Path, typer.Argument(help="Experiment spec; its `kind` says what to run.")],
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run whatever the spec's kind says (train | tune | compare | ablate | scale) with the spec's settings."""
    from lmbench import experiments
    from lmbench.config import load_spec
    from lmbench.report.terminal import print_results, print_run

    _setup_logging(quiet)
    s = load_spec(spec, set_)
    if s.kind == "train":
        print_run(experiments.run_training(s, quiet=quiet))
    elif s.kind == "tune":
        result = experiments.tune(s, s.model.arch, quiet=quiet)
        typer.echo(f"best val loss {result['best_value']:.4f} with {result['best_params']}")
    elif s.kind == "scale":
        from lmbench.report.scaling_text import print_scale

        print_scale(experiments.scale(s, quiet=quiet))
    else:
        print_results(getattr(experiments, s.kind)(s, quiet=quiet), s.kind)


@app.command()
@user_errors
def worker(
    spec: Annotated[Path | None, typer.Argument(help="Spec to use instead of the one the experiment stored.")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment whose studies to join (default: the spec's).")] = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    devices: DevicesOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes (default: one per device).")] = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Stop after this many trials.")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the experiment's studies to appear.")] = 600.0,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Join an experiment's studies (e.g. from another machine) and run trials until they are done."""
    from lmbench.errors import SpecError
    from lmbench.signals import TERMINATED_EXIT, Terminated
    from lmbench.tuning.workers import join

    _setup_logging(quiet)
    for name, value in (("--workers", workers), ("--max-trials", max_trials)):
        if value is not None and value < 1:
            raise SpecError(name, f"must be at least 1, got {value}")
    spec_raw = None
    if spec is not None:
        from lmbench.config import dump_raw, load_spec

        loaded = load_spec(spec, set_)
        experiment, spec_raw = experiment or loaded.experiment_name, dump_raw(loaded)
    if not experiment:
        raise SpecError("--experiment", "name the experiment to join (or give its spec)")
    try:
        codes = join(experiment, storage, tracking_uri=tracking_uri, devices=devices, workers=workers,
                     max_trials=max_trials, overrides=[] if spec_raw else list(set_ or []), spec_raw=spec_raw,
                     wait_s=wait)
    except Terminated:
        typer.echo("worker stopped by SIGTERM; its trial is queued for retry", err=True)
        raise typer.Exit(TERMINATED_EXIT) from None
    if any(codes):
        typer.echo(f"error: worker exit codes {codes}", err=True)
        raise typer.Exit(TERMINATED_EXIT if TERMINATED_EXIT in codes else 1)


@app.command()
@user_errors
def server(
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 lets other machines in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 5000,
    backend_store_uri: Annotated[str, typer.Option("--backend-store-uri", help="Where runs are stored: sqlite:///... or postgresql://...")] = "sqlite:///mlflow.db",
    artifacts_destination: Annotated[str, typer.Option("--artifacts-destination", help="Folder (or URI) for artifacts, served through the server.")] = "mlartifacts",
    workers: Annotated[int, typer.Option("--workers", help="Server processes.")] = 4,
    auth: Annotated[bool, typer.Option("--auth", help="MLflow's basic-auth app: every request needs a user and "
                                       "password (workers: MLFLOW_TRACKING_USERNAME / _PASSWORD).")] = False,
    admin: Annotated[str, typer.Option("--admin", help="--auth: the admin user, created on the first start.")] = "admin",
    admin_password_file: Annotated[Path | None, typer.Option(
        "--admin-password-file", help="--auth: a file whose first line is the admin's password "
        "(default: $LMBENCH_ADMIN_PASSWORD; never on the command line).")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without --auth "
                                           "(anyone who reaches the port can read and change every run).")] = False,
) -> None:
    """Start an MLflow tracking server for lmbench workers: runs and (proxied) artifacts.

    A --host other than loopback needs --auth (or --insecure on a trusted network)."""
    from lmbench.tracking.server import admin_password, check_exposure, server_command, server_env

    check_exposure(host, auth, insecure)
    password = admin_password(admin_password_file) if auth else None
    store = backend_store_uri.removeprefix("sqlite:///")
    folder = Path(store).resolve().parent if backend_store_uri.startswith("sqlite:///") else Path.cwd()
    env = server_env(backend_store_uri, folder if auth else None, admin, password)
    cmd = server_command(host, port, backend_store_uri, artifacts_destination, workers, auth=auth)
    typer.echo(" ".join(cmd), err=True)  # no password in it: the store's and the admin's are in env
    os.execve(cmd[0], cmd, env)  # the server replaces this process: signals and exit code are its own


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
    from lmbench.report import build_report
    from lmbench.tracking.tracker import reap_store

    reap_store(tracking_uri)  # runs of processes that died show as KILLED, not RUNNING
    path = build_report(experiment, tracking_uri=tracking_uri, storage=storage, out=out, fmt=format_)
    typer.echo(f"report: {path}")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command()
@user_errors
def status(
    experiment: Annotated[str, typer.Argument(help="Experiment (the spec's name or tracking.experiment).")],
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the experiment is finished (Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="--watch: seconds between refreshes.")] = 5.0,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Where an experiment stands: trials, running trials, final seeds and an ETA, from its stores.

    Per model: trials counted/total, complete, pruned, failed, running; the best val_loss so far
    and the final seed runs done. Every running trial with its host, pid, device and heartbeat age.
    """
    import time

    from rich.console import Console

    from lmbench.experiments.status import experiment_status
    from lmbench.report.terminal import print_status

    while True:
        current = experiment_status(experiment, storage=storage, tracking_uri=tracking_uri)
        if watch:
            Console().clear()
        print_status(current)
        if not watch or current.finished:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@app.command()
@user_errors
def ui(
    port: Annotated[int, typer.Option("--port", help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default loopback; others warn).")] = "127.0.0.1",
    tracking_uri: UriOpt = None,
) -> None:
    """Browse the runs in the MLflow UI on the project's tracking store, until Ctrl-C.

    Prints the runs page of the experiment with the newest run; binds loopback by default."""
    from lmbench.tracking.ui import serve

    code = serve(host, port, tracking_uri, echo=lambda line: typer.echo(line, err=line.startswith("warning")))
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
