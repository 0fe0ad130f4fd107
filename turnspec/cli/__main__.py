"""`python -m turnspec.cli`: the same as the `turnspec` command."""

from . import main

main()
