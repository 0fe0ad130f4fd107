"""Pre-tokenized training data: the ids, assistant mask and labels of conversations, as TRL's SFTTrainer takes them.

`ChatEncoder(model)` is a plain picklable callable. It maps a batch of rows (a `messages` column in OpenAI's
format, an optional `tools` column) to `input_ids`, `assistant_masks`, `labels` (-100 outside the mask), `length`
and `error` ("" when the row encoded), one row out per row in, so it runs unchanged under `datasets.Dataset.map(batched=True, num_proc=N)`
and Ray Data's `map_batches`. What it pickles is the model's name or path and the options: each process loads
the model once, on first use. A row the template rejects is not an exception: its `error` says why and its
columns are empty (filter them out, or count them as `turnspec encode` does).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

IGNORE_INDEX = -100
OVERFLOW = ("truncate", "drop")


@dataclass
class EncodedRow:
    """One conversation's columns, or why it has none (`error`)."""

    input_ids: list[int] = field(default_factory=list)
    assistant_masks: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    length: int = 0
    error: str | None = None
    truncated: bool = False  # longer than max_length and cut (overflow="truncate")
    too_long: bool = False  # longer than max_length and dropped (overflow="drop"); `error` says so
    exact: bool = True  # the mask is exact (see Encoding.mask_exact)


