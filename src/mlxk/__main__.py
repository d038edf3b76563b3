"""``python -m mlxk ...`` is ``mlxk ...``: for subprocesses and machines without the script."""

from mlxk.cli.main import main

if __name__ == "__main__":  # importing this module (pydoc, tools) must not run the CLI
    raise SystemExit(main())
