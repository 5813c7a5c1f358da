"""The Storage port on S3-compatible object storage: ``s3://bucket/prefix/`` (through s3fs).

Needs ``skyweave[s3]``.  Objects are ``s3://<bucket>/<prefix><key>``; the URI is the object's
address as s3fs, the AWS CLI and ``fsspec.open`` write it (not percent-encoded), so a product's
URI opens as it is in a notebook.

* **Streaming, multipart.** ``put`` sends what it reads in parts of ``part_size`` bytes (one
  ``PutObject`` below that, else a multipart upload), hashing each part as it is read: the
  checksum is the content's sha256, never obtained by reading the object back, and one part is
  held in memory at a time (the storage contract's memory test holds it to that).  A failed
  ``put`` aborts its multipart upload; S3 makes an object visible only whole, so a reader sees
  the old object or the new one, never a part.
* **Reads**: ``get`` and ``checksum`` stream one GET in ``BLOCK_SIZE`` blocks, hashing on the
  way (the event loop receives while the caller hashes and writes); ``open`` reads in ranged
  requests of ``BLOCK_SIZE``.  The integrity check of a cached product reads the object (S3's
  ETag is not a content hash for multipart objects).
* **Credentials** come from where boto looks for them (``AWS_ACCESS_KEY_ID``/
  ``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared
  ``~/.aws/credentials``/``config`` files, instance roles), and the endpoint of a non-AWS server
  from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.  None of it is part of a storage URL
  (one with ``user:secret@`` is refused), so none of it reaches the store, the bus, job files or
  provenance, which only ever hold ``s3://bucket/key`` URIs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from skyweave.errors import SkyweaveError
from skyweave.storage.base import (
    BLOCK_SIZE,
    Hashing,
    ObjectMissingError,
    ObjectStat,
    Storage,
    StoredFile,
    UnsafeKeyError,
    check_key,
)

log = logging.getLogger(__name__)

PART_SIZE = 32 << 20
"""Bytes per part of a multipart upload (S3 wants at least 5 MiB for every part but the last)."""


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix/``; keys are the paths after the prefix."""

    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, fs: Any = None, part_size: int = PART_SIZE) -> None:
        if not bucket or "/" in bucket or "@" in bucket or ":" in bucket:
            raise SkyweaveError(f"{bucket!r} is not an S3 bucket name",
                                hint="write the storage as s3://BUCKET/optional/prefix; credentials go in "
                                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws, never in the URL")
        self.bucket = bucket
        self.prefix = "/".join(check_key(prefix.strip("/")).split("/")) + "/" if prefix.strip("/") else ""
        self.part_size = max(part_size, 5 << 20)
        self.fs = fs if fs is not None else filesystem()

    # -- keys and URIs ---------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self.prefix}{check_key(key)}"

    def uri(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def key(self, uri: str) -> str:
        root = f"s3://{self.bucket}/{self.prefix}"
        if not uri.startswith(root) or uri == root:
            raise UnsafeKeyError(f"{uri!r} is not inside the storage at {root}",
                                 hint="give a URI of an object under the storage's bucket and prefix")
        return check_key(uri[len(root):])

    def within(self, folder: str) -> Storage:
        return S3Storage(self.bucket, self.prefix + check_key(folder.strip("/")), fs=self.fs,
                         part_size=self.part_size)

    # -- writing ---------------------------------------------------------------------------------
    def put(self, key: str, source: BinaryIO) -> StoredFile:
        """One ``PutObject`` for an object smaller than a part, else a multipart upload that sends
        each part as soon as it is read (one part in memory at a time); aborted if anything
        fails, so nothing becomes visible."""
        where = {"Bucket": self.bucket, "Key": self.prefix + check_key(key)}
        hashing = Hashing()
        part = self._read_part(source, hashing)
        if len(part) < self.part_size:
            self.fs.call_s3("put_object", Body=part, **where)
            return StoredFile(self.uri(key), hashing.checksum, hashing.size)
        upload = self.fs.call_s3("create_multipart_upload", **where)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            while part:
                sent = self.fs.call_s3("upload_part", Body=part, PartNumber=len(parts) + 1, UploadId=upload,
                                       **where)
                parts.append({"PartNumber": len(parts) + 1, "ETag": sent["ETag"]})
                del part, sent
                part = self._read_part(source, hashing)
            self.fs.call_s3("complete_multipart_upload", UploadId=upload, MultipartUpload={"Parts": parts},
                            **where)
        except BaseException:
            try:
                self.fs.call_s3("abort_multipart_upload", UploadId=upload, **where)
            except Exception as exc:  # the original error matters more; S3 expires it in the end
                log.warning("could not abort the multipart upload of %s: %s", self.uri(key), exc)
            raise
        return StoredFile(self.uri(key), hashing.checksum, hashing.size)

    def _read_part(self, source: BinaryIO, hashing: Hashing) -> bytes:
        """Up to ``part_size`` bytes of ``source`` (fewer only at its end), hashed.  One read when
        the source gives whole reads (a file does), so the part is never copied; sent as
        ``bytes``, as s3fs does: a stream body is read by aiohttp in 64 KiB steps through a
        thread pool, which halved the upload rate (aiohttp's ResourceWarning about large bytes
        bodies is expected; the tests ignore it)."""
        part = source.read(self.part_size)
        if 0 < len(part) < self.part_size:  # a short read: gather the rest of the part
            rest = [part]
            size = len(part)
            while size < self.part_size and (block := source.read(self.part_size - size)):
                rest.append(block)
                size += len(block)
            part = b"".join(rest)
            del rest
        hashing.update(part)
        return part

    def delete(self, key: str) -> None:
        self.stat(key)
        self.fs.rm_file(self._path(key))

    # -- reading ---------------------------------------------------------------------------------
    def _missing(self, key: str) -> ObjectMissingError:
        return ObjectMissingError(f"no object at {self.uri(key)}", uri=self.uri(key),
                                  hint="check the product's URI; it may have been deleted")

    def open(self, key: str) -> BinaryIO:
        try:
            return cast("BinaryIO", self.fs.open(self._path(key), "rb", block_size=BLOCK_SIZE,
                                                 cache_type="readahead"))
        except FileNotFoundError:
            raise self._missing(key) from None

    def _stream(self, key: str, sink: Callable[[bytes], object]) -> Hashing:
        """The object's bytes handed to ``sink`` block by block as one GET streams them, hashed.

        The event loop's thread receives while this thread hashes and writes (a queue of a few
        blocks between them), so hashing does not hold up the network."""
        check_key(key)
        blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        stop = threading.Event()

        async def receive() -> None:
            try:
                try:
                    response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.prefix + key)
                except FileNotFoundError:
                    raise self._missing(key) from None
                body = response["Body"]
                try:
                    while not stop.is_set() and (block := await body.read(BLOCK_SIZE)):
                        while not stop.is_set():
                            try:
                                blocks.put_nowait(block)
                                break
                            except queue.Full:
                                await asyncio.sleep(0.001)
                finally:
                    body.close()
            finally:
                while not stop.is_set():  # the end mark (the reader takes blocks until it sees it)
                    try:
                        blocks.put_nowait(None)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.001)

        hashing = Hashing()
        receiving = asyncio.run_coroutine_threadsafe(receive(), self.fs.loop)
        try:
            while (block := blocks.get()) is not None:
                hashing.update(block)
                sink(block)
        finally:
            stop.set()
            while True:  # let the receiver finish (it may wait for room in the queue)
                try:
                    blocks.get_nowait()
                except queue.Empty:
                    if receiving.done():
                        break
                    concurrent.futures.wait([receiving], timeout=0.01)
            receiving.result()  # the receiver's error (a missing object...), if any
        return hashing

    def get(self, key: str, dest: Path | str) -> StoredFile:
        """One streamed GET into a temporary file beside ``dest``, hashed on the way."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as writer:
                hashing = self._stream(key, writer.write)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return StoredFile(self.uri(key), hashing.checksum, hashing.size)

    def stat(self, key: str) -> ObjectStat:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            raise self._missing(key) from None
        if info.get("type") != "file":
            raise self._missing(key)
        modified = info.get("LastModified")
        return ObjectStat(int(info["size"]), modified.timestamp() if modified is not None else 0.0,
                          str(info.get("ETag") or "").strip('"'))

    def checksum(self, key: str) -> str:
        return self._stream(key, lambda _block: None).checksum

    def list(self, prefix: str = "") -> Iterator[str]:
        folder = check_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        root = f"{self.bucket}/{self.prefix}"
        try:
            found = self.fs.find(root + folder)
        except FileNotFoundError:
            return
        yield from sorted(path[len(root):] for path in found if path.startswith(root + folder))


_filesystems: dict[tuple[int, str], Any] = {}


def filesystem() -> Any:
    """An ``s3fs.S3FileSystem`` with credentials and endpoint from boto's usual places.

    One per process and endpoint (a forked child makes its own), without a listings cache:
    another process (a worker) writes to the same bucket, and a stale listing would make a stored
    product look missing.
    """
    try:
        import s3fs
    except ImportError as exc:  # an optional dependency
        raise SkyweaveError("s3:// storage needs s3fs, which is not installed",
                            hint="pip install 'skyweave[s3]'") from exc
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    found = _filesystems.get((os.getpid(), endpoint or ""))
    if found is None:
        client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
        found = _filesystems[(os.getpid(), endpoint or "")] = s3fs.S3FileSystem(
            client_kwargs=client_kwargs, use_listings_cache=False, skip_instance_cache=True)
    return found


def open_s3(url: str) -> Storage:
    """The storage at ``s3://bucket/prefix``."""
    rest = url.partition("://")[2]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise SkyweaveError("an s3:// storage URL must not carry credentials",
                            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead, "
                                 "and write the storage as s3://BUCKET/prefix")
    return S3Storage(bucket, prefix)