class ChatEncoder:
    """Encodes conversations for supervised fine-tuning with assistant-only loss (see the module doc).

    `model`: a model folder, .gguf file, cached repo id, or a loaded `ModelSpec` (one loaded from a path pickles
    as that path). `max_length` with `overflow="truncate"` keeps the first `max_length` tokens; with "drop" the
    row gets an error instead. `template_kwargs` go to the template (e.g. {"enable_thinking": False}).
    `specials_in_content="text"` (default) tokenizes control strings typed into messages as text (a sample that
    quotes `<|im_start|>` does not teach a turn boundary there); "parse" matches data encoded by transformers.
    """

    def __init__(self, model: Any, *, max_length: int | None = None, overflow: str = "truncate",
                 mask_prompt_supplied: bool = True, template_kwargs: Mapping[str, Any] | None = None,
                 messages_column: str = "messages", tools_column: str = "tools", specials_in_content: str = "text"):
        from .content_text import check_mode

        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, not {overflow!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens, not {max_length}")
        self._spec = None if isinstance(model, (str, os.PathLike)) else model
        self.model = str(model) if isinstance(model, (str, os.PathLike)) else _source_of(model)
        self.max_length = max_length
        self.overflow = overflow
        self.mask_prompt_supplied = mask_prompt_supplied
        self.template_kwargs = dict(template_kwargs or {})
        self.messages_column = messages_column
        self.tools_column = tools_column
        self.specials_in_content = check_mode(specials_in_content)

    # -- pickling: the model's source travels, never the loaded model --
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.model is None:
            state["_spec"] = self._spec  # a spec from a template string: it has no path to load again from
        else:
            state["_spec"] = None
        return state

    @property
    def spec(self) -> Any:
        if self._spec is None:
            from .spec import load

            self._spec = load(self.model)
            self._spec.require_vocab()
        return self._spec

    # -- one row --
    def encode_row(self, row: Any) -> EncodedRow:
        """A row (a mapping with the messages column, or a list of messages) encoded; never raises for its data."""
        try:
            messages, tools = self._fields(row)
            enc = self.spec.encode(messages, tools=tools, mask_prompt_supplied=self.mask_prompt_supplied,
                                   specials_in_content=self.specials_in_content, **self.template_kwargs)
        except Exception as exc:  # a bad row is reported, never fatal to the run
            return EncodedRow(error=_one_line(exc))
        ids, mask = enc.ids, enc.assistant_mask or [0] * len(enc.ids)
        out = EncodedRow(exact=bool(enc.mask_exact))
        if self.max_length is not None and len(ids) > self.max_length:
            if self.overflow == "drop":
                return EncodedRow(error=f"{len(ids)} tokens, longer than max_length {self.max_length} (dropped)",
                                  too_long=True)
            ids, mask, out.truncated = ids[:self.max_length], mask[:self.max_length], True
        out.input_ids, out.assistant_masks = list(ids), list(mask)
        out.labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
        out.length = len(ids)
        return out

    def _fields(self, row: Any) -> tuple[list[dict[str, Any]], list[Any] | None]:
        if isinstance(row, Mapping):
            if self.messages_column not in row:
                raise ValueError(f"no {self.messages_column!r} column (the conversation in OpenAI message format)")
            messages, tools = row[self.messages_column], row.get(self.tools_column)
        else:
            messages, tools = row, None
        if isinstance(messages, str):
            messages = json.loads(messages)
        if isinstance(tools, str):
            tools = json.loads(tools) if tools.strip() else None
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError(f"{self.messages_column} is not a list of messages")
        messages = [without_nulls(m) for m in messages]
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise ValueError(f"message {i} has no role")
        return messages, ([without_nulls(t) for t in tools] if tools else None)

    # -- a batch, for datasets.map(batched=True) and Ray's map_batches --
    def __call__(self, batch: Any) -> Any:
        """Columns for a batch: a dict of columns (datasets, Ray "numpy"), a pandas DataFrame or a pyarrow Table
        (returned in the same kind)."""
        kind, columns = _columns_of(batch, (self.messages_column, self.tools_column))
        n = len(columns[self.messages_column]) if self.messages_column in columns else 0
        rows = [{k: _plain(v[i]) for k, v in columns.items()} for i in range(n)]
        encoded = [self.encode_row(r) for r in rows]
        out = {
            "input_ids": [e.input_ids for e in encoded],
            "assistant_masks": [e.assistant_masks for e in encoded],
            "labels": [e.labels for e in encoded],
            "length": [e.length for e in encoded],
            "error": [e.error or "" for e in encoded],  # "" not None: a first batch of nulls would type the column null
        }
        return _as_kind(kind, out)


def without_nulls(value: Any) -> Any:
    """A message (or tool) with its null fields removed: Arrow and `datasets` give every struct all the keys seen in
    the column, and templates test `is defined`, which a null passes."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {k: v if type(v) in _SCALARS else without_nulls(v) for k, v in value.items() if v is not None}
    if kind is list or kind is tuple:
        return [without_nulls(v) for v in value]
    return _plain(value)


_SCALARS = frozenset((str, int, float, bool))


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (what Ray's numpy batches hold) as Python lists and numbers."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and type(value).__module__.startswith("numpy"):
        return tolist()
    return value


def _columns_of(batch: Any, wanted: Sequence[str]) -> tuple[str, Mapping[str, Sequence[Any]]]:
    """The batch's kind, and the `wanted` columns it has as Python sequences (other columns are never converted:
    datasets carry ids, sources, raw text)."""
    module = type(batch).__module__
    if module.startswith("pyarrow"):
        return "pyarrow", batch.select([c for c in wanted if c in batch.column_names]).to_pydict()
    if module.startswith("pandas"):
        return "pandas", {c: list(batch[c]) for c in wanted if c in batch.columns}
    return "dict", {c: batch[c] for c in wanted if c in batch}


def _as_kind(kind: str, columns: dict[str, list[Any]]) -> Any:
    if kind == "pyarrow":
        import pyarrow as pa

        return pa.table(columns, schema=arrow_schema(with_error=True))
    if kind == "pandas":
        import pandas as pd

        return pd.DataFrame(columns)
    return columns


def arrow_schema(*, with_error: bool = False, with_row: bool = False) -> Any:
    """The output columns as Arrow types (what TRL reads for pre-tokenized data)."""
    import pyarrow as pa

    fields = [("row", pa.int64())] if with_row else []
    fields += [("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8())),
               ("labels", pa.list_(pa.int32())), ("length", pa.int32())]
    if with_error:
        fields.append(("error", pa.string()))
    return pa.schema(fields)


def _source_of(spec: Any) -> str | None:
    path = getattr(getattr(spec, "files", None), "path", None)
    return str(path) if path else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (ValueError,)) or type(exc).__module__.startswith("turnspec") \
        else f"{type(exc).__name__}: {text}"
