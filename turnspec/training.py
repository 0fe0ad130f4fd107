"""Pre-tokenized training data: the ids, assistant mask and labels of conversations, as TRL's SFTTrainer takes them.

`ChatEncoder(model)` is a plain picklable callable. It maps a batch of rows (a `messages` column in OpenAI's
format, an optional `tools` column) to `input_ids`, `assistant_masks`, `labels` (-100 outside the mask), `length`
and `error` ("" when the row encoded), one row out per row in, so it runs unchanged under
`datasets.Dataset.map(batched=True, num_proc=N)` and Ray Data's `map_batches` in every batch format. The output
always has the same Arrow types (`arrow_schema(with_error=True)`): a batch of Python lists cannot carry them, and a
batch whose rows all failed would be typed `list<null>`, which no reader can combine with the other files or shards.

The model is loaded in the constructor, so a model that does not load raises there, once, not as an error on every
row. What the encoder pickles is the model's name or path and the options: each process loads the model again,
once, on first use. A row the template rejects is not an exception: its `error` says why and its columns are empty
(filter them out, or count them as `turnspec encode` does).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import one_line

if TYPE_CHECKING:
    from .speclike import SpecLike

IGNORE_INDEX = -100
TOO_DEEP = "nested too deeply to encode (Python's recursion limit): flatten the row"  # a row's error
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
    mask_note: str = ""  # why it is not, as the encoding says (Encoding.mask_notes)


class ChatEncoder:
    """Encodes conversations for supervised fine-tuning with assistant-only loss (see the module doc).

    `model`: a model folder, .gguf file, cached repo id, or a loaded `ModelSpec` (one loaded from a path pickles
    as that path); it is loaded here, and a model that does not load raises its one-line TurnspecError here.
    `max_length` with `overflow="truncate"` keeps the first `max_length` tokens; with "drop" the row gets an error
    instead. `template_kwargs` go to the template (e.g. {"enable_thinking": False}).
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
        # Load now: a model that does not load, or a template that does not compile, is one error here, not the
        # same error on every row (and an empty dataset after the filter step).
        spec = self.spec
        from .render import check_template_syntax

        for template in spec.templates.values():
            check_template_syntax(template, spec.name)

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

    def provenance(self) -> dict[str, Any]:
        """What produced the columns: model, template hashes, template kwargs, mask options, turnspec version
        (`turnspec encode` writes it into the Parquet file's metadata under the key "turnspec")."""
        import hashlib

        from . import __version__

        spec = self.spec
        templates = {name: hashlib.sha256(t.encode("utf-8")).hexdigest() for name, t in sorted(spec.templates.items())}
        try:
            default = spec.template_sha256
        except Exception:  # several templates, none named default: each row picks one (`templates_sha256`)
            default = None
        return {
            "schema": OUTPUT_SCHEMA_VERSION,
            "turnspec_version": __version__,
            "model": self.model or spec.name,
            "model_name": spec.name,
            "template_sha256": default,
            "templates_sha256": templates,
            "template_kwargs": self.template_kwargs,
            "mask": {"method": "generation-tag" if spec.has_generation_tag else "universal",
                     "mask_prompt_supplied": self.mask_prompt_supplied},
            "specials_in_content": self.specials_in_content,
            "max_length": self.max_length,
            "overflow": self.overflow,
        }

    # -- one row --
    def encode_row(self, row: Any) -> EncodedRow:
        """A row (a mapping with the messages column, or a list of messages) encoded; never raises for its data
        (only when the model itself does not load)."""
        spec = self.spec  # outside the try: a model that does not load is not a row's error
        try:
            messages, tools = self._fields(row)
            enc = spec.encode(messages, tools=tools, mask_prompt_supplied=self.mask_prompt_supplied,
                              specials_in_content=self.specials_in_content, **self.template_kwargs)
        except Exception as exc:  # a bad row (even one nested too deep: RecursionError) is reported, never fatal
            return EncodedRow(error=TOO_DEEP if isinstance(exc, RecursionError)
                              else one_line(exc, name_type=True, unnamed=(ValueError,)))
        ids, mask = enc.ids, enc.assistant_mask or [0] * len(enc.ids)
        out = EncodedRow(exact=bool(enc.mask_exact))
        if not out.exact:
            out.mask_note = "; ".join(enc.mask_notes) or "the encoding gave no reason"
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
        messages = _json_list(messages, f"{self.messages_column} must be a list of {{role, content}} objects")
        if not messages:
            raise ValueError(f"{self.messages_column} is empty (a conversation needs at least one message)")
        messages = [without_nulls(m) for m in messages]
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise ValueError(f"message {i} must be a {{role, content}} object, not {_kind(m)}")
            if "role" not in m:
                raise ValueError(f"message {i} has no role")
        tools = _json_list(tools, f"{self.tools_column} must be a list of tool objects "
                                  '({"type": "function", "function": {...}})', missing_ok=True)
        return messages, ([without_nulls(t) for t in tools] if tools else None)

    # -- a batch, for datasets.map(batched=True) and Ray's map_batches --
    def __call__(self, batch: Any) -> Any:
        """The output columns (`arrow_schema(with_error=True)`) for a batch, typed so that they keep those types in
        every batch: for a `datasets` batch, a dict of numpy columns (datasets keeps the batch's other columns); for
        a pandas DataFrame, a DataFrame with Arrow-typed columns; for a pyarrow Table or any other dict of columns
        (Ray's "numpy" format), a pyarrow Table. Python lists cannot carry the types: a batch whose rows all failed
        would be typed `list<null>`."""
        kind, columns = _columns_of(batch, (self.messages_column, self.tools_column))
        if self.messages_column not in columns:
            raise ValueError(f"the batch has no {self.messages_column!r} column (the conversations in OpenAI message "
                             f"format); pass messages_column= to ChatEncoder to use another")
        n = len(columns[self.messages_column])
        rows = [{k: _plain(v[i]) for k, v in columns.items()} for i in range(n)]
        encoded = [self.encode_row(r) for r in rows]
        out = {
            "input_ids": [e.input_ids for e in encoded],
            "assistant_masks": [e.assistant_masks for e in encoded],
            "labels": [e.labels for e in encoded],
            "length": [e.length for e in encoded],
            "error": [e.error or "" for e in encoded],
        }
        return _as_kind(kind, out)


