"""Bad input to the single-run CLI: one line on stderr, exit code 2, nothing written."""
import pytest

from results.cli import run_cli
from results.errors import UsageError
from tune.train_one import main


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, list(argv))
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


@pytest.mark.parametrize("argv, expected", [
    (["--dataset", "GunPiont"], "GunPoint"),
    (["--ssl-method", "simclr"], "unknown ssl_method 'simclr'"),
    (["--ssl-method", "barlowtwins", "--aug-set", "twist"], "twist"),
    (["--set", "tokenizer.codebok_size=3"], "unknown config key"),
    (["--set", "oops"], "--set expects KEY=VALUE"),
    (["--epochs", "0"], "at least 1"),
    (["--ucr-root", "/nonexistent/archive"], "/nonexistent/archive"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, expected):
    out = tmp_path / "final.json"
    code, err = _run(capsys, *argv, "--json", str(out))
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not out.exists()


def test_unwritable_json_fails_before_training(capsys, tmp_path):
    code, err = _run(capsys, "--dataset", "ItalyPowerDemand", "--json", str(tmp_path / "no-such-dir" / "m.json"))
    assert code == 2 and err.startswith("error: cannot write --json") and "\n" not in err
    assert "epoch" not in capsys.readouterr().out


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    """Only the project's own usage / config / data errors become one line: a bug stays a traceback."""
    def buggy(argv):
        raise ValueError("a genuine bug")
    with pytest.raises(ValueError, match="a genuine bug"):
        run_cli(buggy, [])
    monkeypatch.setenv("SSL_VQVAE_DEBUG", "1")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda argv: 0, [])
    assert exit_info.value.code == 0
    with pytest.raises(UsageError):                     # with the debug switch the expected error shows in full
        run_cli(lambda argv: (_ for _ in ()).throw(UsageError("bad flag")), [])


def test_single_run_trains_and_writes_the_summary(capsys, tmp_path):
    out = tmp_path / "final.json"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--dataset", "ItalyPowerDemand", "--ssl-method", "vibcreg", "--aug-set", "gauss",
                       "--epochs", "2", "--eval-every", "1", "--set", "proj_dim=64", "--json", str(out)])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "epoch    1/2" in printed and "test svm" in printed
    assert out.exists()
