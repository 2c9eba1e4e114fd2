"""MLflow conventions shared by every stage, against a real SQLite store."""

from __future__ import annotations

import threading

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from maforecast import tracking


def test_same_dataset_logged_by_concurrent_runs(data_home):
    """Runs that log the same data at once all link it, and the store keeps one dataset row.

    MLflow checks for the dataset and inserts it in one transaction, so concurrent runs race on
    the unique constraint (CI hit this with two `maforecast train` processes); the helper retries.
    """
    client = tracking.configure()
    exp = tracking.experiment_id("predictor")
    runs = [client.create_run(exp).info.run_id for _ in range(8)]
    frame = pd.DataFrame({"layer": range(20), "ratio": [float(i) for i in range(20)]})
    barrier = threading.Barrier(len(runs))
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        data = mlflow.data.from_pandas(frame, name="rows")
        barrier.wait()
        try:
            tracking.log_dataset(data, context="training", tags={"digest": "abc"}, run_id=run_id, client=client)
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    for run_id in runs:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        tags = {t.key: t.value for t in inputs[0].tags}
        assert tags == {"mlflow.data.context": "training", "digest": "abc"}
    digests = {client.get_run(r).inputs.dataset_inputs[0].dataset.digest for r in runs}
    assert len(digests) == 1


def test_other_store_errors_are_not_retried(data_home):
    """Only the insert race is retried: a missing run fails at once with MLflow's own error."""
    tracking.configure()
    data = mlflow.data.from_pandas(pd.DataFrame({"a": [1]}), name="rows")
    with pytest.raises(MlflowException, match="(?i)run"):
        tracking.log_dataset(data, context="training", run_id="0" * 32, attempts=3)
