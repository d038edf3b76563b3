"""The hub as huggingface_hub reaches it: endpoint, API object, headers, repo names, and its
failures turned into mlxk errors that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlxk import __version__
from mlxk.config import Settings
from mlxk.errors import (
    AccessDeniedError,
    DownloadFailedError,
    MlxkError,
    NetworkError,
    OfflineError,
    RemoteNotFoundError,
    RevisionMissingError,
    ValidationError,
)
from mlxk.ops.download import check_ref, httpx
from mlxk.store.resolve import MAX_NAME, is_explicit_path, split_rev

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint_of(settings: Settings) -> str:
    return (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def hf_api(settings: Settings) -> Any:
    from huggingface_hub import HfApi

    return HfApi(
        endpoint=endpoint_of(settings), token=settings.hf_token,
        library_name="mlxk", library_version=__version__,
    )  # fmt: skip


def gated_message(settings: Settings, repo_id: str) -> str:
    return (
        f"Access denied: '{repo_id}' is a gated model. Accept the terms on the model page "
        f"({endpoint_of(settings)}/{repo_id}) and set HF_TOKEN to an access token of that account."
    )


@contextmanager
def hub_errors(settings: Settings, repo_id: str, rev: str | None) -> Iterator[None]:
    """Turn huggingface_hub / HTTP failures into mlxk errors that say what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: test it first
        raise AccessDeniedError(gated_message(settings, repo_id)) from exc
    except RepositoryNotFoundError as exc:
        raise RemoteNotFoundError(
            f"Model '{repo_id}' not found on {endpoint_of(settings)}. Check the name (org/name); "
            "if the repository is private, set HF_TOKEN."
        ) from exc
    except RevisionNotFoundError as exc:
        raise RevisionMissingError(f"Revision '{rev}' not found for {repo_id}") from exc
    except RemoteEntryNotFoundError as exc:
        raise DownloadFailedError(
            f"{repo_id}: a listed file is missing on the hub ({exc})"
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise OfflineError("HF_HUB_OFFLINE is set: unset it to reach the hub") from exc
    except HfHubHTTPError as exc:
        raise _http_error(settings, repo_id, exc) from exc
    except HFValidationError as exc:
        raise ValidationError(f"Invalid model name '{repo_id}': {exc}") from exc
    except httpx.TransportError as exc:
        raise NetworkError(
            f"Cannot reach {endpoint_of(settings)} ({exc or type(exc).__name__}). Check the "
            "connection (or HF_ENDPOINT) and run the same command again (a pull resumes "
            "where it stopped)."
        ) from exc


def _http_error(settings: Settings, repo_id: str, exc: Any) -> MlxkError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return AccessDeniedError(
            f"Access denied for '{repo_id}' (HTTP {status}). Set HF_TOKEN to a token with access."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else f"HTTP {status}"
    return NetworkError(
        f"The hub answered HTTP {status} for '{repo_id}' ({first}). Try again later; "
        "downloaded parts are kept and resume."
    )


def http_headers(settings: Settings) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers: dict[str, str] = build_hf_headers(
        token=settings.hf_token, library_name="mlxk", library_version=__version__
    )
    headers["Accept-Encoding"] = "identity"  # sizes and Range offsets are of the raw file
    return headers


def parse_pull_spec(spec: str) -> tuple[str, str | None]:
    """``name[@rev]`` → (repo-id-shaped name, revision); the same rules as the resolver."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    spec = spec.strip()
    if not spec:
        raise ValidationError("Invalid model name: empty")
    if is_explicit_path(spec):
        raise ValidationError(f"'{spec}' is a path; pull takes a hub name like org/name[@rev]")
    name, rev = split_rev(spec)
    if len(name) > MAX_NAME or name.startswith("/") or "//" in name or name.endswith("/"):
        raise ValidationError(f"Invalid model name '{name}'")
    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        raise ValidationError(f"Invalid model name '{name}': {exc}") from exc
    return name, check_ref(rev) if rev is not None else None
