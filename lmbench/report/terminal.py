"""Results for the terminal: one run's scores, a comparison or ablation table, the registry."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lmbench.models import describe_archs
from lmbench.stats.format import Column, fit_tables, render_tables


def print_tables(tables: list[Table]) -> None:
    """Tables at the terminal's width (80 columns when piped): :func:`fit_tables` made them fit."""
    console = Console()
    for table in tables:
        console.print(table)


def print_run(result) -> None:
    """A finished run: its val and test scores, size and checkpoint folder."""
    title = (f"run {result.run_id}  ({result.stop_reason}, {result.steps} steps, {result.tokens:,} tokens, "
             f"{result.seconds:.1f}s, {result.tokens_per_sec:,.0f} tok/s)")
    cols = {"loss": "loss", "ppl": "ppl", "accuracy": "acc", "bits_per_token": "bits/tok",
            "bits_per_char": "bits/char", "floor": "floor", "excess": "excess", "bleu": "BLEU"}
    present = [c for c in cols if f"test_{c}" in result.final]
    rows = [[split, *[f"{result.final[f'{prefix}_{c}']:.4f}" for c in present]]
            for split, prefix in (("val", "final_val"), ("test", "test"))]
    print_tables(fit_tables(title, [Column("split")], [Column(cols[c], "right") for c in present], rows,
                            Console().width))
    p = result.num_params
    print(f"params: {p['non_embedding']:,} non-embedding, {p['embedding']:,} embedding; "
          f"checkpoints: {result.checkpoint_dir}")


def print_results(result, kind: str) -> None:
    """The table of a compare or ablate, with where its files and runs are."""
    table = result["table"]
    if kind == "compare":
        title = "compare: mean ± 95% CI over seeds (t), paired t-test vs the best (★)"
        cols = [("test_loss", "test loss"), ("test_ppl", "ppl"), ("test_accuracy", "acc"), ("test_excess", "excess"),
                ("test_bleu", "BLEU"), ("params_non_embedding", "params"), ("train_tokens_per_sec", "tok/s"), ("train_seconds", "train s"),
                ("delta_vs_best", "Δ vs best"), ("p_vs_best", "p"), ("still_improving", "still improving")]
    else:
        title = "ablate: mean ± 95% CI over seeds (t), delta and paired t-test vs the baseline"
        cols = [("param", "param"), ("value", "value"), ("test_loss", "test loss"), ("test_ppl", "ppl"),
                ("test_accuracy", "acc"), ("delta", "Δ vs baseline"), ("p", "p")]
    cols = [(k, h) for k, h in cols if k in table.columns or f"{k}_mean" in table.columns]
    print_tables(render_tables(table, title, cols, Console().width))
    for line in result.get("notes", []):  # budgets chosen, adequacy verdicts (lmbench.stats.adequacy)
        print(line)
    print(f"results: {result['path']} (and .json)")
    print(f"MLflow root run: {result['root_run_id']}")
    if result.get("report"):
        print(f"report: {result['report']}")


def print_models() -> None:
    """Every architecture with its parameters, defaults and size presets, its training recipe and
    the batch order ``data.order: auto`` gives it."""
    width = Console().width
    for arch in describe_archs():
        presets = arch["presets"]
        rows = [[f["name"], f["type"], str(f["default"]), *[str(presets[p].get(f["name"], "")) for p in presets]]
                for f in arch["fields"]]
        columns = [Column("type"), Column("default"), *[Column(f"preset {p}") for p in presets]]
        tables = fit_tables(f"{arch['name']}: {arch['description']}", [Column("parameter")], columns, rows, width)
        for table in tables:
            table.title_justify = "left"
        print_tables(tables)
        order = "contiguous streams, state carried (stateful)" if arch["stateful"] else "random windows (stateless)"
        Console().print(f"recipe: {arch['recipe']}\nbatch order (data.order: auto): {order}\n", highlight=False,
                        markup=False)


def print_status(status) -> None:
    """``lmbench status``: per model trials and seeds, the running trials, an ETA
    (``status``: :class:`lmbench.experiments.status.ExperimentStatus`)."""
    width = Console().width
    state = "finished" if status.finished else "in progress"
    rows = []
    for m in status.models:
        c = m.counts
        running = str(c.get("running", 0)) + (f" +{c['waiting']} queued" if c.get("waiting") else "")
        rows.append([m.model, f"{c.get('done', 0)}/{m.total}" if m.total else "–",
                     *[str(c.get(k, 0)) for k in ("complete", "pruned", "failed")], running,
                     f"{m.best:.4f}" if m.best is not None else "–",
                     f"{m.seeds_done}/{m.seeds_total}" if m.seeds_total else "–"])
    heads = [Column("trials", "right"), Column("complete", "right"), Column("pruned", "right"),
             Column("failed", "right"), Column("running", "right"), Column("best", "right"),
             Column("seeds", "right")]
    title = f"{status.name}: {state} (trials: counted/total; best: lowest val_loss; seeds: final runs)"
    print_tables(fit_tables(title, [Column("model")], heads, rows, width))
    if status.running:
        live = [[r.model, r.number, r.host, r.pid, r.device,
                 f"{r.heartbeat_age:.0f} s ago" if r.heartbeat_age is not None else "–"] for r in status.running]
        heads = [Column("trial", "right"), Column("host"), Column("pid", "right"), Column("device"),
                 Column("heartbeat", "right")]
        print_tables(fit_tables("running trials", [Column("model")], heads, live, width))
    for note in status.notes:
        print(f"note: {note}")
    if not status.finished:
        eta = status.eta_seconds()
        print(f"ETA: {_duration(eta)} ({status.workers} worker(s) on the trials)" if eta is not None
              else "ETA: unknown until a trial has finished")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
