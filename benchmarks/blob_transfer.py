"""Upload + download of one large file to Azure Blob (Azurite): our ``azure_blob`` datastore
against the ``azure-storage-blob`` client's own ``upload_blob``/``download_blob`` with default
settings, in the same run, on the same emulator.

Ours also hashes every byte (SHA-256 recorded on upload, verified on download) and downloads
into a temporary file renamed into place; the SDK baseline does neither.

    source scripts/services.sh   # starts Azurite, exports AML_TEST_AZURITE_CONNECTION_STRING
    python benchmarks/blob_transfer.py [--mb 200] [--rounds 2]

The last line is ``ratio: <our time / SDK time, upload + download, best round>x`` (below 1: ours
is faster).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from airflow_aml.datastores import build_datastore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    conn = os.environ.get("AML_TEST_AZURITE_CONNECTION_STRING")
    if not conn:
        print("AML_TEST_AZURITE_CONNECTION_STRING is not set: source scripts/services.sh", file=sys.stderr)
        return 2
    service = BlobServiceClient.from_connection_string(conn)
    name = f"aml-bench-{secrets.token_hex(4)}"
    container = service.create_container(name)
    ours_store = build_datastore("bench", "azure_blob", {"connection_string": conn, "container": name})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src.bin")
        with open(src, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1024 * 1024))
        size_mb = src.stat().st_size / 1e6
        best_ours = best_sdk = float("inf")
        try:
            for round_ in range(1, args.rounds + 1):
                # SDK baseline, default settings.
                start = time.perf_counter()
                with open(src, "rb") as f:
                    container.upload_blob("sdk.bin", f, overwrite=True)
                up_sdk = time.perf_counter() - start
                start = time.perf_counter()
                with open(Path(tmp, "sdk.out"), "wb") as f:
                    container.download_blob("sdk.bin").readinto(f)
                down_sdk = time.perf_counter() - start
                # Ours.
                start = time.perf_counter()
                ours_store.upload_file(src, "ours.bin")
                up_ours = time.perf_counter() - start
                start = time.perf_counter()
                ours_store.download_file("ours.bin", Path(tmp, "ours.out"))
                down_ours = time.perf_counter() - start
                assert Path(tmp, "ours.out").stat().st_size == src.stat().st_size
                print(f"round {round_}: sdk up {size_mb / up_sdk:.0f} MB/s down {size_mb / down_sdk:.0f} MB/s"
                      f" ({up_sdk + down_sdk:.2f} s); ours up {size_mb / up_ours:.0f} MB/s"
                      f" down {size_mb / down_ours:.0f} MB/s ({up_ours + down_ours:.2f} s)")
                best_sdk = min(best_sdk, up_sdk + down_sdk)
                best_ours = min(best_ours, up_ours + down_ours)
        finally:
            container.delete_container()
    print(f"{size_mb:.0f} MB, best of {args.rounds}: sdk {best_sdk:.2f} s, ours {best_ours:.2f} s")
    print(f"ratio: {best_ours / best_sdk:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
