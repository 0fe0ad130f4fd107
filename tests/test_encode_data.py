"""`turnspec encode` and `ChatEncoder`: conversations files to training columns, on the real SmolLM2 tokenizer.

The data is generated here: 10,000 conversations (system prompts, several exchanges, tool calls with results) with
1% bad rows of each kind a real dump has (a line that is not JSON, a row without messages, a message the template
cannot render). Every good row must come out, with the same ids and mask `spec.encode` gives; every bad row must
be listed with its line number; the output must load with pyarrow and `datasets`; `--num-proc 2` must write the
same file as one process.
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

import turnspec
from turnspec.training import IGNORE_INDEX, ChatEncoder

pa = pytest.importorskip("pyarrow", reason="turnspec encode needs pyarrow: pip install 'turnspec[data]'")
pq = pytest.importorskip("pyarrow.parquet")

WORDS = "the river runs past old stars while numbers sing about code and small poems of rain".split()
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}}, "required": ["city"]}}}


def conversation(rnd: random.Random) -> dict:
    def text(lo: int = 2, hi: int = 25) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(lo, hi)))

    messages = [{"role": "system", "content": text()}] if rnd.random() < 0.4 else []
    for _ in range(rnd.randint(1, 3)):
        messages += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
    row = {"messages": messages}
    if rnd.random() < 0.2:
        row["tools"] = [WEATHER]
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": text(1, 2)}}}
        messages += [{"role": "user", "content": text()}, {"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "content": text()},
                     {"role": "assistant", "content": text()}]
    return row


def write_dataset(path: Path, n: int, seed: int = 0) -> dict[int, str]:
    """A JSON Lines file of `n` rows with 1% bad rows; returns {line number: kind of bad row}."""
    rnd = random.Random(seed)
    bad: dict[int, str] = {}
    with path.open("w", encoding="utf-8") as f:
        for line in range(1, n + 1):
            if line % 100 == 37:
                kind = ("not json", "no messages", "no role")[line // 100 % 3]
                bad[line] = kind
                f.write({"not json": '{"messages": [{"role": "user", "content": "cut off\n',
                         "no messages": json.dumps({"conversation": []}) + "\n",
                         "no role": json.dumps({"messages": [{"content": "who am I"}]}) + "\n"}[kind])
            else:
                f.write(json.dumps(conversation(rnd)) + "\n")
        f.write("\n")  # a trailing blank line is not a row
    return bad


@pytest.fixture(scope="module")
def spec(smollm2_dir):
    return turnspec.load(smollm2_dir)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encode")
    data = folder / "chats.jsonl"
    return data, write_dataset(data, 10_000)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "turnspec.cli", "encode", *args], capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_ten_thousand_rows_with_bad_ones(big, smollm2_dir, spec, tmp_path):
    data, bad = big
    out = tmp_path / "train.parquet"
    report_file = tmp_path / "report.json"
    proc = run_cli(str(data), "-o", str(out), "--model", str(smollm2_dir), "--report", str(report_file))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_file.read_text())
    assert report["rows_read"] == 10_000 and report["rows_skipped"] == len(bad) == 100
    assert {s["row"] for s in report["skipped"]} == set(bad)  # row numbers are line numbers
    assert report["rows_written"] == 9_900 and report["rows_no_assistant_tokens"] == 0
    assert f"wrote {out}: 9,900 of 10,000 rows" in proc.stdout and "skipped 100 rows" in proc.stdout
    assert "row 37: invalid JSON" in proc.stdout

    table = pq.read_table(out)
    assert table.num_rows == 9_900 and table.column_names == ["row", "input_ids", "assistant_masks", "labels", "length"]
    rows = table.slice(0, 300).to_pylist()
    lines = data.read_text().splitlines()
    for r in rows[::7]:  # the columns are what spec.encode gives for that line
        enc = spec.encode(**_call_args(json.loads(lines[r["row"] - 1])))
        assert r["input_ids"] == enc.ids and r["assistant_masks"] == enc.assistant_mask
        assert r["labels"] == [t if m else IGNORE_INDEX for t, m in zip(enc.ids, enc.assistant_mask)]
        assert r["length"] == len(enc.ids)
    share = sum(sum(m) for m in table.column("assistant_masks").to_pylist()) / sum(table.column("length").to_pylist())
    assert abs(share - report["masked_share"]) < 1e-6 and 0.1 < share < 0.9

    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert len(ds) == 9_900 and ds[0]["input_ids"] == rows[0]["input_ids"]

    out2 = tmp_path / "train2.parquet"
    proc = run_cli(str(data), "-o", str(out2), "--model", str(smollm2_dir), "--num-proc", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["ok"] and envelope["data"]["processes"] == 2 and envelope["data"]["rows_written"] == 9_900
    assert out2.read_bytes() == out.read_bytes()


def _call_args(row: dict) -> dict:
    return {"messages": row["messages"], "tools": row.get("tools")}


def test_max_length_truncates_or_drops(spec, smollm2_dir, tmp_path):
    data = tmp_path / "c.json"
    rnd = random.Random(1)
    rows = [conversation(rnd) for _ in range(40)]
    data.write_text(json.dumps(rows))
    lengths = [len(spec.encode(**_call_args(r)).ids) for r in rows]
    limit = sorted(lengths)[len(lengths) // 2]
    enc = ChatEncoder(smollm2_dir, max_length=limit)
    from turnspec.encode_run import encode_file

    report = encode_file(data, tmp_path / "t.parquet", enc)
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.num_rows == 40 and max(table.column("length").to_pylist()) == limit
    assert report.rows_truncated == sum(n > limit for n in lengths)
    report = encode_file(data, tmp_path / "d.parquet", ChatEncoder(smollm2_dir, max_length=limit, overflow="drop"))
    assert report.rows_written == sum(n <= limit for n in lengths) == 40 - report.rows_too_long
    assert all("longer than max_length" in s["error"] for s in report.skipped)


def test_parquet_in_with_tools_and_null_fields(spec, smollm2_dir, tmp_path):
    """Arrow gives every message every key seen in the column (null where absent): the nulls are dropped, so a
    template's `is defined` tests see what the row meant."""
    rnd = random.Random(2)
    rows = [conversation(rnd) for _ in range(60)]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": r["messages"], "tools": json.dumps(r.get("tools"))}
                                         for r in rows]), src)
    assert pq.read_table(src).to_pylist()[0]["messages"][0].get("tool_calls", "absent") is None
    from turnspec.encode_run import encode_file

    report = encode_file(src, tmp_path / "out.parquet", ChatEncoder(smollm2_dir))
    assert report.rows_written == 60, report.skipped
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    for r, g in zip(rows, got):
        assert g["input_ids"] == spec.encode(**_call_args(r)).ids


