"""An OpenAI-compatible HTTP server over one model (`turnspec serve`).

    app = create_app(spec, engine, model_id="my-model", api_key=None)   # a FastAPI app; run it with uvicorn

fastapi, uvicorn and pydantic are imported only when this package is used (`pip install 'turnspec[serve]'`):
`import turnspec` never pulls them in.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See `turnspec.server.app.create_app` (imported here lazily, with fastapi)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
