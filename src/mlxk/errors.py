"""One exception tree for mlxk.

Every error knows its JSON ``type`` (kept from mlx-knife where one existed), its CLI exit
code and its HTTP status, so the CLI and the server map errors in exactly one place each.
"""

from __future__ import annotations

from typing import Any


class MlxkError(Exception):
    """Base of every error mlxk raises on purpose."""

    type: str = "error"
    exit_code: int = 1
    http_status: int = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.extra}


class UsageError(MlxkError, ValueError):
    type = "CommandError"
    exit_code = 2
    http_status = 400


class ValidationError(MlxkError, ValueError):
    type = "ValidationError"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.param = param  # the request field at fault; the HTTP edge names it


class ModelNotFoundError(MlxkError, LookupError):
    type = "model_not_found"
    http_status = 404


class AmbiguousMatchError(MlxkError, LookupError):
    type = "ambiguous_match"
    http_status = 400

    def __init__(self, spec: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:20]) + (" …" if len(matches) > 20 else "")
        super().__init__(
            f"Ambiguous model specification '{spec}'. Could be: {shown}", matches=matches
        )
        self.matches = matches


class HashNotFoundError(MlxkError, LookupError):
    type = "hash_not_found"
    http_status = 404


class WorkspaceError(MlxkError):
    type = "workspace_error"
    http_status = 400


class CacheSanctityError(MlxkError):
    type = "cache_sanctity"
    http_status = 400


class TargetExistsError(MlxkError):
    type = "InvalidTargetError"
    http_status = 400


class LocksPresentError(MlxkError):
    type = "locks_present"
    http_status = 409


class ConfirmationRequired(MlxkError):
    type = "requires_confirmation"
    http_status = 409


class PermissionDeniedError(MlxkError, PermissionError):
    type = "permission_denied"
    http_status = 403


class SafetensorsHeaderError(MlxkError, ValueError):
    """A safetensors file whose header is truncated, corrupt or inconsistent with its size."""

    type = "invalid_safetensors"
    http_status = 400


class ImportFormatError(MlxkError, ValueError):
    """A file to import is truncated, corrupt or of an unsupported kind."""

    type = "import_error"
    http_status = 400


class UnsupportedArchitectureError(ImportFormatError):
    type = "unsupported_architecture"


class ConversionError(MlxkError):
    type = "convert_error"


class CapabilityMismatchError(MlxkError):
    """An input the model cannot take (audio to a text model, …), refused before loading."""

    type = "capability_mismatch"
    http_status = 400


class MediaError(MlxkError, ValueError):
    """Audio or image input that cannot be decoded or breaks a limit."""

    type = "media_error"
    http_status = 400


class MediaTooLargeError(MediaError):
    type = "media_too_large"
    http_status = 413


class ImageBombError(MediaTooLargeError):
    """An image whose header declares more pixels than may be decoded (a decompression bomb).

    A malformed input field rather than an oversized upload, hence 400 (security battery #9).
    """

    type = "image_too_many_pixels"
    http_status = 400


class InlineDataTooLargeError(MediaTooLargeError):
    """A base64 string in a JSON body over its limit: a bad field (400, security battery #10),
    unlike an oversized upload body (413)."""

    type = "inline_data_too_large"
    http_status = 400


class MemoryGateError(MlxkError):
    """The model does not fit in the memory available; refused before loading."""

    type = "insufficient_memory"
    http_status = 507


class BackendUnavailableError(MlxkError):
    type = "backend_unavailable"
    http_status = 500


class GenerationError(MlxkError):
    type = "execution_error"
    http_status = 500


# -- the hub: pull, clone, push (ops.download, ops.hub) ---------------------------------------


class AccessDeniedError(MlxkError):
    type = "access_denied"
    http_status = 403


class RemoteNotFoundError(MlxkError, LookupError):
    type = "model_not_found"
    http_status = 404


class RevisionMissingError(MlxkError, LookupError):
    type = "revision_not_found"
    http_status = 404


class NetworkError(MlxkError):
    type = "network_error"
    http_status = 502


class DiskFullError(MlxkError):
    type = "disk_full"
    http_status = 507


class HashMismatchError(MlxkError):
    type = "hash_mismatch"
    http_status = 502


class UnsafeRepoError(MlxkError):
    """The hub sent something we refuse to turn into a path (traversal, odd ETag, …)."""

    type = "unsafe_repo"
    http_status = 502


class OfflineError(MlxkError):
    type = "offline"
    http_status = 503


class DownloadFailedError(MlxkError):
    type = "download_failed"
    http_status = 502


class AuthError(MlxkError):
    type = "auth_error"
    http_status = 401


class RepoMissingError(MlxkError, LookupError):
    type = "repo_not_found"
    http_status = 404


class WorkspaceMissingError(MlxkError, LookupError):
    type = "workspace_not_found"
    http_status = 404


class AmbiguousWorkspaceError(MlxkError, LookupError):
    type = "ambiguous_workspace"
    http_status = 400


class UploadFailedError(MlxkError):
    type = "upload_failed"
    http_status = 502
