"""The README's `datasets` and Ray Data snippets, read from README.md and run exactly as written, on a real local Ray
(one CPU), then their output read back with pyarrow and `datasets`; and every Ray batch format writing Parquet files
with one schema, even a file whose rows all failed (typed `list<null>` before, so the folder could not be read).

The model name in the snippets ("HuggingFaceTB/SmolLM2-135M-Instruct") resolves offline to a hub cache holding the
real SmolLM2 tokenizer files; the data mixes rows with and without `tools` (pandas holds NA where they are absent)
and rows the template cannot encode.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from helpers.paths import REPO
from helpers.hub_layout import add_cached_repo
from test_encode_data import WEATHER, conversation

pa = pytest.importorskip("pyarrow", reason="the encode snippets need pyarrow: pip install 'turnspec[data]'")
pq = pytest.importorskip("pyarrow.parquet")

README_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
COLUMNS = ["input_ids", "assistant_masks", "labels", "length"]
TYPES = {"input_ids": "list<int32>", "assistant_masks": "list<int8>", "labels": "list<int32>", "length": "int32",
         "error": "string"}


def types(schema) -> dict[str, str]:
    """Column types, lists by their value type (Parquet names a list's field "element", Arrow "item")."""
    return {f.name: f"list<{f.type.value_type}>" if pa.types.is_list(f.type) else str(f.type) for f in schema}


def readme_snippets() -> dict[str, str]:
    """The python blocks of the README's `turnspec encode` section, by the library they show."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Training data: `turnspec encode`"):]
    section = section[:section.index("\n## ")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    found = {"ray" if "ray.data" in b else "datasets": b for b in blocks}
    assert len(blocks) == 2 and set(found) == {"datasets", "ray"}, blocks
    return found


def rows(n: int, seed: int) -> list[dict]:
    """Conversations, a fifth of them with tools (a tool call and its result), and every tenth without a role."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        row = conversation(rnd)
        if i % 10 == 9:
            row = {"messages": [{"content": "who am I"}]}
        out.append(row)
    return out


def write_jsonl(path: Path, data: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, smollm2_dir):
    """A working folder with the snippets' files, and the environment the snippets (and Ray's workers) see: an
    offline hub cache holding the README's model."""
    root = tmp_path_factory.mktemp("readme")
    add_cached_repo(root / "hub", README_REPO, {p.name: p for p in smollm2_dir.iterdir() if p.is_file()})
    data = rows(60, seed=11)
    write_jsonl(root / "chats.jsonl", data)
    (root / "chats").mkdir()
    write_jsonl(root / "chats" / "part-0.jsonl", data[:40])
    write_jsonl(root / "chats" / "part-1.jsonl", data[40:])
    # a file whose every row fails: its block is all errors (typed list<null> before the schema was fixed)
    write_jsonl(root / "chats" / "part-2.jsonl", [{"messages": [{"content": f"no role {i}"}]} for i in range(5)])
    env = {"HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(root / "datasets"),
           "TOKENIZERS_PARALLELISM": "false"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(root)
        yield root, data


@pytest.fixture(scope="module")
def local_ray(workdir):
    """A real local Ray on one CPU, started after the environment is set (its workers inherit it)."""
    ray = pytest.importorskip("ray", reason="the Ray snippet needs the ray extra: pip install 'turnspec[ray]'")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def expected_ids(spec, data: list[dict]) -> list[list[int]]:
    return [spec.encode(r["messages"], tools=r.get("tools")).ids for r in data if "role" in r["messages"][0]]


@pytest.fixture(scope="module")
def spec(smollm2_dir):
    import turnspec

    return turnspec.load(smollm2_dir)


@pytest.mark.slow
def test_readme_datasets_snippet_as_written(workdir, spec):
    datasets = pytest.importorskip("datasets")
    root, data = workdir
    scope: dict = {}
    exec(compile(readme_snippets()["datasets"], "README.md (datasets snippet)", "exec"), scope)
    ds = scope["ds"]
    assert isinstance(ds, datasets.Dataset) and ds.column_names == COLUMNS
    assert types(ds.data.schema) == {c: TYPES[c] for c in COLUMNS}
    assert [r["input_ids"] for r in ds] == expected_ids(spec, data)  # every good row, in order; the bad ones gone
    assert all(r["labels"] == [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"])] for r in ds)


@pytest.mark.slow
def test_readme_ray_snippet_as_written_reads_back(workdir, local_ray, spec):
    datasets = pytest.importorskip("datasets")
    root, data = workdir
    exec(compile(readme_snippets()["ray"], "README.md (Ray snippet)", "exec"), {})
    files = sorted((root / "train").glob("*.parquet"))
    assert files
    table = pq.read_table(root / "train")  # the folder as one dataset: fails when the files' types differ
    assert table.column_names == COLUMNS
    assert types(table.schema) == {c: TYPES[c] for c in COLUMNS}
    want = sorted(map(tuple, expected_ids(spec, data)))  # Ray does not promise the order across files
    assert sorted(map(tuple, table.column("input_ids").to_pylist())) == want
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    assert ds.column_names == COLUMNS and len(ds) == len(want)
    assert sorted(tuple(r) for r in ds["input_ids"]) == want


@pytest.mark.slow
@pytest.mark.parametrize("batch_format", ["pandas", "pyarrow", "numpy"])
def test_every_ray_batch_format_writes_one_schema(workdir, local_ray, smollm2_dir, spec, batch_format):
    """No filter: the block of a file whose rows all failed is written too, and the folder still reads as one."""
    from turnspec.training import ChatEncoder

    ray = local_ray
    root, data = workdir
    out = root / f"out-{batch_format}"
    ray.data.read_json(str(root / "chats")).map_batches(ChatEncoder(str(smollm2_dir)), batch_format=batch_format) \
        .write_parquet(str(out))
    schemas = {pq.read_schema(f).remove_metadata() for f in out.glob("*.parquet")}
    assert len(schemas) == 1, schemas
    table = pq.read_table(out)
    assert types(table.schema) == TYPES
    errors = table.column("error").to_pylist()
    assert errors.count("message 0 has no role") == 6 + 5 and errors.count("") == 54
    assert sorted(tuple(r["input_ids"]) for r in table.to_pylist() if not r["error"]) == \
        sorted(map(tuple, expected_ids(spec, data)))
    datasets = pytest.importorskip("datasets")
    assert len(datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train")) == 65


def test_weather_tool_rows_are_in_the_data():
    """The data has rows with and without `tools` (what made pandas hold NA), and rows without a role."""
    data = rows(60, seed=11)
    with_tools = sum("tools" in r for r in data)
    assert 0 < with_tools < 60 and all(r["tools"] == [WEATHER] for r in data if "tools" in r)
    assert sum("role" not in r["messages"][0] for r in data) == 6
