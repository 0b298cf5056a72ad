from __future__ import annotations

import io
import threading

import pytest

from airflow_aml.progress import PROGRESS_THRESHOLD_BYTES, progress_wanted, transfer_progress

BIG = PROGRESS_THRESHOLD_BYTES + 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AML_PROGRESS", raising=False)


def test_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_wanted(BIG, True)
    assert not progress_wanted(BIG, False)  # the caller did not ask
    assert not progress_wanted(PROGRESS_THRESHOLD_BYTES, True)  # too small to be worth a bar
    assert progress_wanted(10, True, min_bytes=5)
    monkeypatch.setenv("AML_PROGRESS", "0")
    assert not progress_wanted(BIG, True)


def test_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_wanted(BIG, True)
    monkeypatch.setenv("AML_PROGRESS", "1")
    assert progress_wanted(BIG, True)
    assert not progress_wanted(BIG, False)  # forcing never overrides the caller
    monkeypatch.setattr("sys.stderr", None)  # pythonw: no stderr at all
    monkeypatch.delenv("AML_PROGRESS")
    assert not progress_wanted(BIG, True)


def test_bar_goes_to_stderr_when_forced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AML_PROGRESS", "1")
    with transfer_progress("Uploading model.pkl", BIG, True) as advance:
        advance(BIG // 2)
        advance(BIG - BIG // 2)
    captured = capsys.readouterr()
    assert "Uploading model.pkl" in captured.err
    assert "MiB" in captured.err  # sizes in binary units
    assert captured.out == ""


def test_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with transfer_progress("Downloading", BIG, True) as advance:
        advance(BIG)
    assert "Downloading" in terminal.getvalue()


@pytest.mark.parametrize(("setting", "enabled", "total"), [("0", True, BIG), ("1", False, BIG), ("1", True, 100)])
def test_no_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], setting: str, enabled: bool, total: int
) -> None:
    monkeypatch.setenv("AML_PROGRESS", setting)
    with transfer_progress("Quiet", total, enabled) as advance:
        advance(total)  # always callable
    assert capsys.readouterr().err == ""


def test_advance_from_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AML_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with transfer_progress("Parallel", BIG, True) as advance:
        threads = [threading.Thread(target=advance, args=(BIG // 4,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
