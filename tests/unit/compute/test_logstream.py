from __future__ import annotations

import os
import time

from airflow_aml.compute.logstream import LogBatcher, Tail, pump, split_utf8
from tests.unit.compute.fakes import FakeStore


def test_small_writes_are_batched_and_sent_within_the_delay() -> None:
    store = FakeStore()
    batcher = LogBatcher(store, "r", max_delay=0.3)
    try:
        for i in range(50):
            batcher.write("stdout", f"line {i}\n")
        assert store.chunks == []  # nothing sent per line
        deadline = time.monotonic() + 3
        while not store.chunks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(store.chunks) == 1
        assert store.chunks[0].text.count("\n") == 50
    finally:
        batcher.close()


def test_large_output_is_sent_in_chunks_of_at_most_max_bytes() -> None:
    store = FakeStore()
    batcher = LogBatcher(store, "r", max_bytes=1000, max_delay=60)
    batcher.write("stderr", "x" * 2500)
    batcher.close()
    assert [len(c.text) for c in store.chunks] == [1000, 1000, 500]
    assert all(c.stream == "stderr" for c in store.chunks)


def test_streams_are_kept_apart_and_close_flushes() -> None:
    store = FakeStore()
    batcher = LogBatcher(store, "r", max_delay=60)
    batcher.write("stdout", "out\n")
    batcher.line("control", "Starting script")
    batcher.write("stderr", "err\n")
    batcher.close()
    assert store.text("stdout") == "out\n"
    assert store.text("stderr") == "err\n"
    assert store.text("control") == "Starting script\n"


def test_mirror_gets_script_output_but_not_control(tmp_path) -> None:
    store = FakeStore()
    with open(tmp_path / "driver.txt", "w") as mirror:
        batcher = LogBatcher(store, "r", mirror=mirror)
        batcher.write("stdout", "a\n")
        batcher.line("control", "c")
        batcher.write("stderr", "b\n")
        batcher.set_mirror(None)
        batcher.close()
    assert (tmp_path / "driver.txt").read_text() == "a\nb\n"


def test_failing_store_does_not_raise(caplog) -> None:
    class Broken(FakeStore):
        def append_log(self, run_id: str, stream: str, text: str) -> None:
            raise OSError("database is locked")

    batcher = LogBatcher(Broken(), "r", max_delay=60)
    batcher.write("stdout", "lost\n")
    batcher.close()
    assert "Dropped 5 characters of stdout log of run r" in caplog.text


def test_split_utf8_respects_bytes_and_prefers_line_ends() -> None:
    text = "é" * 10  # 2 bytes each
    assert [len(p.encode()) for p in split_utf8(text, 7)] == [6, 6, 6, 2]
    assert split_utf8("aaaa\nbbbb\ncc", 8) == ["aaaa\n", "bbbb\ncc"]
    assert split_utf8("", 10) == []


def test_tail_keeps_last_lines() -> None:
    tail = Tail(max_lines=3)
    tail.feed("one\ntwo\nthr")
    tail.feed("ee\nfour\nfive")
    assert tail.lines() == ["three", "four", "five"]


def test_pump_decodes_split_utf8_sequences() -> None:
    store = FakeStore()
    batcher = LogBatcher(store, "r", max_delay=60)
    read_fd, write_fd = os.pipe()
    data = "héllo wörld\n".encode()
    os.write(write_fd, data[:2])  # cuts "é" in half
    os.write(write_fd, data[2:] + b"\xff\n")
    os.close(write_fd)
    tail = Tail()
    pump(read_fd, "stdout", batcher, tail)
    batcher.close()
    assert store.text("stdout") == "héllo wörld\n\ufffd\n"
    assert tail.lines() == ["héllo wörld", "\ufffd"]
