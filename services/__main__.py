"""``python -m services``: the same as the ``passpost`` command."""

from services.cli import app

app(prog_name="passpost")
