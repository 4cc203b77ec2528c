"""Where media bytes live, by MEDIA_STORAGE: a folder (file://instance/media) or an S3 bucket
(s3://bucket/prefix, any S3-compatible store through the standard AWS variables).

Keys are made by the app (never from user input): `<brand_id>/<random>` and the like.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from flask import current_app

from config import BASE_DIR


class MediaMissing(Exception):
    """No bytes under that key (never stored, or erased)."""


class MediaStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> list[str]: ...


class FileStore:
    """A folder; a key is a relative path below it. Writes are atomic (temp file, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"media key outside the store: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise MediaMissing(key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".part-")
        )


class S3Store:
    """A bucket and a key prefix; boto3 reads credentials, region and AWS_ENDPOINT_URL."""

    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3  # only when S3 is configured

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    def get(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise MediaMissing(key) from exc
        return answer["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self) -> list[str]:
        found: list[str] = []
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            found.extend(item["Key"][len(start) :] for item in page.get("Contents", []))
        return sorted(found)


def store_for(setting: str) -> MediaStore:
    """The store a MEDIA_STORAGE value names; a relative folder is below the project."""
    if setting.startswith("s3://"):
        parts = urlsplit(setting)
        return S3Store(parts.netloc, parts.path)
    if setting.startswith("file://"):
        folder = Path(setting.removeprefix("file://"))
        return FileStore(folder if folder.is_absolute() else BASE_DIR / folder)
    raise ValueError(f"MEDIA_STORAGE must start with file:// or s3://, not {setting!r}")


def media_store() -> MediaStore:
    """The application's store, made once per application."""
    extensions = current_app.extensions
    if "media_store" not in extensions:
        extensions["media_store"] = store_for(current_app.config["MEDIA_STORAGE"])
    return extensions["media_store"]
