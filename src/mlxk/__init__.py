"""mlxk — a model knife for MLX: find, check, fetch, import, convert, run and serve models."""

__version__ = "0.1.0"
JSON_API_SPEC_VERSION = "0.2.3"
