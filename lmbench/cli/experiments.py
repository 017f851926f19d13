"""Commands that train and compare: train, compare, ablate, tune, scale, run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmbench.cli import (
    DataOpt,
    DeviceOpt,
    DevicesOpt,
    ModelOpt,
    ModelsOpt,
    QuickOpt,
    QuietOpt,
    SeedOpt,
    SeedsOpt,
    SetOpt,
    SpecArg,
    StorageOpt,
    TrialsOpt,
    UriOpt,
    WorkersOpt,
    _setup_logging,
    app,
    user_errors,
)


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
                                                "1e12,3e12,1e13 (default: 1.5e10,3e10,6e10).")] = None,
    sizes: Annotated[int | None, typer.Option("--sizes", help="Model sizes per budget (>= 3; default 3).")] = None,
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
