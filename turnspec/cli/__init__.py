"""The `turnspec` command. Sub-commands live in their own modules and import their heavy parts lazily."""

from __future__ import annotations

import sys

import typer

from .common import fail_cleanly

app = typer.Typer(
    help="Chat with local LLMs correctly: exact chat templates, full stop sets, clean output.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _group() -> None:
    """turnspec: how a model frames a conversation, where generation starts, what ends a turn."""


from . import render_cmd  # noqa: E402  (registers its command on `app`)

render_cmd.register(app)
for _name in ("run_cmd", "onboard_cmd", "serve_cmd", "pull_cmd", "list_cmd", "rm_cmd", "encode_cmd", "convert_cmd",
              "parse_cmd"):
    try:
        __import__(f"{__name__}.{_name}", fromlist=["register"]).register(app)
    except ModuleNotFoundError as exc:  # a command still being built must not break the others
        if exc.name != f"{__name__}.{_name}":
            raise


def main() -> None:
    """Entry point: run the app, turning turnspec errors into one line on stderr (never a traceback)."""
    with fail_cleanly():
        app()


if __name__ == "__main__":
    sys.exit(main())
