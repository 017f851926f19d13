"""search_efficiency: TPE + Hyperband vs grid search on the same space (gru, synthetic corpus).

Grid search trains every point of a 3x3x3 grid (lr x dropout x d_model) with the full per-trial
budget. TPE + Hyperband then runs one trial at a time (the same study continued with --trials k+1)
until its best validation loss is within 2% of grid's best. Reported: the fraction of grid's
training tokens that TPE needed (target <= 30%). Tokens are counted from every trial's MLflow
`tokens_seen`, pruned trials included.
"""

from __future__ import annotations

import common

TARGET = 0.30
SPACE = {"lr": "{float: [0.001, 0.03], log: true}", "dropout": "{float: [0.0, 0.3]}",
         "d_model": "{categorical: [32, 64, 128]}", "d_embed": "{categorical: [64]}",
         "n_layers": "{categorical: [1]}", "tie_weights": "{categorical: [false]}",
         "weight_decay": "{categorical: [0.01]}"}


def spec_for(name: str, sampler: str, pruner: str, trials: int, smoke: bool):
    from lmbench.spec import build_spec

    tokens = 20_000 if smoke else 100_000
    overrides = [f"name={name}", "model.arch=gru", "model.preset=small", f"train.budget={{tokens: {tokens}}}",
                 "train.batch_size=32", "data.seq_len=32", "train.eval_interval=10", "train.eval_tokens=4000",
                 "train.device=cpu", "search.budget=null", f"search.sampler={sampler}", f"search.pruner={pruner}", f"search.trials={trials}",
                 "data.size=100000" if smoke else "data.size=400000"]
    overrides += [f"search.space.gru.{k}={v}" for k, v in SPACE.items()]
    return build_spec({}, overrides)


def tokens_of(experiment: str) -> float:
    """Training tokens of every trial run of the experiment (pruned ones count what they used)."""
    from mlflow import MlflowClient

    from lmbench.tracking import resolve_uri

    c = MlflowClient(resolve_uri(None))
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial'", max_results=1000)
    return sum(max(m.value for m in c.get_metric_history(r.info.run_id, "tokens_seen")) for r in runs)


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    from lmbench.experiments import tune

    grid_spec = spec_for("grid", "grid", "none", 27, args.smoke)
    grid = tune(grid_spec, "gru", quiet=True)
    grid_best, grid_tokens = grid["best_value"], tokens_of("grid")
    common.say(f"grid: best {grid_best:.4f} with {grid_tokens:,.0f} tokens over {len(grid['study'].trials)} trials")
    goal = grid_best * 1.02
    tpe_best, k = float("inf"), 0
    while tpe_best > goal and k < 27:
        k += 1
        tpe_best = tune(spec_for("tpe", "tpe", "hyperband", k, args.smoke), "gru", quiet=True)["best_value"]
        common.say(f"tpe: {k} trials, best {tpe_best:.4f} (goal {goal:.4f})")
    tpe_tokens = tokens_of("tpe")
    frac = tpe_tokens / grid_tokens
    reached = tpe_best <= goal
    common.emit(common.result(
        "search_efficiency", value=frac, unit="fraction of grid tokens", target=f"<= {TARGET:.0%}",
        passed=None if args.smoke else (reached and frac <= TARGET),
        summary=f"TPE+Hyperband reached {tpe_best:.4f} (grid best {grid_best:.4f}) in {k} trials with "
                f"{frac:.0%} of grid's tokens" + ("" if reached else " — never within 2%"),
        details={"grid_best": grid_best, "grid_tokens": grid_tokens, "tpe_best": tpe_best, "tpe_tokens": tpe_tokens,
                 "tpe_trials": k, "reached": reached, "space": SPACE}, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
