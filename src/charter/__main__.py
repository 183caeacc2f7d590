"""`python -m charter` runs the `charter` command."""

from charter.cli import main

main()
