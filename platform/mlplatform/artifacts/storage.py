"""Copy artifact directories to and from any pyarrow filesystem (local path, ``file://``, ``s3://``, ``gs://``),
recording and verifying the SHA-256 and size of every file."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mlplatform.errors import IntegrityError, InvalidInput, NotFound, Unavailable

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_directory(directory: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """Per-file ``{relpath: {sha256, size}}`` and one digest over the sorted manifest (the artifact's identity)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"artifact directory {directory} does not exist", field="artifact_dir")
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    if not files:
        raise InvalidInput(f"artifact directory {directory} is empty", field="artifact_dir")
    return files, manifest_digest(files)


def join_uri(base: str, *parts: str) -> str:
    """Append path segments to a URI or path. A URI's query string stays at the end, so an S3-compatible endpoint
    in the URI (``s3://bucket/prefix?endpoint_override=host:port&scheme=http``) survives every join."""
    head, sep, query = base.partition("?") if "://" in base else (base, "", "")
    joined = "/".join([head.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return f"{joined}{sep}{query}"


def manifest_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{name}\0{meta['sha256']}\0{meta['size']}\n" for name, meta in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


class ArtifactStore:
    """Artifacts under one root URI. Uploads land in a unique folder, so concurrent writers never collide and a
    registered folder is never rewritten."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri.rstrip("/")
        try:
            if "://" in self.root_uri:
                self._fs, self._root = pafs.FileSystem.from_uri(self.root_uri)
            else:
                self._fs, self._root = pafs.LocalFileSystem(), str(Path(self.root_uri).expanduser().resolve())
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for bad or unreachable URIs
            raise Unavailable(f"artifact store {root_uri} cannot be opened: {exc}") from exc
        self.is_local = isinstance(self._fs, pafs.LocalFileSystem)

    def uri_for(self, relative: str) -> str:
        return join_uri(self.root_uri if "://" in self.root_uri else self._root, relative)

    def _path(self, uri: str) -> str:
        if "://" in uri:
            _, path = pafs.FileSystem.from_uri(uri)
            return path
        return uri

    def upload_directory(self, local_dir: Path, prefix: str) -> tuple[str, dict[str, dict[str, Any]], str]:
        """Copy ``local_dir`` to ``<root>/<prefix>/<uuid>``; returns (uri, files, digest)."""
        files, digest = hash_directory(local_dir)
        relative = f"{prefix}/{uuid.uuid4().hex}"
        target = f"{self._root}/{relative}"
        try:
            for name in files:
                self._fs.create_dir(os.path.dirname(f"{target}/{name}"), recursive=True)
                with open(Path(local_dir) / name, "rb") as src, self._fs.open_output_stream(f"{target}/{name}") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        except OSError as exc:
            raise Unavailable(f"could not write artifacts to {self.root_uri}: {exc}") from exc
        # Verify what landed, so a broken upload is refused before anything points to it.
        self.verify(self.uri_for(relative), files)
        return self.uri_for(relative), files, digest

    def list_dirs(self, uri: str) -> list[str]:
        """Names of the folders directly under ``uri`` (none when it does not exist)."""
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._path(uri), allow_not_found=True))
        except OSError as exc:
            raise Unavailable(f"could not list {uri}: {exc}") from exc
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def exists(self, uri: str) -> bool:
        return self._fs.get_file_info(self._path(uri)).type != pafs.FileType.NotFound

    def delete_dir(self, uri: str) -> None:
        try:
            self._fs.delete_dir(self._path(uri))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise Unavailable(f"could not delete {uri}: {exc}") from exc

    def verify(self, uri: str, files: dict[str, dict[str, Any]]) -> None:
        base = self._path(uri)
        for name, meta in files.items():
            try:
                digest = hashlib.sha256()
                with self._fs.open_input_stream(f"{base}/{name}") as handle:
                    while chunk := handle.read(CHUNK):
                        digest.update(chunk)
            except FileNotFoundError:
                raise IntegrityError(f"artifact file {name} is missing from {uri}", field=name) from None
            if digest.hexdigest() != meta["sha256"]:
                raise IntegrityError(
                    f"artifact file {name} in {uri} fails its sha256 check (expected {meta['sha256'][:12]}, "
                    f"found {digest.hexdigest()[:12]}); refusing to load it", field=name)

    def fetch_verified(self, uri: str, files: dict[str, dict[str, Any]], cache_dir: Path) -> Path:
        """A local, verified copy of an artifact folder. Local artifacts are copied too, so a file changed after
        verification cannot reach the loader (no time-of-check/time-of-use gap)."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        local = Path(tempfile.mkdtemp(prefix="artifact-", dir=cache_dir))
        base = self._path(uri)
        try:
            for name, meta in files.items():
                dest = local / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with self._fs.open_input_stream(f"{base}/{name}") as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                except FileNotFoundError:
                    raise IntegrityError(f"artifact file {name} is missing from {uri}", field=name) from None
                found = sha256_file(dest)
                if found != meta["sha256"]:
                    raise IntegrityError(
                        f"artifact file {name} in {uri} fails its sha256 check (expected {meta['sha256'][:12]}, "
                        f"found {found[:12]}); refusing to load it", field=name)
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise
        return local
