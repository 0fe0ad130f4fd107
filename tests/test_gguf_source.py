"""The GGUF model source: chat configuration from the header, and a tokenizer equal to llama.cpp's.

References are real: the SmolLM2 GGUF and its tokenizer.json in ../shared, the vocabulary-only GGUFs of
../shared/corpus/vocab, and llama.cpp itself (llama-cpp-python, vocab_only). Files written in tmp_path are
real GGUFs too (cut copies of the real one, or written by the `gguf` package's GGUFWriter as convert_hf_to_gguf
writes them).
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpers.paths import CORPUS, SMOLLM2_DIR, need

from turnspec.errors import ModelSourceError
from turnspec.gguf_tokenizer import PRE_TOKENIZERS, SUPPORTED_MODELS, tokenizer_from_gguf
from turnspec.sources.gguf import load_gguf, read_gguf_metadata

VOCAB_DIR = CORPUS / "vocab"
VOCAB_FILES = sorted(p.name for p in VOCAB_DIR.glob("*.gguf")) if VOCAB_DIR.is_dir() else []

# English, code, unicode/emoji/CJK, whitespace runs, digits, and text around SmolLM2's special tokens.
TEXTS = [
    "Hello world! How's it going? I'm fine, they'll see, we'd've gone.",
    "The capital of France is Paris.",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "日本語のテキスト、中文文本。한국어 텍스트",
    "emoji 🙂🚀 family 👨\u200d👩\u200d👧 flags 🇫🇷",
    "café naïve résumé Ωμέγα Привет мир ﬁ ｆｕｌｌ",
    "tabs\tand\nnewlines\n\n\nCRLF\r\nend",
    "   leading and trailing   ",
    "\n",
    " ",
    "",
    "1234567890 3.14159 1,000,000 x1 2y",
    "$100 + 200 = <300> ^ ~ | ` @ # % & * \\ /",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more<|im_start|><|im_start|>",
    "<|im_start|> spaced <|im_end|> out",
    "'''quotes''' ’curly’ “double” — dash … ellipsis",
    "x\u00a0y\u3000z\u2003w",
]

# Where ../shared's tokenizer.json and llama.cpp disagree, llama.cpp (which runs the GGUF) is followed:
# 1. llama.cpp's "smollm" pre-tokenizer isolates every numeric character first (regex \p{N}), as HF's
#    Digits(individual_digits=True) does; the shared tokenizer.json has only the ByteLevel regex, which attaches the
#    last space of a run to the number ("  1" -> " ", " 1"). Ids differ when 2+ whitespace characters precede a
#    digit, or any whitespace precedes a non-ASCII numeric character (" ½": SmolLM2 has merges for those).
# 2. SmolLM2 has no token for the bytes 0x04 0x06 0x13 0x14 0x16 0x1D: llama.cpp emits nothing for them and merges
#    nothing across them; tokenizers' BPE drops them first and merges their neighbours ("=\x13=" -> "==").
JSON_DIVERGENT = ["a  1", "x\n\n2", " ½", "x = [\n    1,\n    2,\n]", "=\x13=", "..\x06.."]
SMOLLM2_MISSING_BYTES = frozenset("\x04\x06\x13\x14\x16\x1d")


def _tokenizer_json_diverges(text: str) -> bool:
    if SMOLLM2_MISSING_BYTES.intersection(text):
        return True
    for i in range(1, len(text)):
        if unicodedata.category(text[i]).startswith("N") and text[i - 1].isspace():
            if text[i] in "0123456789" and not (i >= 2 and text[i - 2].isspace()):
                continue
            return True
    return False


def _round_trips(text: str) -> bool:
    """Decoding gives the text back unless a byte has no token (missing controls; 0xF1/0xF2 lead unassigned planes)."""
    return not SMOLLM2_MISSING_BYTES.intersection(text) and not any(unicodedata.category(c) == "Cn" for c in text)


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol_files(smollm2_gguf):
    return load_gguf(smollm2_gguf)


@pytest.fixture(scope="module")
def smol_tok(smol_files):
    return smol_files.tokenizer_factory()


@pytest.fixture(scope="module")
def smol_ref():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(need(SMOLLM2_DIR / "tokenizer.json")))


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is the reference: pip install llama-cpp-python")


@pytest.fixture(scope="module")
def llama(llama_cpp):
    """llama(path) -> a vocab-only llama_cpp.Llama, opened once per file and closed after the module."""
    opened: dict[Path, object] = {}

    def get(path: Path):
        if path not in opened:
            opened[path] = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        return opened[path]

    yield get
    for llm in opened.values():
        llm.close()


_VOCAB_TOKENIZERS: dict[str, object] = {}


def _vocab(name: str):
    """(path, tokenizer) for a corpus vocabulary, skipping those whose tokenizer model turnspec does not convert."""
    path = need(VOCAB_DIR / name)
    meta = read_gguf_metadata(path)
    model = meta.get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        pytest.skip(f"{name}: tokenizer model {model!r} is not converted (its error is tested below)")
    if name not in _VOCAB_TOKENIZERS:
        _VOCAB_TOKENIZERS[name] = tokenizer_from_gguf(meta)
    return path, _VOCAB_TOKENIZERS[name]


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def _llama_ids(llm, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


# --- load_gguf on the real SmolLM2 GGUF -------------------------------------------------------------------------


def test_smollm2_chat_configuration(smol_files, smollm2_gguf):
    files = smol_files
    assert files.origin == "gguf" and files.path == smollm2_gguf
    assert files.templates == {"default": need(SMOLLM2_DIR / "chat_template.jinja").read_text(encoding="utf-8")}
    assert files.special_tokens["bos_token"] == "<|im_start|>"
    assert files.special_tokens["eos_token"] == "<|im_end|>"
    assert files.special_tokens["pad_token"] == "<|im_end|>"
    assert files.special_tokens["unk_token"] == "<|endoftext|>"
    assert files.generation_config == {"eos_token_id": [2]}
    assert files.provenance["eos_token_id"] == "2 from tokenizer.ggml.eos_token_id"
    assert files.provenance["template"] == "GGUF tokenizer.chat_template"
    assert files.add_bos_token is False
    assert files.name == "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1"  # general.organization / file stem
    assert files.config["architecture"] == "llama"
    assert files.config["context_length"] == files.config["max_position_embeddings"] == 8192
    assert files.config["vocab_size"] == 49152


def test_load_gguf_is_fast(smollm2_gguf):
    """The 98 MB file: only the header is parsed (measured ~15 ms; GGUFReader needs ~2.7 s)."""
    load_gguf(smollm2_gguf)  # warm the page cache
    start = time.perf_counter()
    load_gguf(smollm2_gguf)
    assert time.perf_counter() - start < 0.5


def test_tokenizer_is_built_only_on_demand(smollm2_gguf):
    files = load_gguf(smollm2_gguf)
    assert callable(files.tokenizer_factory)
    tok = files.tokenizer_factory()
    assert tok.token_to_id("<|im_end|>") == 2 and tok.get_vocab_size() == 49152


# --- the converted tokenizer against SmolLM2's tokenizer.json ----------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_smollm2_ids_equal_tokenizer_json(smol_tok, smol_ref, text):
    ours = _ids(smol_tok, text)
    assert ours == _ids(smol_ref, text)
    assert smol_tok.decode(ours, skip_special_tokens=False) == smol_ref.decode(ours, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason="the shared tokenizer.json lacks llama.cpp's digit "
                                            "isolation (see JSON_DIVERGENT)")) for t in JSON_DIVERGENT])
def test_smollm2_tokenizer_json_divergence(smol_tok, smol_ref, text):
    assert _ids(smol_tok, text) == _ids(smol_ref, text)


@pytest.mark.parametrize("text", JSON_DIVERGENT)
def test_smollm2_divergent_texts_follow_llama_cpp(llama, smollm2_gguf, smol_tok, text):
    assert _ids(smol_tok, text) == _llama_ids(llama(smollm2_gguf), text)


_PIECES = st.one_of(
    # Unassigned code points ("Cn" in Python's Unicode tables) are excluded: llama.cpp, the Rust regex engine in
    # `tokenizers` and Python each ship a different Unicode version, so their letter classes disagree there.
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=12),
    st.sampled_from(["<|im_start|>", "<|im_end|>", "<|endoftext|>", " ", "  ", "\n", "\n\n", "\t", "'s", "'LL",
                     "123", "x9", "日本", "🙂", "\u00a0", "Ω"]),
)
TEXT = st.lists(_PIECES, max_size=8).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.filter_too_much])
@given(text=TEXT)
def test_property_smollm2_equals_tokenizer_json(smol_tok, smol_ref, text):
    assume(not _tokenizer_json_diverges(text))
    ours = _ids(smol_tok, text)
    assert ours == _ids(smol_ref, text)
    decoded = smol_tok.decode(ours, skip_special_tokens=False)
    assert decoded == smol_ref.decode(ours, skip_special_tokens=False)
    if _round_trips(text):
        assert decoded == text


# --- differential against llama.cpp --------------------------------------------------------------------------------

LLAMA_TEXTS = TEXTS + JSON_DIVERGENT + [
    "<s>[INST] hi [/INST]</s>",
    "<unk> <pad> [CLS] [SEP] <|endoftext|> <|user|> <|assistant|> <|end|> <0x0A> hello",
    "<|user|>\nhi<|end|>\n<|assistant|>\n  ok<|end|>",
    "<|user|>  \n\t spaces after a special token",
    "Numbers: 1 22 333 4444 55555 ٣٤٥ ½ ⅔ Ⅻ",
    "\u3000ideographic\u3000space 日本\u3000語 ！？",
    "control \x00\x01\x0b\x0c\x1c\x1f\x7f\x85 bytes",
    "URL https://example.com/path?q=1&r=2#frag",
    "mixedCase camelCase snake_case kebab-case ABC123abc",
]


@pytest.mark.parametrize("text", LLAMA_TEXTS)
def test_smollm2_ids_equal_llama_cpp(llama, smollm2_gguf, smol_tok, text):
    assert _ids(smol_tok, text) == _llama_ids(llama(smollm2_gguf), text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_property_smollm2_equals_llama_cpp(llama, smollm2_gguf, smol_tok, text):
    assert _ids(smol_tok, text) == _llama_ids(llama(smollm2_gguf), text)


@pytest.mark.parametrize("name", VOCAB_FILES or ["absent"])
def test_corpus_vocab_ids_equal_llama_cpp(llama, name):
    path, tok = _vocab(name)
    llm = llama(path)
    mismatches = [(text, _ids(tok, text), _llama_ids(llm, text)) for text in LLAMA_TEXTS]
    assert [m for m in mismatches if m[1] != m[2]] == []
    # BOS/EOS as llama.cpp adds them (tokenizer.ggml.add_bos_token, or llama.cpp's default for the model).
    for text in ("Hello world", ""):
        assert tok.encode(text).ids == llm.tokenize(text.encode(), add_bos=True, special=True)


# llama.cpp strips whitespace after Phi-3's special tokens (it sets RSTRIP by model name, as HF's tokenizer.json
# does) but with C isspace(), i.e. ASCII only; tokenizers' AddedToken(rstrip=True) strips Unicode whitespace
# too. Ids differ when U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028/9, U+202F, U+205F or U+3000 follows
# a Phi-3 special token. No other divergence showed up in 6000 random texts per corpus vocabulary.
PHI3_RSTRIP = ["<|user|>\u3000hi", "<|end|>\u00a0x", "</s>\u2003:"]


@pytest.mark.parametrize("text", [pytest.param(t, marks=pytest.mark.xfail(
    strict=True, reason="Phi-3 rstrip: llama.cpp strips ASCII whitespace only, tokenizers strips Unicode whitespace"))
    for t in PHI3_RSTRIP])
def test_phi3_unicode_space_after_special_token(llama, text):
    path, tok = _vocab("ggml-vocab-phi-3.gguf")
    assert _ids(tok, text) == _llama_ids(llama(path), text)


@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_property_llama_spm_equals_llama_cpp(llama, text):
    path, tok = _vocab("ggml-vocab-llama-spm.gguf")
    assert _ids(tok, text) == _llama_ids(llama(path), text)


# --- every pre-tokenizer name: the gpt-2 vocabulary re-written with that tokenizer.ggml.pre --------------------


@pytest.fixture(scope="module")
def gpt2_vocab():
    return read_gguf_metadata(need(VOCAB_DIR / "ggml-vocab-gpt-2.gguf"))


def _write_with_pre(path: Path, meta, pre: str) -> Path:
    """The gpt-2 vocabulary under another pre-tokenizer name: llama.cpp then splits text with that name's regexes."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_context_length(1024)
    writer.add_embedding_length(768)
    writer.add_block_count(12)
    writer.add_feed_forward_length(3072)
    writer.add_head_count(12)
    writer.add_layer_norm_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(meta["tokenizer.ggml.tokens"])
    writer.add_token_types(meta["tokenizer.ggml.token_type"])
    writer.add_token_merges(meta["tokenizer.ggml.merges"])
    writer.add_bos_token_id(50256)
    writer.add_eos_token_id(50256)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


