"""``encore taste``: clear errors on an installation with nothing to learn, figures when
there is."""

from __future__ import annotations

import pytest

from encore import cli


@pytest.fixture
def fresh_install(tmp_path, env_settings):
    env_settings(ENCORE_DATA_DIR=str(tmp_path / "var"), ENCORE_ENVIRONMENT="test")
    return tmp_path


def test_fit_and_eval_say_there_is_nothing_to_learn(fresh_install, capsys) -> None:
    assert cli.main(["taste", "fit"]) == 2
    assert "no rating with analysed audio yet" in capsys.readouterr().err
    assert cli.main(["taste", "eval"]) == 2
    assert "too few ratings to evaluate (0 usable)" in capsys.readouterr().err
    assert cli.main(["taste", "listeners"]) == 0
    assert "no taste model yet" in capsys.readouterr().out


def test_bench_times_a_fit_and_refuses_nonsense(capsys) -> None:
    assert cli.main(["taste", "bench", "--ratings", "200", "--listeners", "5"]) == 0
    assert "taste model fit on 200 ratings of 5 listeners" in capsys.readouterr().out
    assert cli.main(["taste", "bench", "--ratings", "3"]) == 2
    assert "--ratings must be >= 10" in capsys.readouterr().err
