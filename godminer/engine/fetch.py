"""Getting a job's inputs: the dataset from the validator's presigned URL, the base model from the Hub.

Downloads stream to disk under a size cap, into ``<name>.part`` renamed when complete, and are
retried with backoff on network errors and 5xx/408/429 answers (other 4xx are final: the URL is
wrong or expired). The local file name is the URL path's basename, as the reference miner names it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

log = logging.getLogger(__name__)

MAX_DATASET_BYTES = 2_147_483_646  # the validator's MAX_FILE_SIZE_BYTES
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py", "*.jinja"]


class FetchError(RuntimeError):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def filename_from_url(url: str, default: str = "dataset.json") -> str:
    """The basename of the URL's path (query string ignored), made safe for the filesystem."""
    name = unquote(Path(urlparse(url).path).name)
    name = _SAFE.sub("_", name).lstrip(".")
    return name or default


def is_url(value: str) -> bool:
    return urlparse(value).scheme in ("http", "https")


def fetch(
    url: str,
    dest_dir: Path,
    *,
    max_bytes: int = MAX_DATASET_BYTES,
    retries: int = 4,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` into ``dest_dir``; returns the file. Raises FetchError (``permanent`` for 4xx/size)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename_from_url(url)
    if target.is_file():
        return target
    own = client is None
    http = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
    try:
        for attempt in range(retries + 1):
            try:
                return _download(http, url, target, max_bytes)
            except FetchError as exc:
                if exc.permanent or attempt == retries:
                    raise
                wait = backoff_s * 2**attempt
                log.warning("download failed (%s); retrying in %.0f s", exc, wait)
                sleep(wait)
        raise AssertionError("unreachable")
    finally:
        if own:
            http.close()


def _download(http: httpx.Client, url: str, target: Path, max_bytes: int) -> Path:
    part = target.with_name(target.name + ".part")
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= 400:
                transient = response.status_code >= 500 or response.status_code in (408, 429)
                raise FetchError(f"GET {_redact(url)} answered {response.status_code}", permanent=not transient)
            declared = int(response.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise FetchError(f"{_redact(url)} is {declared} bytes, over the {max_bytes} limit", permanent=True)
            written = 0
            with part.open("wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise FetchError(f"{_redact(url)} exceeds the {max_bytes} byte limit", permanent=True)
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise FetchError(f"GET {_redact(url)} failed: {type(exc).__name__}: {exc}") from exc
    except FetchError:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)
    return target


def _redact(url: str) -> str:
    """Presigned query strings carry credentials: never log them."""
    return url.split("?", 1)[0]


def resolve_dataset(value: str, dest_dir: Path, **options: object) -> Path:
    """A local path as is; an http(s) URL downloaded into ``dest_dir``."""
    if is_url(value):
        return fetch(value, dest_dir, **options)  # type: ignore[arg-type]
    path = Path(value[7:] if value.startswith("file://") else value).expanduser()
    if not path.is_file():
        raise FetchError(f"dataset not found: {value}", permanent=True)
    return path


def prefetch_model(model: str, token: str | None = None, cache_dir: Path | None = None) -> Path:
    """A local model directory as is; a Hub id downloaded into the Hub cache (weights, config, tokenizer)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(model, token=token, cache_dir=str(cache_dir) if cache_dir else None,
                                 allow_patterns=MODEL_PATTERNS)
    except Exception as exc:
        raise FetchError(f"could not download model {model}: {type(exc).__name__}: {exc}") from exc
    return Path(path)
