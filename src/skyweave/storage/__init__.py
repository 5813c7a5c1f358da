"""Product storage: where products' files live, how they are checksummed and addressed by URI."""

from skyweave.storage.local import BLOCK_SIZE, LocalStorage, StoredFile, checksum_file, file_uri

__all__ = ["BLOCK_SIZE", "LocalStorage", "StoredFile", "checksum_file", "file_uri"]
