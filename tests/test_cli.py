from __future__ import annotations

from pathlib import Path

import pytest

from encore import cli


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "usage: encore" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 1
    assert "usage: encore" in capsys.readouterr().out


def test_shared_sampler_choices_match_the_engine_and_the_settings() -> None:
    """``--sampler`` (eval, generate, bench) offers exactly the engine's solvers, without torch."""
    import typing

    from encore.commands import options
    from encore.config import Settings
    from encore.diffusion.sampling import SAMPLERS

    assert options.SAMPLERS == SAMPLERS
    assert typing.get_args(Settings.model_fields["sampler"].annotation) == SAMPLERS


def test_a_missing_corpus_folder_is_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"{tmp_path}/none"
    for argv in (["eval", "--corpus", missing], ["similarity", "eval", "--corpus", missing],
                 ["train", "base", "--corpus", missing, "--out", f"{tmp_path}/run"],
                 ["train", "similarity", "--corpus", missing, "--out", f"{tmp_path}/out"]):
        assert cli.main(argv) == 2
        assert f"corpus folder {missing} does not exist" in capsys.readouterr().err
