"""The MLflow run schema: every tag, param prefix and metric name lmbench writes, defined once.

``docs/architecture.md`` (section "Run schema") says what each one means. Everything that writes
or searches runs (training, trials, the run tree, liveness, the report) uses these names.
"""

from __future__ import annotations

# -- the run tree --------------------------------------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a run under this parent
SOURCE_NAME = "mlflow.source.name"
# roots compare | ablate | tune | scale; then model | value | budget; trial | final | point; train
KIND = "lmbench.kind"
MODEL = "lmbench.model"  # the architecture of a run (also of model, tune and ablate roots)
LEGACY_MODEL = "lmbench.arch"  # what training runs were tagged with before 0.2: read, never written
ROOT_KEY = "lmbench.root_key"  # identity of a command's root run (see experiments.runtree.root_key)
STAGE = "stage"  # search (a trial) | final (a seed run) | scale (a point of a scale sweep)
SEED = "seed"
ABLATE_VALUE = "ablate.value"  # "baseline" or "<param>=<value>"
BEST_PARAMS = "best_params"  # JSON of the best trial's params (model and tune runs)
BEST_MODEL = "best_model"  # compare roots

# -- scale sweeps: root (scale) -> model -> budget (kind=budget) -> point runs (kind=point) -----
SCALE_STAGE = "scale"  # the stage of a point run
SCALE_COMPUTE = "scale.compute"  # a budget's (and its points') compute C in training FLOPs
SCALE_TARGET = "scale.target_params"  # the non-embedding parameters a point's sizing aimed at
SCALE_TOKENS = "scale.tokens"  # D: the training tokens that spend C (= train.budget.tokens)
SCALE_FLOPS_PER_TOKEN = "scale.flops_per_token"  # the point model's own flops_per_token(seq_len)
SCALE_HPARAMS = "scale.hparams"  # model runs: JSON {"source": where they came from, "params"}
SCALE_POINTS_FINISHED = "scale.points_finished"  # budget runs: points whose run finished
SCALE_POINTS_FAILED = "scale.points_failed"  # budget runs: points that failed (reason on the run)

# -- provenance ----------------------------------------------------------------------------------
SPEC_HASH = "lmbench.spec_hash"
VERSION = "lmbench.version"
GIT_SHA = "lmbench.git_sha"
TORCH_VERSION = "torch.version"
PYTHON_VERSION = "python.version"
HOST = "host"
DEVICE = "device"
DEVICE_NAME = "device.name"
PRECISION = "precision"
WORKER_PID = "lmbench.worker_pid"

# -- liveness of a run: who writes it, and when it last said so ------------------------------------
PID = "lmbench.pid"  # the process writing the run (on host HOST)
PROCESS_START = "lmbench.process_start"  # that process's start time (epoch s): a reused pid is not it
HEARTBEAT = "lmbench.heartbeat"  # epoch seconds of the last sign of life, refreshed while the run is open

# -- how a run ended -----------------------------------------------------------------------------
FAILURE = "lmbench.failure"  # the reason a run FAILED or was KILLED by liveness
PROCESS_DIED = "process died"  # the failure of a run whose process is gone (tracking.alive)
STOP_REASON = "lmbench.stop_reason"  # budget | early_stopping | interrupted at step N
CHECKPOINT_DIR = "lmbench.checkpoint_dir"  # absolute path of the run's checkpoints on its machine

# -- Optuna trials -------------------------------------------------------------------------------
STUDY = "optuna.study"
TRIAL_NUMBER = "optuna.trial_number"
OPTUNA_STATE = "optuna_state"  # COMPLETE | PRUNED | FAIL
RETRY_OF = "optuna.retry_of"  # the trial number this one retries
RESUMED_FROM = "lmbench.resumed_from"  # the checkpoint a retry continued from ("" if none)

# -- params --------------------------------------------------------------------------------------
PARAM_COUNTS = "params."  # params.total, params.embedding, params.non_embedding
NON_EMBEDDING = "params.non_embedding"
VOCAB_ACTUAL = "data.vocab_size_actual"
# every other param is the flattened resolved spec: data.*, model.*, train.*, search.*, ...

# -- metrics -------------------------------------------------------------------------------------
# metrics of a final run that the results tables and the report show, in this order
METRICS = ["test_loss", "test_ppl", "test_accuracy", "test_bleu", "test_excess", "test_bits_per_token",
           "final_val_loss", "train_tokens_per_sec", "train_seconds", "final_val_bleu"]


def model_of(tags: dict[str, str]) -> str | None:
    """The architecture of a run, also of runs written before ``lmbench.arch`` became ``lmbench.model``."""
    return tags.get(MODEL) or tags.get(LEGACY_MODEL)
