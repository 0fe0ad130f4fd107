"""ModelSpec: one model's conversation framing — render, encode, stops — behind a small API."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .content_text import ContentControls, check_mode, content_controls, encode_as_text
from .encoding import Encoding, spans_to_mask, universal_spans
from .errors import EncodingError, NoChatTemplateError, TurnspecError
from .render import Rendered, RenderInputError, render_conversation
from .sources import ModelFiles, resolve
from .stops import StopSet, derive_stops
from .template import RenderLimits, has_generation_tag, template_literals
from .vocab import Vocabulary

if TYPE_CHECKING:
    from .analysis.markup import Markup
    from .analysis.prefix import PrefixReport
    from .analysis.syntax import TemplateAnalysis
    from .reader import StreamReader
    from .session import Session

Messages = Sequence[Mapping[str, Any]]


class ModelSpec:
    """How one model frames a conversation, where generation starts, and what ends a turn."""

    def __init__(self, files: ModelFiles, *, vocab: Vocabulary | None = None, token_ids: Mapping[str, int] | None = None,
                 limits: RenderLimits | None = None):
        if not files.templates:
            raise NoChatTemplateError(
                f"{files.name} ({files.path or files.origin}) has no chat template (a base model?): "
                "pass one with --template FILE, or turnspec.load(..., template='...')"
            )
        self.files = files
        self.name = files.name
        self.limits = limits
        self._vocab = vocab
        self._token_ids = dict(token_ids or {})

    # --- templates -------------------------------------------------------------------------------------------
    @property
    def templates(self) -> dict[str, str]:
        return self.files.templates

    @property
    def template(self) -> str:
        """The template used when no name or tools pick another ("default", else the only one)."""
        return self.select_template()

    @property
    def special_tokens(self) -> dict[str, str]:
        return self.files.special_tokens

    def select_template(self, chat_template: str | None = None, tools: Any = None) -> str:
        """Pick a template as transformers' `get_chat_template` does: by name, `tool_use` when tools are given, else `default`."""
        templates = self.templates
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if len(templates) == 1:
            return next(iter(templates.values()))
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise TurnspecError(
            f"{self.name} has several chat templates and none is named default: pick one of {sorted(templates)}"
        )

    @cached_property
    def template_sha256(self) -> str:
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()

    @cached_property
    def has_generation_tag(self) -> bool:
        return has_generation_tag(self.template)

    # --- vocabulary ------------------------------------------------------------------------------------------
    @property
    def vocab(self) -> Vocabulary | None:
        """The tokenizer, built on first use (rendering alone never needs it)."""
        if self._vocab is None and self.files.tokenizer_factory is not None:
            self._vocab = Vocabulary(self.files.tokenizer_factory())
        return self._vocab

    def require_vocab(self) -> Vocabulary:
        vocab = self.vocab
        if vocab is None:
            raise TurnspecError(f"{self.name} has no tokenizer (tokenizer.json or GGUF vocabulary); encoding needs one")
        return vocab

    def token_id(self, token: str) -> int | None:
        if token in self._token_ids:
            return self._token_ids[token]
        vocab = self.vocab
        return vocab.token_to_id(token) if vocab is not None else None

    def id_to_token(self, token_id: int) -> str | None:
        for tok, tid in self._token_ids.items():
            if tid == token_id:
                return tok
        vocab = self.vocab
        return vocab.id_to_token(token_id) if vocab is not None else None

    def control_tokens(self) -> set[str]:
        """Strings that are control tokens for this model: special tokens, added tokens the template writes, known ids."""
        tokens = set(self.special_tokens.values()) | set(self._token_ids)
        vocab = self.vocab
        if vocab is not None:
            literals = "\0".join(template_literals(self.template))
            for tok, tid in vocab.added_tokens.items():
                if tid in vocab.special_ids or (tok in literals and not tok.isspace()):
                    tokens.add(tok)
        return tokens

    # --- rendering -------------------------------------------------------------------------------------------
    def render(
        self,
        messages: Messages,
        *,
        tools: Sequence[dict | Callable] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text, identical to transformers' `apply_chat_template(..., tokenize=False)`."""
        return self._render(messages, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
                            continue_final_message=continue_final_message, chat_template=chat_template, **kwargs).text

    def _render(self, messages: Messages, *, tools: Any = None, chat_template: str | None = None,
                track_generation: bool = False, **kwargs: Any) -> Rendered:
        template = self.select_template(chat_template, tools)
        return render_conversation(template, messages, special_tokens=self.special_tokens, tools=tools,
                                   track_generation=track_generation, model_name=self.name, limits=self.limits,
                                   **kwargs)

    # --- encoding --------------------------------------------------------------------------------------------
    @cached_property
    def tokenizer_adds_bos(self) -> bool:
        """Whether plain tokenization of text would add BOS (config flag, GGUF flag, or tokenizer post-processor)."""
        if self.files.add_bos_token is not None:
            return self.files.add_bos_token
        bos = self.special_tokens.get("bos_token")
        vocab = self.vocab
        if not bos or vocab is None:
            return False
        bos_id = vocab.token_to_id(bos)
        return bos_id is not None and bos_id in vocab.tokenizer.encode("", add_special_tokens=True).ids

    def encode(
        self,
        messages: Messages,
        *,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tools: Sequence[dict | Callable] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        assistant_mask: bool | None = None,
        add_bos: bool | None = None,
        mask_prompt_supplied: bool = True,
        specials_in_content: str = "text",
        **kwargs: Any,
    ) -> Encoding:
        """Render and tokenize, with the generation boundary and (unless disabled) the assistant-token mask.

        `add_bos=None` adds BOS only when the tokenizer is configured to add one and the template did not write it;
        `add_bos=True` raises if the text already starts with BOS (that would be the classic double BOS).
        `assistant_mask=None` computes the mask unless `continue_final_message` is set. `mask_prompt_supplied`
        (default True) leaves out of the mask what a generation prompt writes for the model (the assistant header,
        Qwen3's empty `<think>\n\n</think>\n\n` in turns without reasoning): the model is not trained on it.

        `specials_in_content="text"` (the default) tokenizes control strings that came from message content (and
        tools, documents, template variables) as text: only the template's own markup gets control ids, so a
        message cannot write a turn of another role (see turnspec.content_text). The ids equal transformers'
        wherever the content holds no control string. `"parse"` is transformers' `apply_chat_template(tokenize=True)`
        exactly, control strings in content included: for parity with data encoded that way.
        """
        check_mode(specials_in_content)
        vocab = self.require_vocab()
        if assistant_mask and continue_final_message:
            raise RenderInputError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        want_mask = assistant_mask if assistant_mask is not None else not continue_final_message
        use_tag = want_mask and self.has_generation_tag and chat_template is None
        render_kwargs = dict(tools=tools, documents=documents, chat_template=chat_template, **kwargs)
        rendered = self._render(messages, add_generation_prompt=add_generation_prompt,
                                continue_final_message=continue_final_message, track_generation=use_tag,
                                **render_kwargs)
        text = rendered.text
        inert = ContentControls()
        if specials_in_content == "text":
            def render_inputs(msgs: Any, tls: Any, docs: Any, variables: dict[str, Any]) -> str:
                return self._render(msgs, tools=tls, documents=docs, chat_template=chat_template,
                                    add_generation_prompt=add_generation_prompt,
                                    continue_final_message=continue_final_message, **variables).text

            inert = content_controls(self, text, messages, render_inputs, tools=tools, documents=documents,
                                     variables=kwargs)
        if inert.spans:
            ids, offsets = encode_as_text(self, text, inert.spans)
        else:
            ids, offsets = vocab.encode_with_offsets(text)

        bos = self.special_tokens.get("bos_token")
        bos_id = vocab.token_to_id(bos) if bos else None
        text_has_bos = bool(bos) and text.startswith(bos)
        if add_bos and text_has_bos:
            raise EncodingError(
                f"{self.name}: the chat template already writes BOS {bos!r}; adding another would start the prompt "
                "with two BOS tokens (pass add_bos=None or False)"
            )
        if add_bos is True and bos_id is None:
            raise EncodingError(f"{self.name}: add_bos=True but the model has no BOS token in its vocabulary")
        bos_added = bool(bos_id is not None and not text_has_bos and (add_bos or (add_bos is None and self.tokenizer_adds_bos)))

        enc = Encoding(ids=ids, text=text, generation_start=len(ids) if add_generation_prompt else None)
        enc.content_controls, enc.content_notes = inert.spans, inert.notes
        if want_mask:
            if use_tag:
                spans, exact, notes, method = rendered.generation_spans, True, [], "generation-tag"
            else:
                plain = {k: v for k, v in render_kwargs.items() if v is not None}
                spans, exact, notes = universal_spans(self, list(messages), text, plain,
                                                      mask_prompt_supplied=mask_prompt_supplied)
                method = "universal"
            enc.assistant_mask = spans_to_mask(spans, offsets, len(ids))
            enc.mask_method, enc.mask_exact, enc.mask_notes, enc.char_spans = method, exact, notes, list(spans)
        if bos_added:
            enc.ids = [bos_id, *enc.ids]
            enc.bos_added = True
            if enc.assistant_mask is not None:
                enc.assistant_mask = [0, *enc.assistant_mask]
            if enc.generation_start is not None:
                enc.generation_start += 1
        return enc

    # --- analysis, stops and reading -------------------------------------------------------------------------
    @cached_property
    def analysis(self) -> TemplateAnalysis:
        """What turnspec learned from the template by rendering probes: turn framing, reasoning and tool-call
        syntax, turn ends (a `turnspec.analysis.TemplateAnalysis`; computed once per template, in milliseconds, and
        shared by every spec of the same template and tokens: turnspec.analysis.cache)."""
        from .analysis import analysis_for

        return analysis_for(self)

    @cached_property
    def markup(self) -> Markup:
        """The control tokens of this model and template, for splitting renderings (turnspec.analysis.markup); shared
        by the specs of the same template and tokens, like the analysis."""
        from .analysis import shared_markup

        return shared_markup(self)

    @cached_property
    def stops(self) -> StopSet:
        """End-of-turn token ids and stop strings from config, tokenizer and template, with the audit's warnings."""
        return derive_stops(self)

    def reader(self, prompt_text: str = "", *, tools: Sequence[dict | Callable] | None = None, **options: Any) -> StreamReader:
        """A streaming reader for this model's output (see turnspec.reader); `tools` are the request's tools."""
        from .reader import reader_for

        return reader_for(self, prompt_text, declared_tools=tools, **options)

    def session(self, tools: Sequence[dict | Callable] | None = None, *, specials_in_content: str = "text",
                **template_kwargs: Any) -> Session:
        """A conversation kept as exact token ids across turns (see turnspec.session): `prompt_ids`,
        `add_completion`, `extend`, `training_sample`. `specials_in_content` as in `encode`: control strings from
        message content are tokenized as text by default (no role injection), `"parse"` as the tokenizer matches them."""
        from .session import Session

        return Session(self, tools, specials_in_content=specials_in_content, **template_kwargs)

    def response_template(self) -> dict[str, Any]:
        """The analysis as a transformers `response_template` (for `tokenizer.parse_response(output, prefix=prompt)`,
        transformers >= 5.13, and vLLM); raises TurnspecError naming what the format cannot express."""
        from .analysis.response_template import response_template

        return response_template(self.analysis)

    def prefix_report(self, tools: Sequence[dict | Callable] | None = None, **template_kwargs: Any) -> PrefixReport:
        """Whether re-rendering a conversation after appending a user / tool / assistant message keeps the earlier
        tokens, and if not what changes, why, and which template switches change that (turnspec.analysis.prefix).
        Without tools or keyword arguments it is the analysis's own (`analysis.prefix`, learned once)."""
        if tools is None and not template_kwargs:
            return self.analysis.prefix
        from .analysis.prefix import prefix_report

        return prefix_report(self, tools=tools, **template_kwargs)

    def __repr__(self) -> str:
        return f"ModelSpec({self.name!r}, origin={self.files.origin!r}, templates={sorted(self.templates)})"


def load(
    source: str | Path | Any,
    *,
    template: str | Path | None = None,
    cache_dir: Path | None = None,
    download: bool = False,
    limits: RenderLimits | None = None,
) -> ModelSpec:
    """Load a model's chat spec from a folder, a .gguf file, a cached repo id, or a transformers tokenizer object.

    `template` replaces the model's template: a path to a .jinja file, or the template text itself.
    """
    if not isinstance(source, (str, Path)) and hasattr(source, "apply_chat_template"):
        files, vocab = _from_transformers_tokenizer(source)
    else:
        files, vocab = resolve(source, cache_dir=cache_dir, download=download), None
    if template is not None:
        files.templates = {"default": _read_template_arg(template)}
        files.provenance["template"] = str(template) if _is_path(template) else "argument"
    return ModelSpec(files, vocab=vocab, limits=limits)


def from_template(
    template: str,
    *,
    name: str = "template",
    special_tokens: Mapping[str, str] | None = None,
    token_ids: Mapping[str, int] | None = None,
    generation_config: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    limits: RenderLimits | None = None,
) -> ModelSpec:
    """A spec from a bare template (e.g. the corpus), with the special tokens and ids the model card documents."""
    files = ModelFiles(name=name, origin="template", path=None, templates={"default": template},
                       special_tokens=dict(special_tokens or {}), generation_config=dict(generation_config or {}))
    vocab = Vocabulary(tokenizer) if tokenizer is not None else None
    return ModelSpec(files, vocab=vocab, token_ids=token_ids, limits=limits)


def _is_path(value: str | Path) -> bool:
    if isinstance(value, Path):
        return True
    return "\n" not in value and "{" not in value and len(value) < 4096 and Path(value).expanduser().is_file()


def _read_template_arg(template: str | Path) -> str:
    if _is_path(template):
        path = Path(template).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TurnspecError(f"{path}: cannot read the template ({exc})") from None
    return str(template)


def _from_transformers_tokenizer(tok: Any) -> tuple[ModelFiles, Vocabulary | None]:
    """Accept a transformers tokenizer object, for users who already hold one (no transformers import here)."""
    chat_template = getattr(tok, "chat_template", None)
    templates = chat_template if isinstance(chat_template, dict) else ({"default": chat_template} if chat_template else {})
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    files = ModelFiles(
        name=str(getattr(tok, "name_or_path", "") or type(tok).__name__),
        origin="object",
        path=None,
        templates=dict(templates),
        special_tokens=dict(getattr(tok, "special_tokens_map", {}) or {}),
        generation_config={},
        add_bos_token=getattr(tok, "add_bos_token", None) if isinstance(getattr(tok, "add_bos_token", None), bool) else None,
    )
    files.special_tokens = {k: str(v) for k, v in files.special_tokens.items() if isinstance(v, str)}
    return files, (Vocabulary(backend) if backend is not None else None)