def test_datasets_map_and_pickling(spec, smollm2_dir):
    datasets = pytest.importorskip("datasets")
    rnd = random.Random(3)
    rows = [conversation(rnd) for _ in range(50)] + [{"messages": [{"content": "no role"}], "tools": None}]
    ds = datasets.Dataset.from_list([{"messages": json.dumps(r["messages"]), "tools": json.dumps(r.get("tools"))}
                                     for r in rows])
    encoder = ChatEncoder(str(smollm2_dir))
    again = pickle.loads(pickle.dumps(encoder))
    assert again.spec is not encoder.spec or encoder._spec is None
    one = ds.map(encoder, batched=True, batch_size=16, remove_columns=ds.column_names)
    two = ds.map(encoder, batched=True, batch_size=16, num_proc=2, remove_columns=ds.column_names)
    assert one.to_list() == two.to_list()
    assert one[50]["error"] == "message 0 has no role" and one[50]["input_ids"] == []
    assert one[0]["input_ids"] == spec.encode(**_call_args(rows[0])).ids and one[0]["error"] == ""
    kept = one.filter(lambda e: not e, input_columns="error")
    assert len(kept) == 50


def test_ray_data_map_batches(spec, smollm2_dir):
    ray = pytest.importorskip("ray", reason="the Ray example needs the ray extra: pip install 'turnspec[ray]'")
    rnd = random.Random(4)
    rows = [conversation(rnd) for _ in range(24)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"messages": json.dumps(r["messages"]), "tools": json.dumps(r.get("tools"))}
                                  for r in rows])
        out = ds.map_batches(ChatEncoder(str(smollm2_dir)), batch_format="pyarrow", batch_size=8).take_all()
    finally:
        ray.shutdown()
    assert len(out) == 24 and all(o["error"] == "" for o in out)
    expected = {tuple(spec.encode(**_call_args(r)).ids) for r in rows}
    assert {tuple(o["input_ids"]) for o in out} == expected


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl", "-o", "x.parquet"], "missing.jsonl: no such file"),
    (["data.csv", "-o", "x.parquet"], "unknown data format '.csv'"),
    (["data.jsonl", "-o", "x.csv"], "x.csv: the output is Parquet"),
    (["data.jsonl", "-o", "x.parquet", "--overflow", "cut"], "--overflow 'cut': use truncate or drop"),
    (["bad.parquet", "-o", "x.parquet"], "bad.parquet: not a readable Parquet file"),
])
def test_bad_command_lines_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "data.jsonl").write_text("{}\n")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    proc = run_cli(*args)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("turnspec: error:") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_failed_run_leaves_the_old_output(smollm2_dir, tmp_path, monkeypatch):
    from turnspec import encode_run

    data = tmp_path / "c.jsonl"
    write_dataset(data, 600)
    out = tmp_path / "train.parquet"
    out.write_bytes(b"previous output")
    calls = {"n": 0}
    real = encode_run.encode_chunk

    def failing(encoder, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(encoder, rows)

    monkeypatch.setattr(encode_run, "encode_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        encode_run.encode_file(data, out, ChatEncoder(smollm2_dir))
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "train.parquet"]  # no temporary file left


# ------------------------------------------------------------------------------------------ a model that does not load
def test_a_model_that_does_not_load_raises_once_in_the_constructor(tmp_path, monkeypatch):
    """Offline and not cached: one one-line error when the encoder is made, not the same error on every row (after
    which the README's filter step left an empty dataset, silently)."""
    from turnspec.errors import TurnspecError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(TurnspecError) as raised:
        ChatEncoder("org/name")
    message = str(raised.value)
    assert "org/name" in message and "\n" not in message


def test_a_template_that_does_not_compile_raises_once_in_the_constructor(smollm2_dir, tmp_path):
    from turnspec.errors import TemplateError

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((smollm2_dir / name).read_bytes())
    synthetic = "{% for m in messages %}{{ m.content }\n"  # a synthetic template with a syntax error
    (folder / "chat_template.jinja").write_text(synthetic, encoding="utf-8")
    with pytest.raises(TemplateError, match=r"the chat template of model raised: unexpected '}' \(line 1\)"):
        ChatEncoder(folder)


def test_the_batch_without_a_messages_column_raises(smollm2_dir):
    with pytest.raises(ValueError, match="the batch has no 'messages' column"):
        ChatEncoder(smollm2_dir)({"conversation": [[{"role": "user", "content": "hi"}]]})


# ------------------------------------------------------------------------------------------ batches: NA and fixed types
def test_pandas_batches_with_missing_tools_and_typed_output(spec, smollm2_dir):
    """pandas holds a missing `tools` as NA, None or NaN depending on how the frame was made; each is "no tools".
    The output keeps its Arrow types even for a batch whose rows all failed (no list<null>)."""
    pd = pytest.importorskip("pandas")
    rnd = random.Random(5)
    rows = [conversation(rnd) for _ in range(12)]
    frame = pd.DataFrame({"messages": [r["messages"] for r in rows],
                          "tools": pd.array([r.get("tools") for r in rows], dtype=object)})
    encoder = ChatEncoder(smollm2_dir)
    expected = [spec.encode(**_call_args(r)).ids for r in rows]
    for missing in (pd.NA, None, float("nan")):
        frame["tools"] = [r["tools"] if "tools" in r else missing for r in rows]
        out = encoder(frame)
        assert isinstance(out, pd.DataFrame) and list(out["error"]) == [""] * 12, (missing, list(out["error"]))
        assert [list(ids) for ids in out["input_ids"]] == expected
    failed = encoder(pd.DataFrame({"messages": [[{"content": "no role"}]] * 3}))
    assert list(failed["error"]) == ["message 0 has no role"] * 3
    arrow = pa.Table.from_pandas(failed, preserve_index=False).schema
    assert arrow.field("input_ids").type == pa.list_(pa.int32()) and arrow.field("length").type == pa.int32()


def test_datasets_map_keeps_types_when_the_first_batch_fails(smollm2_dir):
    """A first batch whose rows all failed typed the columns list<null> and the next batch could not be cast
    ("Couldn't cast array of type int64 to null"); the batch's other columns stay (no remove_columns)."""
    datasets = pytest.importorskip("datasets")
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ds = datasets.Dataset.from_list([{"id": i, "messages": json.dumps([{"content": "no role"}] if i < 2 else good)}
                                     for i in range(4)])
    out = ds.map(ChatEncoder(smollm2_dir), batched=True, batch_size=1)
    assert out.column_names == ["id", "messages", "input_ids", "assistant_masks", "labels", "length", "error"]
    schema = out.data.schema
    assert [schema.field(c).type for c in ("input_ids", "assistant_masks", "labels", "length")] == \
        [pa.list_(pa.int32()), pa.list_(pa.int8()), pa.list_(pa.int32()), pa.int32()]
    assert out["error"] == ["message 0 has no role"] * 2 + [""] * 2 and out[3]["input_ids"][0] == 1


def test_dict_and_arrow_batches_have_one_schema(smollm2_dir):
    from turnspec.training import arrow_schema

    encoder = ChatEncoder(smollm2_dir)
    good = {"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]}
    bad = {"messages": [[{"content": "no role"}]], "tools": [None]}
    for batch in (good, bad, pa.table(good), pa.table(bad)):
        out = encoder(batch)
        assert out.schema == arrow_schema(with_error=True)


# ------------------------------------------------------------------------------------------ the report: inexact rows
def reasoning_rows(n_inexact: int, n_exact: int) -> list[dict]:
    """Conversations for Qwen3 (whose template drops past reasoning from history): a past turn with reasoning makes
    the mask inexact; the others are exact."""
    rows = []
    for i in range(n_inexact + n_exact):
        messages = [{"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                    {"role": "user", "content": "and then?"},
                    {"role": "assistant", "content": "then this."}]
        if i < n_inexact:
            messages[1]["reasoning_content"] = f"thinking about {i}"
        rows.append({"messages": messages})
    return rows


@pytest.mark.slow
def test_the_report_lists_rows_with_an_inexact_mask(tmp_path):
    from helpers.paths import SHARED, need
    from typer.testing import CliRunner

    from turnspec.cli import app

    qwen3 = need(SHARED / "models" / "qwen3-tokenizer")
    spec = turnspec.load(qwen3)
    rows = reasoning_rows(14, 6)
    random.Random(6).shuffle(rows)
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    expected = []
    for n, r in enumerate(rows, 1):
        enc = spec.encode(r["messages"])
        if not enc.mask_exact:
            expected.append({"row": n, "reason": "; ".join(enc.mask_notes)})
    assert len(expected) == 14 and all(e["reason"] for e in expected)

    out = tmp_path / "train.parquet"
    result = CliRunner().invoke(app, ["encode", str(data), "-o", str(out), "--model", str(qwen3), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["data"]
    assert report["rows_inexact_mask"] == 14 and report["inexact"] == expected  # every one, with the encoding's reason
    assert {r["row"] for r in report["inexact"]} <= set(pq.read_table(out).column("row").to_pylist())

    result = CliRunner().invoke(app, ["encode", str(data), "-o", str(out), "--model", str(qwen3)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = lines.index("14 rows written with an inexact mask (`turnspec render --tokens` shows one):")
    assert lines[head + 1:head + 11] == [f"  row {e['row']}: {e['reason']}" for e in expected[:10]]
    assert lines[head + 11] == "  … 4 more (--report FILE or --json lists them all)"


# ------------------------------------------------------------------------------------------ provenance and columns
def test_the_parquet_records_what_produced_it(spec, smollm2_dir, tmp_path):
    data = tmp_path / "c.jsonl"
    write_dataset(data, 30)
    out = tmp_path / "train.parquet"
    proc = run_cli(str(data), "-o", str(out), "--model", str(smollm2_dir), "--kw", "enable_thinking=false",
                   "--max-length", "512", "--train-prompt-supplied", "--json")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(pq.read_schema(out).metadata[b"turnspec"])
    assert meta == {
        "schema": "turnspec.encode/1", "turnspec_version": turnspec.__version__, "model": str(smollm2_dir),
        "model_name": spec.name, "template_sha256": spec.template_sha256,
        "templates_sha256": {"default": spec.template_sha256}, "template_kwargs": {"enable_thinking": False},
        "mask": {"method": "universal", "mask_prompt_supplied": False}, "specials_in_content": "text",
        "max_length": 512, "overflow": "truncate"}
    assert json.loads(proc.stdout)["data"]["provenance"] == meta
    import hashlib

    assert meta["template_sha256"] == hashlib.sha256(
        (smollm2_dir / "chat_template.jinja").read_bytes()).hexdigest()


def test_the_readme_documents_every_output_column():
    """The column table in the README's encode section names exactly the columns the file has, in order."""
    import re

    from helpers.paths import REPO
    from turnspec.training import arrow_schema

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Training data: `turnspec encode`"):]
    section = section[:section.index("\n## ")]
    documented = re.findall(r"^\| `(\w+)` \| ", section, flags=re.M)
    assert documented == arrow_schema(with_row=True).names