def without_nulls(value: Any) -> Any:
    """A message (or tool) with its null fields removed: Arrow and `datasets` give every struct all the keys seen in
    the column (None, or pandas' NA, where absent), and templates test `is defined`, which a null passes."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {k: v if type(v) in _SCALARS else without_nulls(v) for k, v in value.items() if not _null(v)}
    if kind is list or kind is tuple:
        return [without_nulls(v) for v in value]
    plain = _plain(value)
    return value if plain is value else without_nulls(plain)  # a numpy array of dicts: its dicts too


_SCALARS = frozenset((str, int, float, bool))


def _null(value: Any) -> bool:
    """None, or pandas' NA / NaT (what a pandas batch holds for a missing struct field)."""
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def _missing(value: Any) -> bool:
    """A missing cell: a null, or the float NaN that pandas puts in an object column for a missing value."""
    return _null(value) or (isinstance(value, float) and value != value)


def _kind(value: Any) -> str:
    return "a string" if isinstance(value, str) else "null" if _missing(value) else type(value).__name__


def _json_list(value: Any, rule: str, *, missing_ok: bool = False) -> list[Any] | None:
    """A list column's value as a list: a list, a tuple or a numpy array, or that list as a JSON string (how a
    datasets or CSV column often holds it). Anything else is a ValueError stating `rule`."""
    value = _plain(value)
    if missing_ok and _missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if missing_ok and text in ("", "null"):
            return None
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise ValueError(f"{rule}, not a string ({_excerpt(value)})") from None
        if missing_ok and parsed is None:
            return None
        if not isinstance(parsed, list):
            raise ValueError(f"{rule}, not a JSON {type(parsed).__name__} string ({_excerpt(value)})")
        return parsed
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ValueError(f"{rule}, not {_kind(value)}")


def _excerpt(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (what Ray's numpy and pandas batches hold) as Python lists and numbers."""
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
    kind = "datasets" if module.startswith("datasets") else "dict"  # datasets' LazyBatch, or Ray's numpy dict
    return kind, {c: batch[c] for c in wanted if c in batch}


def _as_kind(kind: str, columns: dict[str, list[Any]]) -> Any:
    """The columns typed as `arrow_schema(with_error=True)`, in the form each caller keeps the types of."""
    if kind == "datasets":  # a dict, so that datasets keeps the batch's other columns; numpy, so that it keeps types
        import numpy as np

        out: dict[str, Any] = {}
        for name, dtype in (("input_ids", np.int32), ("assistant_masks", np.int8), ("labels", np.int32)):
            cells = np.empty(len(columns[name]), dtype=object)
            for i, value in enumerate(columns[name]):  # one by one: equal lengths must not make a 2-D array
                cells[i] = np.asarray(value, dtype=dtype)
            out[name] = cells
        out["length"] = np.asarray(columns["length"], dtype=np.int32)
        out["error"] = columns["error"]
        return out
    import pyarrow as pa

    table = pa.table(columns, schema=_batch_schema())
    if kind == "pandas":
        import pandas as pd

        return table.to_pandas(types_mapper=pd.ArrowDtype)  # Arrow-typed: numpy cells would become tensor types
    return table  # Ray's numpy format, a caller's own dict, a pyarrow Table


OUTPUT_SCHEMA_VERSION = "turnspec.encode/1"  # bumped when a column is added, removed or retyped


@lru_cache(maxsize=None)
def _batch_schema() -> Any:
    return arrow_schema(with_error=True)


def arrow_schema(*, with_error: bool = False, with_row: bool = False) -> Any:
    """The output columns as Arrow types (what TRL reads for pre-tokenized data)."""
    import pyarrow as pa

    fields = [("row", pa.int64())] if with_row else []
    fields += [("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8())),
               ("labels", pa.list_(pa.int32())), ("length", pa.int32())]
    if with_error:
        fields.append(("error", pa.string()))
    return pa.schema(fields)


def _source_of(spec: SpecLike) -> str | None:
    path = getattr(getattr(spec, "files", None), "path", None)
    return str(path) if path else None


