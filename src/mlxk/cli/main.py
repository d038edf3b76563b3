"""Entry point: parse arguments, call one command, render, map errors to exit codes — once."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from mlxk import __version__
from mlxk.cli import (
    commands_bench,
    commands_embed,
    commands_hub,
    commands_models,
    commands_run,
    commands_serve,
)
from mlxk.cli.commands import COMMANDS as CORE_COMMANDS
from mlxk.cli.commands import VERSION, CommandResult
from mlxk.config import Settings
from mlxk.errors import MlxkError, UsageError

COMMANDS = {
    **CORE_COMMANDS,
    **commands_models.COMMANDS,
    **commands_run.COMMANDS,
    **commands_hub.COMMANDS,
    **commands_serve.COMMANDS,
    **commands_bench.COMMANDS,
    **commands_embed.COMMANDS,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlxk", description="A model knife for MLX: text, vision and audio.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON envelope")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        # SUPPRESS keeps a top-level --json from being reset by the subcommand's default.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        spec.add_arguments(p)
    return parser


def _emit_json(command: str | None, data: Any, error: dict[str, Any] | None) -> None:
    envelope = {
        "status": "error" if error else "success",
        "command": command,
        "data": data,
        "error": error,
    }
    sys.stdout.write(json.dumps(envelope, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


_LONG_RUNNING = frozenset({"serve"})


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    command: str | None = None
    try:
        args = build_parser().parse_args(args_list)
        command = args.command
        # `mlxk list | head` should end quietly; a server must never die because one client
        # closed its socket (SIGPIPE would kill it mid-write): there it stays ignored
        if command not in _LONG_RUNNING:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        settings = Settings.from_env()
        if not settings.debug:
            # Library deprecation chatter (transformers, mlx-vlm) is noise to a CLI user.
            warnings.simplefilter("ignore", FutureWarning)
        if args.version:
            result = VERSION.run(args, settings)
            command = "version"
        elif command is None:
            if want_json:
                raise UsageError("no command given")
            build_parser().print_help()
            return 2
        else:
            result = COMMANDS[command].run(args, settings)
        return _finish(command, result, getattr(args, "json", False))
    except MlxkError as exc:
        return _fail(command, exc, want_json)
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted.\n")
        return 130
    except OSError as exc:  # permissions, full disks, vanished files: say which and why
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(command, _os_error(exc, where), want_json)
    except Exception as exc:  # the one edge where an unexpected bug becomes a clean error
        if Settings.from_env().debug:
            raise
        internal = MlxkError(f"{type(exc).__name__}: {exc} (set MLXK_DEBUG=1 for a traceback)")
        internal.type = "InternalError"
        return _fail(command, internal, want_json)


def _finish(command: str, result: CommandResult, as_json: bool) -> int:
    if as_json:
        _emit_json(command, result.data, None)
    elif result.human is not None:
        result.human()
    return result.exit_code


def _fail(command: str | None, exc: MlxkError, as_json: bool) -> int:
    if as_json:
        _emit_json(command, None, exc.to_dict())
    else:
        prefix = f"{command}: " if command else ""
        sys.stderr.write(f"{prefix}Error: {exc.message}\n")
        if exc.exit_code == 2:
            sys.stderr.write("Run 'mlxk --help' for usage.\n")
    return exc.exit_code


def _os_error(exc: OSError, where: str) -> MlxkError:
    from mlxk.errors import PermissionDeniedError

    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"Permission denied{where}")
    err = MlxkError(f"{reason}{where}")
    err.type = "os_error"
    return err


def main_run() -> int:
    """``mlx-run MODEL ...`` is ``mlxk run MODEL ...``."""
    return main(["run", *sys.argv[1:]])


def version_string() -> str:
    return f"mlxk {__version__}"


if __name__ == "__main__":
    raise SystemExit(main())