PRE_TEXTS = LLAMA_TEXTS + ["Hello World's 'RE 12345 ٣٤ x\n\n  y", "ABC abc ÀÉ école I'M", "a\r\n\r\nb   c\t\td"]

# gpt-4o/llama4: llama.cpp does not attach a contraction to a word ending in a combining mark ("a\u0301's").
GPT4O_MARK = "cafe\u0301's menu"


@pytest.mark.slow
@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_every_pre_tokenizer_name_matches_llama_cpp(llama_cpp, gpt2_vocab, tmp_path, pre):
    path = _write_with_pre(tmp_path / f"{pre}.gguf", gpt2_vocab, pre)
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        tok = tokenizer_from_gguf(read_gguf_metadata(path))
        assert [t for t in PRE_TEXTS if _ids(tok, t) != _llama_ids(llm, t)] == []
        if pre in ("gpt-4o", "llama4"):
            assert _ids(tok, GPT4O_MARK) != _llama_ids(llm, GPT4O_MARK)  # the documented divergence, still there
    finally:
        llm.close()


# --- errors: one line naming the file and the fix -------------------------------------------------------------------


def _assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message and "Traceback" not in message
    assert exc.value.__cause__ is None  # no chained traceback: `raise ... from None` or raised directly
    assert exc.value.__context__ is None or exc.value.__suppress_context__
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    assert "no such file" in _assert_one_line_naming(exc, path)


