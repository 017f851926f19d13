"""``python -m lmbench.cli``: the same as the ``lmbench`` command."""

from lmbench.cli import main

main()
