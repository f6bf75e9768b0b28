"""Run several ``hubkit`` commands in one process, one JSON list of arguments each:
``python cli_commands.py '["train", "spm", ...]' '["eval", ...]'``. Under ``accelerate launch`` this starts
the processes once for all the commands (each start imports torch, diffusers and the methods: seconds of CPU).
"""

import json
import sys

import typer

from hubkit.cli import app

command = typer.main.get_command(app)
for args in sys.argv[1:]:
    code = command.main(args=json.loads(args), prog_name="hubkit", standalone_mode=False)
    if code:
        sys.exit(code)
