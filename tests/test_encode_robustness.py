"""`turnspec encode` under hostile input and a hostile machine (issue 23, item 5), through the real command line.

One bad row is that row's error, never the end of the run, on one process or two, with or without --json: a line
nested 5000 deep, bytes that are not UTF-8 (never "repaired" into a good row), `"messages": "hello"`. A folder
that refuses the output and a full filesystem (a read-only and a tiny tmpfs, mounted in a user namespace) are one
line with the previous output intact; SIGTERM leaves no temporary file and no worker traceback, and exits 143.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_encode_data import write_dataset
from turnspec.training import TOO_DEEP

pytest.importorskip("pyarrow", reason="turnspec encode needs pyarrow: pip install 'turnspec[data]'")
import pyarrow.parquet as pq  # noqa: E402

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "turnspec.cli", "encode", *args]


def hostile_file(path: Path) -> dict[int, str]:
    """Good rows around bad ones; {line number: the error the report must give}."""
    good = json.dumps(GOOD).encode()
    lines = {
        2: (b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "JSON nested too deeply to parse (Python's recursion limit): flatten the row"),
        3: (good.replace(b"hello", b"caf\xe9"),
            f"not UTF-8 text (byte 0xe9 at column {good.index(b'hello') + 4}); save the file as UTF-8"),
        4: (b'{"messages": "hello"}', "messages must be a list of {role, content} objects, not a string ('hello')"),
        5: (b'{"messages": "{\\"role\\": \\"user\\"}"}',
            "messages must be a list of {role, content} objects, not a JSON dict string ('{\"role\": \"user\"}')"),
        6: (b'{"messages": {"role": "user", "content": "hi"}}',
            "messages must be a list of {role, content} objects, not dict"),
        7: (b'{"messages": ["hello"]}', "message 0 must be a {role, content} object, not a string"),
        8: (json.dumps({**GOOD, "tools": "not json"}).encode(),
            'tools must be a list of tool objects ({"type": "function", "function": {...}}), '
            "not a string ('not json')"),
        9: (b'{"messages": [{"role": "user", "content": ' + b"[" * 900 + b"]" * 900 + b"}]}",
            TOO_DEEP),
    }
    with path.open("wb") as f:
        for n in range(1, 12):
            f.write((lines[n][0] if n in lines else good) + b"\n")
    return {n: why for n, (_, why) in lines.items()}


@pytest.mark.slow
@pytest.mark.parametrize("procs", ["1", "2"])
def test_each_bad_row_is_its_own_error(smollm2_dir, tmp_path, procs):
    data = tmp_path / "hostile.jsonl"
    expected = hostile_file(data)
    out = tmp_path / "train.parquet"
    proc = subprocess.run(cli(str(data), "-o", str(out), "--model", str(smollm2_dir), "--num-proc", procs, "--json"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)["data"]
    assert {s["row"]: s["error"] for s in report["skipped"]} == expected
    assert report["rows_read"] == 11 and report["rows_written"] == 11 - len(expected)
    assert pq.read_table(out).column("row").to_pylist() == [n for n in range(1, 12) if n not in expected]


@pytest.mark.slow
def test_a_deep_row_of_a_json_file_on_two_processes(smollm2_dir, tmp_path):
    """A row the JSON parser still takes (960 levels) but that cannot be pickled to a worker: that row's error."""
    data = tmp_path / "chats.json"
    deep = '{"messages": [{"role": "user", "content": ' + "[" * 960 + "]" * 960 + "}]}"
    data.write_text(f"[{json.dumps(GOOD)}, {deep}, {json.dumps(GOOD)}]", encoding="utf-8")
    out = tmp_path / "train.parquet"
    proc = subprocess.run(cli(str(data), "-o", str(out), "--model", str(smollm2_dir), "--num-proc", "2", "--json"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)["data"]
    assert report["skipped"] == [{"row": 2, "error": TOO_DEEP}] and report["rows_written"] == 2


def test_a_json_file_nested_too_deep_is_one_line(smollm2_dir, tmp_path):
    data = tmp_path / "deep.json"
    data.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    proc = subprocess.run(cli(str(data), "-o", str(tmp_path / "t.parquet"), "--model", str(smollm2_dir)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"turnspec: error: {data}: nested too deeply for the JSON parser; as JSON "
                                        "Lines (.jsonl) such a row is only that row's error"]


# ------------------------------------------------------------------------------------------ the output's filesystem
def in_user_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """`script` (sh) as root of a new user and mount namespace, where it may mount a tmpfs of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small or read-only tmpfs without privileges")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("mount, reason", [
    ("mount -t tmpfs -o size=32k tmpfs out && echo previous > out/train.parquet",
     "no space left on the device"),
    ("mount -t tmpfs tmpfs out && echo previous > out/train.parquet && mount -o remount,ro out",
     "Read-only file system"),
], ids=["full", "read-only"])
def test_a_failed_write_is_one_line_and_keeps_the_previous_file(smollm2_dir, tmp_path, mount, reason):
    data = tmp_path / "chats.jsonl"
    write_dataset(data, 2000)
    (tmp_path / "out").mkdir()
    command = " ".join(cli(str(data), "-o", "out/train.parquet", "--model", str(smollm2_dir)))
    proc = in_user_namespace(f"{mount} && {command} > stdout.txt 2> stderr.txt; echo $? > rc.txt; "
                             "cat out/train.parquet; ls -A out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    stderr = (tmp_path / "stderr.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1"
    assert stderr.splitlines() == [f"turnspec: error: out/train.parquet: cannot write the output ({reason}); "
                                   "train.parquet is left as it was"]
    assert proc.stdout.splitlines() == ["previous", "train.parquet"]  # intact, and no temporary file beside it


# ------------------------------------------------------------------------------------------ SIGTERM
@pytest.mark.slow
@pytest.mark.parametrize("whom", ["process", "process group"])
def test_sigterm_leaves_no_temporary_file_and_no_traceback(smollm2_dir, tmp_path, whom):
    """The parent alone (`kill PID`) or the whole group with its two workers (`kill -- -PGID`, what a terminal, a
    container runtime or `timeout` may do), in the middle of the run: once the first rows are in the file."""
    data = tmp_path / "chats.jsonl"
    write_dataset(data, 10_000)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "train.parquet"
    out.write_bytes(b"previous")
    proc = subprocess.Popen(cli(str(data), "-o", str(out), "--model", str(smollm2_dir), "--num-proc", "2", "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # a hang dumps every thread's stack
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            temporary = list(folder.glob(".*.tmp"))
            if temporary and temporary[0].stat().st_size > 4096:  # rows written: the workers are encoding
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        (os.killpg if whom == "process group" else os.kill)(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints where each thread waits
            pytest.fail("encode did not exit within 60 s of SIGTERM:\n" + proc.communicate(timeout=30)[1][-6000:])
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)  # workers killed with the group are gone; nothing may write after the parent
    assert proc.returncode == 143
    assert stderr.splitlines() == ["turnspec: error: terminated (SIGTERM); the output file was not written (a "
                                   "previous one is left as it was)"], stderr
    envelope = json.loads(stdout)
    assert envelope["ok"] is False and envelope["error"]["code"] == "terminated"
    assert envelope["error"]["exit_code"] == 143
    assert sorted(p.name for p in folder.iterdir()) == ["train.parquet"] and out.read_bytes() == b"previous"
