"""`python -m turnspec`: the same as the `turnspec` command (for when the script's folder is not on PATH)."""

from turnspec.cli import main

main()
