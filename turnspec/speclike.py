"""`SpecLike`: what the lower layers (stops, encoding, content_text, analysis, reader, constrain) use of a model's
spec. They take this protocol instead of importing `turnspec.spec.ModelSpec`, which imports them: the seams are
typed without a cycle, and a test double or another spec class only needs these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from .analysis.markup import Markup
    from .analysis.syntax import TemplateAnalysis
    from .sources.model_files import ModelFiles
    from .stops import StopSet
    from .template_limits import RenderLimits
    from .vocab import Vocabulary


@runtime_checkable
class SpecLike(Protocol):
    """A model's chat spec as the seams see it: its files and template, rendering, tokens, and what the template
    analysis learned (`turnspec.spec.ModelSpec` is the implementation)."""

    name: str
    files: ModelFiles
    limits: RenderLimits | None

    @property
    def templates(self) -> dict[str, str]: ...

    @property
    def template(self) -> str: ...

    @property
    def special_tokens(self) -> dict[str, str]: ...

    @property
    def template_sha256(self) -> str: ...

    @property
    def has_generation_tag(self) -> bool: ...

    @property
    def tokenizer_adds_bos(self) -> bool: ...

    @property
    def vocab(self) -> Vocabulary | None: ...

    @property
    def analysis(self) -> TemplateAnalysis: ...

    @property
    def markup(self) -> Markup: ...

    @property
    def stops(self) -> StopSet: ...

    def select_template(self, chat_template: str | None = None, tools: Any = None) -> str: ...

    def require_vocab(self) -> Vocabulary: ...

    def token_id(self, token: str) -> int | None: ...

    def id_to_token(self, token_id: int) -> str | None: ...

    def control_tokens(self) -> set[str]: ...

    def render(self, messages: Sequence[Mapping[str, Any]], *, tools: Sequence[dict | Callable] | None = None,
               documents: Sequence[Mapping[str, Any]] | None = None, add_generation_prompt: bool = False,
               continue_final_message: bool | str = False, chat_template: str | None = None, **kwargs: Any) -> str: ...
