"""``encore train base`` and ``encore eval``: argument errors are one clear line."""

from __future__ import annotations

import pytest

from encore.cli import main


def test_train_base_names_a_missing_corpus(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["train", "base", "--corpus", str(missing), "--out", str(tmp_path / "run"),
                 "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_train_base_rejects_steps_together_with_minutes(tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "base", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"),
              "--steps", "5", "--minutes", "3"])


def test_eval_names_a_missing_corpus(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-corpus"
    assert main(["eval", "--model", str(tmp_path), "--corpus", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_eval_rejects_tiny_sets(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--model", str(tmp_path), "--corpus", str(tmp_path), "--n", "2"]) == 2
    assert "--n 2" in capsys.readouterr().err


def test_train_base_refuses_init_together_with_resume(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "base", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--init", str(tmp_path), "--resume", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--init" in err and "--resume" in err


def test_train_base_names_a_missing_init_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-model"
    assert main(["train", "base", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--init", str(missing), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
