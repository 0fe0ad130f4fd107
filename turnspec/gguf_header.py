"""The GGUF header reader: key/values and the tensor table, without reading tensor data.

The header is parsed here rather than with `gguf.GGUFReader`: the reader builds one numpy view per array
element, which takes ~2.7 s for SmolLM2's 49k tokens + 49k merges, while turnspec needs a handful of keys.
This parser uses the `gguf` package's constants (magic, value types, quantization block sizes), walks the
key/value section with `struct`, decodes arrays only when asked, and never maps tensor data (~15 ms).
It sits below both the model source (turnspec.sources.gguf) and the tokenizer builder (turnspec.gguf_tokenizer).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

from .errors import ModelSourceError

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}

class _Corrupt(Exception):
    """Internal: the bytes do not follow the GGUF layout; turned into a ModelSourceError naming the file."""


class _PastEnd(_Corrupt):
    """Internal: a length runs past the end of the bytes: a truncated file, or a prefix that needs more bytes."""


class GGUFHeaderIncomplete(ModelSourceError):
    """The bytes given end inside the key/value header (`gguf_keys_from_prefix`): fetch more of the file."""


class _LazyArray:
    """An array value not yet decoded: its element type, count and byte span in the header."""

    __slots__ = ("item_type", "count", "start", "end")

    def __init__(self, item_type: GGUFValueType, count: int, start: int, end: int):
        self.item_type, self.count, self.start, self.end = item_type, count, start, end


class GGUFMetadata(Mapping[str, Any]):
    """The key/value header of one GGUF file, as plain Python values.

    Arrays (tokens, merges, scores...) decode on first access and are cached, because load_gguf needs a few
    scalars while only the tokenizer needs the ~100k vocabulary strings. Holds a copy of the header bytes only.
    """

    def __init__(self, path: Path, header: bytes, byte_order: str, values: dict[str, Any], version: int,
                 tensor_count: int):
        self.path = path
        self.version = version
        self.tensor_count = tensor_count
        self._buf = header
        self._bo = byte_order
        self._values = values

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, _LazyArray):
            value = self._values[key] = self._decode_array(key, value)
        return value

    def __contains__(self, key: object) -> bool:  # Mapping's default would decode the array to answer
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def array_length(self, key: str) -> int | None:
        """Element count of an array value without decoding it (None if absent or not an array)."""
        value = self._values.get(key)
        if isinstance(value, _LazyArray):
            return value.count
        return len(value) if isinstance(value, list) else None

    def string_at(self, key: str, index: int) -> str | None:
        """One element of a string array, e.g. a token's text, without decoding the whole vocabulary."""
        value = self._values.get(key)
        if isinstance(value, list):
            return value[index] if 0 <= index < len(value) and isinstance(value[index], str) else None
        if not isinstance(value, _LazyArray) or value.item_type != GGUFValueType.STRING:
            return None
        if not 0 <= index < value.count:
            return None
        u64 = struct.Struct(self._bo + "Q").unpack_from
        offset = value.start
        for _ in range(index):
            offset += 8 + u64(self._buf, offset)[0]
        (length,) = u64(self._buf, offset)
        return _decode_str(self._buf[offset + 8: offset + 8 + length])

    def _decode_array(self, key: str, arr: _LazyArray) -> list[Any]:
        buf, bo = self._buf, self._bo
        if arr.item_type == GGUFValueType.STRING:
            u64 = struct.Struct(bo + "Q").unpack_from
            out: list[Any] = []
            append = out.append
            offset = arr.start
            for _ in range(arr.count):
                (length,) = u64(buf, offset)
                offset += 8
                append(_decode_str(buf[offset: offset + length]))
                offset += length
            return out
        fmt = _SCALAR_FORMATS.get(arr.item_type)
        if fmt is None:  # nested arrays: llama.cpp writes none in the keys turnspec reads
            raise ModelSourceError(f"{self.path}: GGUF key {key} holds nested arrays, which turnspec does not read")
        return list(struct.unpack_from(f"{bo}{arr.count}{fmt}", buf, arr.start))


def _decode_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # GGUF strings are UTF-8; a few old vocabularies hold stray bytes
        return raw.decode("utf-8", errors="replace")


class _Cursor:
    """Reads GGUF primitives from a buffer, checking every length against the end of the file."""

    def __init__(self, buf: Any, byte_order: str, offset: int):
        self.buf, self.bo, self.offset, self.size = buf, byte_order, offset, len(buf)
        self._u32 = struct.Struct(byte_order + "I").unpack_from
        self._u64 = struct.Struct(byte_order + "Q").unpack_from

    def need(self, n: int) -> None:
        if n < 0:
            raise _Corrupt(f"negative length at byte {self.offset}")
        if self.offset + n > self.size:
            raise _PastEnd(f"data runs past the end of the file at byte {self.offset}")

    def u32(self) -> int:
        self.need(4)
        (v,) = self._u32(self.buf, self.offset)
        self.offset += 4
        return v

    def u64(self) -> int:
        self.need(8)
        (v,) = self._u64(self.buf, self.offset)
        self.offset += 8
        return v

    def raw_string(self) -> bytes:
        n = self.u64()
        self.need(n)
        s = self.buf[self.offset: self.offset + n]
        self.offset += n
        return bytes(s)

    def string(self) -> str:
        return _decode_str(self.raw_string())

    def value_type(self) -> GGUFValueType:
        raw = self.u32()
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise _Corrupt(f"unknown value type {raw} at byte {self.offset - 4}") from None

    def value(self) -> Any:
        vtype = self.value_type()
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            return self.array()
        fmt = _SCALAR_FORMATS[vtype]
        size = struct.calcsize(fmt)
        self.need(size)
        (v,) = struct.unpack_from(self.bo + fmt, self.buf, self.offset)
        self.offset += size
        return v

    def array(self) -> _LazyArray:
        item_type = self.value_type()
        count = self.u64()
        start = self.offset
        if item_type == GGUFValueType.STRING:
            self.need(8 * count)
            u64, buf, size, offset = self._u64, self.buf, self.size, self.offset
            for _ in range(count):
                if offset + 8 > size:
                    raise _PastEnd(f"string array runs past the end of the file at byte {offset}")
                offset += 8 + u64(buf, offset)[0]
            if offset > size:
                raise _PastEnd(f"string array runs past the end of the file at byte {offset}")
            self.offset = offset
        elif item_type == GGUFValueType.ARRAY:
            for _ in range(count):
                self.array()
        else:
            nbytes = struct.calcsize(_SCALAR_FORMATS[item_type]) * count
            self.need(nbytes)
            self.offset += nbytes
        return _LazyArray(item_type, count, start, self.offset)


