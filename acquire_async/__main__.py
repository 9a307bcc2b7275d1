"""`python -m acquire_async`: the `acquire-async` command."""

from .cli import main

main()