def test_text_file_named_gguf(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_text("This is a README, not a model.\n" * 4, encoding="utf-8")
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    message = _assert_one_line_naming(exc, path)
    assert "GGUF magic" in message and "re-download" in message


def test_tiny_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    assert "0 bytes" in _assert_one_line_naming(exc, path)


def test_folder_named_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.mkdir()
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    assert "folder" in _assert_one_line_naming(exc, path)


def _cut_copy(src: Path, dst: Path, size: int) -> Path:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(size))
    return dst


def test_gguf_cut_inside_the_header(smollm2_gguf, tmp_path):
    path = _cut_copy(smollm2_gguf, tmp_path / "cut-header.gguf", 1_000_000)  # the vocabulary ends at ~1.77 MB
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    assert "past the end of the file" in _assert_one_line_naming(exc, path)


def test_gguf_cut_inside_the_tensor_data(smollm2_gguf, tmp_path):
    """A half-downloaded model has an intact header: the tensor table shows the data is missing."""
    path = _cut_copy(smollm2_gguf, tmp_path / "half.gguf", smollm2_gguf.stat().st_size // 2)
    with pytest.raises(ModelSourceError) as exc:
        load_gguf(path)
    assert "truncated" in _assert_one_line_naming(exc, path)


def test_unsupported_tokenizer_model_bert():
    path = need(VOCAB_DIR / "ggml-vocab-bert-bge.gguf")
    files = load_gguf(path)  # the header reads fine: a bert GGUF has no chat template and no converted tokenizer
    assert files.templates == {}
    assert files.special_tokens == {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                    "cls_token": "[CLS]", "mask_token": "[MASK]"}
    with pytest.raises(ModelSourceError) as exc:
        files.tokenizer_factory()
    message = _assert_one_line_naming(exc, path)
    assert "'bert' is not supported" in message and "pass a tokenizer.json folder instead" in message


def test_gguf_without_template_is_a_base_model(tmp_path):
    """templates is empty and the caller (ModelSpec) raises NoChatTemplateError naming the model."""
    from turnspec.errors import NoChatTemplateError
    from turnspec.spec import ModelSpec

    path = need(VOCAB_DIR / "ggml-vocab-llama-spm.gguf")
    files = load_gguf(path)
    assert files.templates == {} and "template" not in files.provenance
    assert files.special_tokens == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    with pytest.raises(NoChatTemplateError, match="llama-spm"):
        ModelSpec(files)


# --- GGUFs written by the gguf package (as llama.cpp's convert_hf_to_gguf writes them) ------------------------------


def _write_gguf(path: Path, *, endianess=None, **extra) -> Path:
    import gguf

    kwargs = {"endianess": endianess} if endianess is not None else {}
    writer = gguf.GGUFWriter(str(path), "llama", **kwargs)
    writer.add_name("tiny-chat")
    writer.add_context_length(4096)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(["<|begin|>", "<|eot|>", "<|eom|>", "a", "b", "ab", "Ġ"])
    writer.add_token_types([3, 3, 3, 1, 1, 1, 1])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_add_bos_token(True)
    for key, value in extra.items():
        getattr(writer, f"add_{key}")(value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_named_templates(tmp_path):
    path = _write_gguf(tmp_path / "named.gguf", chat_template=[
        {"name": "default", "template": "{{ messages }}"},
        {"name": "tool_use", "template": "{{ tools }}"},
        {"name": "rag", "template": "{{ documents }}"},
    ])
    files = load_gguf(path)
    assert files.templates == {"default": "{{ messages }}", "tool_use": "{{ tools }}", "rag": "{{ documents }}"}
    assert files.name == "named" and files.config["context_length"] == 4096
    assert files.add_bos_token is True


def test_end_of_turn_ids_and_their_keys(tmp_path):
    path = _write_gguf(tmp_path / "eog.gguf", chat_template="{{ x }}", eot_token_id=1, eom_token_id=2)
    files = load_gguf(path)
    assert files.generation_config == {"eos_token_id": [1, 2]}  # eos and eot are the same id: listed once
    assert files.provenance["eos_token_id"] == "1 from tokenizer.ggml.eos_token_id; 2 from tokenizer.ggml.eom_token_id"
    assert files.special_tokens == {"bos_token": "<|begin|>", "eos_token": "<|eot|>"}


def test_big_endian_gguf(tmp_path):
    import gguf

    path = _write_gguf(tmp_path / "be.gguf", endianess=gguf.GGUFEndian.BIG, chat_template="{{ be }}")
    files = load_gguf(path)
    assert files.templates == {"default": "{{ be }}"} and files.generation_config == {"eos_token_id": [1]}
    tok = files.tokenizer_factory()
    assert tok.encode("ab a<|eot|>").ids == [0, 5, 6, 3, 1]  # BOS added: add_bos_token is true


def test_name_falls_back_to_the_file_stem(tmp_path):
    import gguf

    path = tmp_path / "nameless-model.Q8_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    files = load_gguf(path)
    assert files.name == "nameless-model.Q8_0"
    assert files.templates == {} and files.tokenizer_factory is None and files.generation_config == {}


# --- tokenizer_from_gguf inputs and pre-tokenizer fallback ---------------------------------------------------------


def test_unknown_pre_tokenizer_warns_and_splits_like_gpt2():
    path = need(VOCAB_DIR / "ggml-vocab-gpt-2.gguf")
    meta = dict(read_gguf_metadata(path))
    reference = tokenizer_from_gguf(meta)
    meta["tokenizer.ggml.pre"] = "brand-new-model"
    with pytest.warns(UserWarning, match="'brand-new-model' is unknown"):
        tok = tokenizer_from_gguf(meta)
    for text in TEXTS:
        assert _ids(tok, text) == _ids(reference, text)


@pytest.mark.slow  # GGUFReader parses every array element: ~1.5 s for this 0.7 MB vocabulary
def test_gguf_reader_and_path_inputs():
    import gguf

    path = need(VOCAB_DIR / "ggml-vocab-llama-spm.gguf")
    ours = tokenizer_from_gguf(read_gguf_metadata(path))
    for source in (gguf.GGUFReader(str(path)), path, str(path)):
        tok = tokenizer_from_gguf(source)
        assert [_ids(tok, t) for t in TEXTS] == [_ids(ours, t) for t in TEXTS]


def test_user_defined_tokens_are_plain_added_tokens():
    _, tok = _vocab("ggml-vocab-deepseek-coder.gguf")
    added = tok.get_added_tokens_decoder().values()
    assert any(not t.special for t in added) and any(t.special for t in added)
    assert all(not t.normalized for t in added)


def test_tokenizer_from_gguf_rejects_other_inputs():
    with pytest.raises(TypeError):
        tokenizer_from_gguf(42)



def test_tokenizer_cache_round_trips_and_misses_on_a_changed_file(smollm2_gguf, tmp_path, monkeypatch):
    """The on-disk tokenizer cache gives the same ids as a fresh build, and a touched file is rebuilt."""
    import os
    import shutil

    from turnspec.tokenizer_cache import cached_tokenizer

    monkeypatch.setenv("TURNSPEC_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "model.gguf"
    shutil.copyfile(smollm2_gguf, copy)
    builds = []

    def build():
        builds.append(1)
        return tokenizer_from_gguf(read_gguf_metadata(smollm2_gguf))

    fresh = cached_tokenizer(copy, build)
    again = cached_tokenizer(copy, build)
    assert len(builds) == 1 and len(list((tmp_path / "cache" / "tokenizers").glob("*.json"))) == 1
    for text in ["Hello world", "12345 678", "<|im_start|>user\nçà 😀<|im_end|>", "  spaces\t\ttabs\n\n"]:
        assert _ids(again, text) == _ids(fresh, text)
    os.utime(copy, ns=(1, 1))
    cached_tokenizer(copy, build)
    assert len(builds) == 2
    monkeypatch.setenv("TURNSPEC_CACHE", "off")
    cached_tokenizer(copy, build)
    assert len(builds) == 3