def read_gguf_metadata(path: Path) -> GGUFMetadata:
    """Parse a GGUF header (key/values and tensor table) without reading tensor data.

    Raises ModelSourceError, naming the file, when it is missing, not a GGUF, corrupt, or truncated (the tensor
    table says where the data ends, so a cut-off download is caught here rather than when a runner loads it).
    """
    path = Path(path)
    if not path.exists():
        raise ModelSourceError(f"{path}: no such file; check the path to the .gguf model")
    if path.is_dir():
        raise ModelSourceError(f"{path}: is a folder, not a .gguf file; pass the .gguf file inside it")
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise _Corrupt(f"only {size} bytes long")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(path, mm, size)
    except _Corrupt as exc:
        raise ModelSourceError(
            f"{path}: not a readable GGUF file ({exc}); re-download or re-convert the model"
        ) from None
    except OSError as exc:
        raise ModelSourceError(f"{path}: cannot read it ({exc.strerror or exc}); check the file and its permissions") from None


def gguf_keys_from_prefix(prefix: bytes, name: str = "remote.gguf") -> GGUFMetadata:
    """The key/value header of a GGUF from its first bytes (e.g. an HTTP range), tensor table not read.

    Raises GGUFHeaderIncomplete when `prefix` ends inside the header (fetch more), ModelSourceError when the
    bytes are not a GGUF. `turnspec pull` reads a remote GGUF's chat template this way before downloading it.
    """
    try:
        if len(prefix) < 24:
            raise _PastEnd(f"only {len(prefix)} bytes")
        byte_order, version, tensor_count, values, cur = _read_keys(prefix)
    except _PastEnd:
        raise GGUFHeaderIncomplete(f"{name}: the first {len(prefix)} bytes end inside the GGUF header") from None
    except _Corrupt as exc:
        raise ModelSourceError(f"{name}: not a readable GGUF file ({exc})") from None
    return GGUFMetadata(Path(name), bytes(prefix[:cur.offset]), byte_order, values, version, tensor_count)


def _read_keys(mm: Any) -> tuple[str, int, int, dict[str, Any], _Cursor]:
    """Magic, version and the key/value section; the cursor is left at the tensor table."""
    (magic,) = struct.unpack_from("<I", mm, 0)
    if magic != GGUF_MAGIC:
        raise _Corrupt(f"it does not start with the GGUF magic bytes but with {bytes(mm[:4])!r}")
    byte_order = "<"
    (version,) = struct.unpack_from("<I", mm, 4)
    if version & 0xFFFF == 0:  # written on a big-endian machine
        byte_order = ">"
        (version,) = struct.unpack_from(">I", mm, 4)
    if version not in (2, 3):
        raise _Corrupt(f"GGUF version {version}; turnspec reads versions 2 and 3")
    cur = _Cursor(mm, byte_order, 8)
    tensor_count, kv_count = cur.u64(), cur.u64()
    values: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cur.string()
        values[key] = cur.value()
    return byte_order, version, tensor_count, values, cur


def _parse(path: Path, mm: Any, size: int) -> GGUFMetadata:
    byte_order, version, tensor_count, values, cur = _read_keys(mm)
    header_end = cur.offset
    _check_tensor_data(cur, tensor_count, values.get("general.alignment", GGUF_DEFAULT_ALIGNMENT), size)
    return GGUFMetadata(path, bytes(mm[:header_end]), byte_order, values, version, tensor_count)


def _check_tensor_data(cur: _Cursor, tensor_count: int, alignment: Any, size: int) -> None:
    """Walk the tensor table and check the file is long enough to hold every tensor it lists."""
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Corrupt(f"invalid general.alignment {alignment!r}")
    data_end = 0
    for _ in range(tensor_count):
        name = cur.raw_string()
        n_dims = cur.u32()
        if n_dims > 8:
            raise _Corrupt(f"tensor {name[:60]!r} claims {n_dims} dimensions")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= cur.u64()
        raw_type = cur.u32()
        offset = cur.u64()
        try:
            block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(raw_type)]
        except (ValueError, KeyError):  # a quantization newer than the installed gguf package: size unknown
            data_end = max(data_end, offset)
            continue
        data_end = max(data_end, offset + n_elements * type_size // block_size)
    data_start = -(-cur.offset // alignment) * alignment
    if tensor_count and data_start + data_end > size:
        raise _Corrupt(
            f"truncated: the tensors need {data_start + data_end} bytes but the file has {size}"
        )
