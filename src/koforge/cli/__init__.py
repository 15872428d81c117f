"""The `koforge` command line: a Typer root with one sub-app per concern."""
