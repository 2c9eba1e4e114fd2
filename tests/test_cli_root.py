"""The ``maforecast`` root: a stage whose command module fails to import says so in one line."""

from __future__ import annotations

import sys

import pytest

from maforecast import cli


@pytest.fixture
def broken_fit(tmp_path, monkeypatch):
    """Register ``fit`` from a module whose import fails on a missing dependency."""
    (tmp_path / "broken_stage_cli.py").write_text("import no_such_dependency_xyz\n\nfit = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "fit", "broken_stage_cli:fit")
    yield
    sys.modules.pop("broken_stage_cli", None)


def _run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code, capsys.readouterr().err.strip()


def test_broken_import_is_reported_as_such(broken_fit, capsys):
    code, err = _run(["fit", "--no-mlflow"], capsys)
    assert code == 2
    assert "\n" not in err and "Traceback" not in err and "No such command" not in err
    assert err.startswith("error: command 'fit' is broken: importing broken_stage_cli failed: ModuleNotFoundError")
    assert "no_such_dependency_xyz" in err


def test_help_lists_a_broken_command_with_its_import_error(broken_fit, capsys):
    cli.main(["--help"])
    out = capsys.readouterr().out
    assert "fit (broken) importing broken_stage_cli failed: ModuleNotFoundError" in " ".join(out.split())
    assert any(ln.strip().startswith("collect ") for ln in out.splitlines())  # the others still listed


def test_missing_attribute_is_broken_not_unknown(tmp_path, monkeypatch, capsys):
    (tmp_path / "stage_without_cmd.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "fit", "stage_without_cmd:fit")
    code, err = _run(["fit"], capsys)
    assert code == 2 and "stage_without_cmd defines no 'fit'" in err
    sys.modules.pop("stage_without_cmd", None)


def test_unknown_command_is_still_no_such_command(capsys):
    code, err = _run(["no-such-cmd"], capsys)
    assert code == 2 and "No such command" in err


@pytest.mark.parametrize("var,value", [("MAFORECAST_RELOAD_S", "abc"), ("HF_HUB_OFFLINE", "maybe"),
                                       ("MAFORECAST_FORECAST_THREADS", "0")])
def test_a_setting_that_does_not_parse_is_one_line_naming_the_variable(var, value, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(tmp_path))
    monkeypatch.setenv(var, value)
    code, err = _run(["bootstrap"], capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"error: environment variable {var}={value!r}: ")


def test_help_shows_whole_short_help(capsys):
    """A summary is not cut at an abbreviation's period ("Fit the Eq.")."""
    cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "fit Fit the Eq. 9 emergence curve" in out
    assert "ui Open the MLflow UI" in out and "relog Register a version again" in out


def test_ui_on_a_tracking_server_points_at_its_own_ui(monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    r = CliRunner().invoke(cli.root, ["ui"])
    assert r.exit_code == 0 and "http://127.0.0.1:5999/#/models/maforecast-predictor" in r.output


@pytest.mark.slow
def test_ui_serves_the_configured_store(data_home, spawn):
    """`maforecast ui` runs MLflow's UI on the data home's store (not a hardcoded path)."""
    import os
    import sys

    from conftest import free_port, wait_http

    port = free_port()
    proc = spawn.start([sys.executable, "-m", "maforecast.cli", "ui", "--port", str(port)], "ui",
                       env={**os.environ, "MAFORECAST_DATA_HOME": str(data_home)})
    wait_http(f"http://127.0.0.1:{port}/health", 120, proc)
    log = spawn.log_tail(proc)
    assert str(data_home / "mlflow.db") in log and "/#/models/maforecast-predictor" in log, log
