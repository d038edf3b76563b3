"""``python -m tests.hub.cli ARGS`` runs mlxk's CLI with pull/push registered.

main.py registers commands_hub itself once it is wired; until then this adds the same entries
(the public COMMANDS table) so the tests exercise the real argument parsing and envelopes.
"""

from __future__ import annotations

from mlxk.cli import main as cli_main
from mlxk.cli.commands_hub import COMMANDS

for _name, _spec in COMMANDS.items():
    cli_main.COMMANDS.setdefault(_name, _spec)

if __name__ == "__main__":
    raise SystemExit(cli_main.main())
