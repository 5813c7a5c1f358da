"""Product write + read throughput through skyweave's S3 storage vs raw s3fs, same server.

skyweave: ``S3Storage.put_file`` (sha256 computed while streaming, multipart in 32 MiB parts
above one part) then ``S3Storage.get`` (to a local file, sha256 on the way) — what a worker does
to store an output and
to stage an input.  Raw s3fs: ``S3FileSystem.put_file`` then ``get_file`` of the same file, no
checksum.  Runs alternate (skyweave, s3fs, s3fs, skyweave, ...) and medians are compared; the target
is skyweave >= 80 % of s3fs.  Not a test: the figures depend on the machine and the server.

    scripts/services.sh start moto
    .venv/bin/python bench/s3_bench.py [--endpoint http://127.0.0.1:PORT] [--size-mb 64] [--reps 5]

Without ``--endpoint`` the moto server of ``scripts/services.sh`` (``.services/env``) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from skyweave.storage.s3 import S3Storage, filesystem

ROOT = Path(__file__).resolve().parents[1]


def _endpoint(given: str | None) -> str:
    if given:
        return given
    env = ROOT / ".services" / "env"
    for line in env.read_text().splitlines() if env.is_file() else []:
        key, _, value = line.partition("=")
        if key == "SKYWEAVE_TEST_S3_URL":
            return value
    raise SystemExit("no S3 endpoint: give --endpoint or run `scripts/services.sh start moto`")


def _skyweave(storage: S3Storage, source: Path, dest: Path, key: str) -> tuple[float, float]:
    started = time.perf_counter()
    stored = storage.put_file(source, key)
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    got = storage.get(key, dest)
    read = time.perf_counter() - started
    assert got.checksum == stored.checksum
    return wrote, read


def _s3fs(fs: object, bucket: str, source: Path, dest: Path, key: str) -> tuple[float, float]:
    started = time.perf_counter()
    fs.put_file(str(source), f"{bucket}/raw/{key}")  # type: ignore[attr-defined]
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    fs.get_file(f"{bucket}/raw/{key}", str(dest))  # type: ignore[attr-defined]
    read = time.perf_counter() - started
    return wrote, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint")
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["AWS_ENDPOINT_URL"] = _endpoint(args.endpoint)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    fs = filesystem()
    bucket = f"skyweave-bench-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    storage = S3Storage(bucket, "products")
    size = args.size_mb << 20
    times: dict[str, list[tuple[float, float]]] = {"skyweave": [], "s3fs": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "product.fits"
        with open(source, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(1 << 20))
        for rep in range(args.reps):
            order = ["skyweave", "s3fs"] if rep % 2 == 0 else ["s3fs", "skyweave"]
            for tool in order:
                dest = Path(tmp) / f"back-{tool}-{rep}"
                key = f"run/act/{rep}.fits"
                result = (_skyweave(storage, source, dest, key) if tool == "skyweave"
                          else _s3fs(fs, bucket, source, dest, key))
                times[tool].append(result)
                dest.unlink()
    fs.rm(bucket, recursive=True)
    report: dict[str, object] = {"size_mb": args.size_mb, "reps": args.reps, "load": os.getloadavg()[0]}
    figures: dict[str, dict[str, float]] = {}
    for tool, runs in times.items():
        write = statistics.median(size / w / 1e6 for w, _ in runs)
        read = statistics.median(size / r / 1e6 for _, r in runs)
        both = statistics.median(2 * size / (w + r) / 1e6 for w, r in runs)
        figures[tool] = {"write_MB_s": round(write, 1), "read_MB_s": round(read, 1),
                         "write_read_MB_s": round(both, 1)}
    sw, raw = figures["skyweave"], figures["s3fs"]
    report.update(figures)
    report["ratio"] = {k: round(sw[k] / raw[k], 3) for k in sw}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
