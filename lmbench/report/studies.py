"""The Optuna side of a report: where the studies are, their trials as frames, importances."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import pandas as pd

from lmbench.errors import SpecError
from lmbench.tuning.storage import default_storage_path, open_storage, study_name


@dataclass
class StudyView:
    """One Optuna study: its trials as a frame, parameter importances, or why they are absent."""

    model: str
    name: str
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    importances: dict[str, float] = field(default_factory=dict)
    note: str = ""  # why importances (or the whole study) are not shown


def find_storage(experiment: str, storage: str | None, stored_url: str | None, missing: list[str]):
    """The Optuna storage: --storage, else the runs' ``search.storage``, else the journal in studies/.

    A bad ``--storage`` is the user's to fix (SpecError, exit 2); a stored URL that no longer
    opens, or a missing journal, only becomes a note in ``missing`` (the report still renders).
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if storage:
        return open_storage(storage, experiment)
    if stored_url and stored_url != "None":
        try:
            return open_storage(stored_url, experiment)
        except SpecError as e:
            missing.append(f"Optuna storage {stored_url}: {e.reason}")
            return None
    path = default_storage_path(experiment)
    if not path.is_file():  # never create one: a report only reads
        missing.append(f"Optuna studies: {path} not found (run the report where the experiment ran, or "
                       "pass --storage)")
        return None
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def load_studies(storage, experiment: str, models: list[str], names: dict[str, str | None]) -> list[StudyView]:
    """Each model's study (named by its model run's ``optuna.study`` tag, else ``<experiment>/<model>``)."""
    import optuna

    if storage is None:
        return []
    out = []
    for arch in models:
        name = names.get(arch) or study_name(experiment, arch)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            out.append(StudyView(arch, name, note="study not found in the Optuna storage"))
            continue
        out.append(study_view(arch, study))
    return out


def study_view(arch: str, study) -> StudyView:
    """Trials as a frame (durations in seconds) and PED-ANOVA importances (Optuna's default evaluator)."""
    import optuna
    from optuna.trial import TrialState

    trials = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    # a study with metric names (val_loss) calls its value column value_<name>: the report reads "value"
    trials = trials.rename(columns={f"value_{name}": "value" for name in study.metric_names or []})
    if "duration" in trials:
        trials["duration"] = trials["duration"].dt.total_seconds()
    view = StudyView(arch, study.study_name, trials)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    if len(complete) < 2:
        view.note = f"not enough trials for parameter importances ({len(complete)} complete)"
        return view
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PED-ANOVA warns about small samples; the note says so
            view.importances = dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError) as e:  # the report must still render
        view.note = f"parameter importances unavailable: {e}"
    if view.importances and len(complete) < 10:
        view.note = f"importances from only {len(complete)} complete trials: a rough guide"
    return view
