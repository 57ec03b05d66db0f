"""Registry backend ``s3``: paths are objects in an S3 bucket (AWS, MinIO, Ceph, R2, moto...).

Plain boto3 against an endpoint URL. Large writes stream as multipart uploads; a write closed
without being committed (a chunked upload between two requests) keeps its multipart upload
open and parks the bytes that do not yet make a full part in a hidden object under
``<prefix>/.writes/``, where ``writer(path, append=True)`` finds them again. Deleting a
directory also aborts the multipart uploads and parked bytes below it, so nothing is left
behind. Blob reads may be redirected to presigned URLs (``redirect = true``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import ConfigError, DriverUnavailable, InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import FileInfo

READ_CHUNK = 4 * 1024 * 1024
#: S3 refuses parts below 5 MiB except the last one.
MIN_PART_SIZE = 5 * 1024 * 1024
#: S3's longest key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
_WRITES = ".writes"
#: The methods' return type where ``list`` names the method of that name.
_Lines = list[str]


@attrs.frozen
class S3Config:
    bucket: str = option("", "bucket name (required)")
    prefix: str = option("", "key prefix under which the registry keeps its objects")
    endpoint_url: str = option("", "S3-compatible endpoint URL; empty: AWS")
    region: str = option("", "region; empty: from the AWS environment or config files")
    access_key_id: str = option("", "access key; empty: AWS environment, files or roles")
    secret_access_key: str = option("", "secret key; empty: AWS environment, files or roles")
    secret_access_key_file: str = option("", "file holding the secret key (kept out of config)")
    session_token: str = option("", "session token for temporary credentials")
    part_size: int = option(16 * 1024 * 1024, "multipart upload part size in bytes (>= 5 MiB)")
    redirect: bool = option(False, "answer blob GETs with a redirect to a presigned URL")
    redirect_expiry: int = option(1200, "seconds a presigned URL stays valid")
    force_path_style: bool = option(True, "address the bucket in the path, not the host name")


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3Writer:
    """A streaming write of one key: a lazily started multipart upload plus a parked tail."""

    def __init__(
        self,
        backend: S3Backend,
        key: str,
        upload_id: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        stored: int = 0,
        tail: bytes = b"",
    ) -> None:
        self._backend = backend
        self._key = key
        self._upload_id = upload_id
        self._parts = parts or []
        self._stored = stored  # bytes in uploaded parts
        self._buffer = bytearray(tail)
        self._done = False

    @property
    def size(self) -> int:
        return self._stored + len(self._buffer)

    def _client(self) -> Any:
        return self._backend.client

    def _check_open(self) -> None:
        if self._done:
            raise InvalidParameter(f"write to {self._key} after commit, cancel or close")

    def write(self, data: bytes) -> None:
        self._check_open()
        self._buffer += data
        part_size = self._backend.config.part_size
        while len(self._buffer) >= part_size:
            self._upload_part(bytes(self._buffer[:part_size]))
            del self._buffer[:part_size]

    def _upload_part(self, data: bytes) -> None:
        client = self._client()
        if self._upload_id is None:
            started = client.create_multipart_upload(Bucket=self._backend.bucket, Key=self._key)
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        reply = client.upload_part(
            Bucket=self._backend.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self._stored += len(data)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._client().put_object(
            Bucket=self._backend.bucket,
            Key=self._backend.tail_key(self._key),
            Body=bytes(self._buffer),
            Metadata={"upload-id": self._upload_id or ""},
        )

    def commit(self) -> None:
        self._check_open()
        self._done = True
        client = self._client()
        bucket = self._backend.bucket
        if self._upload_id is None:
            client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
        else:
            if self._buffer or not self._parts:
                self._upload_part(bytes(self._buffer))
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._backend.delete_tail(self._key)

    def cancel(self) -> None:
        self._done = True
        if self._upload_id is not None:
            try:
                self._client().abort_multipart_upload(
                    Bucket=self._backend.bucket, Key=self._key, UploadId=self._upload_id
                )
            except Exception as exc:
                if not _is_missing(exc):
                    raise
        self._backend.delete_tail(self._key)


class S3Backend:
    """A :class:`~dockyard.core.interfaces.RegistryBackend` over one bucket and prefix."""

    def __init__(self, config: S3Config) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        if not config.bucket:
            raise InvalidParameter("[registries.s3] bucket is required")
        if config.part_size < MIN_PART_SIZE:
            raise InvalidParameter(f"[registries.s3] part-size must be at least {MIN_PART_SIZE}")
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        secret = config.secret_access_key
        if config.secret_access_key_file:
            try:
                secret = Path(config.secret_access_key_file).read_text().strip()
            except OSError as exc:
                raise InvalidParameter(
                    f"[registries.s3] secret-access-key-file: cannot read "
                    f"{config.secret_access_key_file}: {exc.strerror}"
                ) from None
        session = boto3.session.Session(
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=secret or None,
            aws_session_token=config.session_token or None,
            region_name=config.region or None,
        )
        boto_config = BotoConfig(
            s3={"addressing_style": "path" if config.force_path_style else "auto"},
            max_pool_connections=64,
            retries={"max_attempts": 5, "mode": "standard"},
        )
        self._session = session
        self._boto_config = boto_config
        self._local = threading.local()

    @property
    def client(self) -> Any:
        # boto3 clients are thread-safe, but one per thread avoids contention on its pool.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._session.client(
                "s3", endpoint_url=self.config.endpoint_url or None, config=self._boto_config
            )
            self._local.client = client
        return client

    def check_bucket(self) -> None:
        """Refuse to start on a bucket that does not exist or credentials the endpoint refuses
        (one line naming both), rather than serve a registry whose every request fails."""
        endpoint = self.config.endpoint_url or "AWS S3"
        where = f"[registries.s3] bucket {self.bucket!r} at {endpoint}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            response = getattr(exc, "response", None) or {}
            code = str(response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                problem = "does not exist: create it, or name another"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                problem = (
                    f"refused our credentials ({code}): check access-key-id and "
                    "secret-access-key (or the AWS environment), and that they may use the bucket"
                )
            elif code:
                problem = f"cannot be used: {code} {response.get('Error', {}).get('Message', '')}"
            else:
                problem = f"cannot be reached: {exc}"
            raise ConfigError(f"{where} {problem.strip()}") from None

    # ------------------------------------------------------------------ keys

    def key(self, path: str) -> str:
        if not path.startswith("/"):
            raise InvalidParameter(f"registry path must be absolute: {path!r}")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise InvalidParameter(f"registry path must not contain '.' or '..': {path!r}")
        key = "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)
        # Refused here rather than by S3 mid-operation; the hidden tail of a write is longer.
        if len(self.tail_key(key).encode()) > MAX_KEY_BYTES:
            raise InvalidParameter(f"registry path too long for S3 keys: {path[:200]}...")
        return key

    def _dir_prefix(self, path: str) -> str:
        key = self.key(path)
        return f"{key}/" if key else ""

    def _path_of(self, key: str) -> str:
        relative = key[len(self.prefix) + 1 :] if self.prefix else key
        return "/" + relative.rstrip("/")

    def tail_key(self, key: str) -> str:
        relative = key[len(self.prefix) + 1 :] if self.prefix else key
        hidden = f"{_WRITES}/{relative}"
        return f"{self.prefix}/{hidden}" if self.prefix else hidden

    def delete_tail(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.tail_key(key))

    # ------------------------------------------------------------------ RegistryBackend

    def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        if key:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                return FileInfo(
                    path=path,
                    size=head["ContentLength"],
                    modified=head["LastModified"].timestamp(),
                )
            except Exception as exc:
                if not _is_missing(exc):
                    raise
        listing = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self._dir_prefix(path), MaxKeys=1
        )
        for item in listing.get("Contents", []):
            if not self._hidden(item["Key"]):
                return FileInfo(
                    path=path, size=0, modified=item["LastModified"].timestamp(), is_dir=True
                )
        raise NotFound(f"{path} not found")

    def _hidden(self, key: str) -> bool:
        relative = key[len(self.prefix) + 1 :] if self.prefix else key
        return relative.startswith(f"{_WRITES}/")

    def read(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        key = self.key(path)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length == 0:
            self.stat(path)
            return iter(())
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            arguments["Range"] = f"bytes={offset}-{end}"
        try:
            reply = self.client.get_object(**arguments)
        except Exception as exc:
            if _is_missing(exc):
                raise NotFound(f"{path} not found") from None
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code == "InvalidRange":
                return iter(())
            raise
        return self._stream(reply["Body"])

    @staticmethod
    def _stream(body: Any) -> Iterator[bytes]:
        try:
            while True:
                chunk = body.read(READ_CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def writer(self, path: str, append: bool = False) -> S3Writer:
        key = self.key(path)
        if not append:
            return S3Writer(self, key)
        try:
            tail = self.client.get_object(Bucket=self.bucket, Key=self.tail_key(key))
        except Exception as exc:
            if _is_missing(exc):
                raise NotFound(f"no resumable write of {path}") from None
            raise
        upload_id = tail["Metadata"].get("upload-id") or None
        data = tail["Body"].read()
        parts: list[dict[str, Any]] = []
        stored = 0
        if upload_id is not None:
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    parts.append({"PartNumber": part["PartNumber"], "ETag": part["ETag"]})
                    stored += part["Size"]
        return S3Writer(self, key, upload_id, parts, stored, data)

    def list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        children: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                if not self._hidden(common["Prefix"]):
                    children.add(self._path_of(common["Prefix"]))
            for item in page.get("Contents", []):
                if not self._hidden(item["Key"]):
                    children.add(self._path_of(item["Key"]))
        if not children and path.strip("/"):
            raise NotFound(f"{path} not found")
        return sorted(children)

    def move(self, source: str, destination: str) -> None:
        src, dst = self.key(source), self.key(destination)
        try:
            # The managed copy switches to multipart copy for objects over 5 GB.
            self.client.copy({"Bucket": self.bucket, "Key": src}, self.bucket, dst)
        except Exception as exc:
            if _is_missing(exc):
                raise NotFound(f"{source} not found") from None
            raise
        self.client.delete_object(Bucket=self.bucket, Key=src)

    def delete(self, path: str) -> None:
        key = self.key(path)
        found = False
        if key:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                self.client.delete_object(Bucket=self.bucket, Key=key)
                found = True
            except Exception as exc:
                if not _is_missing(exc):
                    raise
        prefix = self._dir_prefix(path)
        found = self._delete_prefix(prefix) or found
        # In-progress writes at or below the path go too: parked tails and multipart uploads.
        tail = self.tail_key(key)
        self._delete_prefix(tail if tail.endswith("/") else tail + "/")
        if key:
            self.client.delete_object(Bucket=self.bucket, Key=tail)
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key or upload["Key"].startswith(prefix):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        if not found:
            raise NotFound(f"{path} not found")

    def _delete_prefix(self, prefix: str) -> bool:
        deleted = False
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            visible = [k for k in keys if not self._hidden(k["Key"])]
            deleted = deleted or bool(visible)
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": keys[start : start + 1000], "Quiet": True},
                )
        return deleted

    # ------------------------------------------------------------------ RegistryHousekeeping

    def create_exclusive(self, path: str, data: bytes) -> bytes | None:
        key = self.key(path)
        for _ in range(10):
            try:
                # S3's conditional write (If-None-Match: *): refused if the key exists.
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return None
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
            try:
                return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            except Exception as exc:
                if not _is_missing(exc):
                    raise  # released meanwhile: try again
        raise RuntimeError(f"{path} keeps appearing and vanishing")

    def sweep(self, older_than: float, dry_run: bool = False) -> _Lines:
        """Multipart uploads nobody can resume (a writer that died before parking its tail)
        and parked tails whose upload session is gone, not touched since ``older_than``.
        S3 has no directories, so none is ever left empty."""
        swept = []
        root = f"{self.prefix}/" if self.prefix else ""
        parked = f"{root}{_WRITES}/"
        tails: dict[str, str] = {}  # upload id -> the tail that resumes it
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=parked):
            for item in page.get("Contents", []):
                tail = item["Key"]
                target = root + tail[len(parked) :]
                upload_id = self.client.head_object(Bucket=self.bucket, Key=tail)["Metadata"].get(
                    "upload-id", ""
                )
                session = target.rsplit("/", 1)[0] + "/"
                alive = self.client.list_objects_v2(Bucket=self.bucket, Prefix=session, MaxKeys=1)
                if alive.get("KeyCount", 0) or item["LastModified"].timestamp() >= older_than:
                    if upload_id:
                        tails[upload_id] = tail
                    continue
                swept.append(f"parked bytes {self._path_of(target)}")
                if not dry_run:
                    self.client.delete_object(Bucket=self.bucket, Key=tail)
        uploads = self.client.get_paginator("list_multipart_uploads")
        for page in uploads.paginate(Bucket=self.bucket, Prefix=root):
            for upload in page.get("Uploads", []):
                if upload["UploadId"] in tails or upload["Initiated"].timestamp() >= older_than:
                    continue
                swept.append(f"unfinished multipart upload {self._path_of(upload['Key'])}")
                if not dry_run:
                    with contextlib.suppress(Exception):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
        return swept

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if not self.config.redirect or method not in ("GET", "HEAD"):
            return None
        operation = "get_object" if method == "GET" else "head_object"
        return str(
            self.client.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": self.key(path)},
                ExpiresIn=self.config.redirect_expiry,
            )
        )


def check() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise DriverUnavailable("boto3 is not installed (pip install 'dockyard[s3]')") from None


def build(config: S3Config, context: DriverContext) -> S3Backend:
    backend = S3Backend(config)
    backend.check_bucket()
    return backend


CAPABILITIES: frozenset[str] = frozenset({"multipart", "redirect", "shared"})


@hookimpl
def dockyard_registry_backends() -> DriverInfo:
    return DriverInfo(
        name="s3",
        kind=DriverKind.REGISTRY_BACKEND,
        factory=build,
        config_class=S3Config,
        description="registry content in an S3-compatible bucket (boto3, multipart, redirects)",
        capabilities=CAPABILITIES,
        check=check,
    )
