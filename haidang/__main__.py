"""`python -m haidang` runs the CLI."""

from haidang.cli import app

app(prog_name="haidang")
