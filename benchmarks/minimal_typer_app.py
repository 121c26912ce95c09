"""The start-up reference for ``usersctl --help``: the smallest Typer app with one command.

``MINIMAL_TYPER_HELP=plain`` turns Rich help off the way usersctl does (``rich_markup_mode=None``);
otherwise help is rendered by Rich, Typer's default.

    python minimal_typer_app.py --help
"""

import os

import typer

app = typer.Typer(
    rich_markup_mode=None if os.environ.get("MINIMAL_TYPER_HELP") == "plain" else "rich",
    no_args_is_help=True,
)


@app.command()
def hello(name: str, count: int = 1, shout: bool = False) -> None:
    """Greet NAME, COUNT times."""
    for _ in range(count):
        typer.echo(f"Hello {name}!".upper() if shout else f"Hello {name}!")


if __name__ == "__main__":
    app()
