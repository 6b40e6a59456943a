"""Artifact store throughput and memory against the naive in-memory baseline.

One process, the same bytes for both sides: a random source file of ``--size-mib`` MiB is
written first, then

1. the store puts it from its path (chunked AES-256-GCM + SHA-256, written to a temporary
   blob, fsynced and renamed); wall time and the growth of peak RSS are measured. The store
   runs *first* so that its peak is not hidden under the baseline's;
2. the baseline reads the whole file into memory, encrypts it with one ``AESGCM.encrypt``
   call and hashes it with one ``hashlib.sha256`` call (no disk write, no fsync);
3. a verified read of the stored artifact (decrypt and check every chunk and the digest).

Pass: store throughput >= 70 % of the baseline's and peak RSS growth < 64 MiB.

    python benchmarks/bench_store.py [--size-mib 1024] [--dir /some/folder] [--smoke]

The audit sink is the real :class:`~bastion.security.audit.AuditLog`, wired as the workspace
wires it. ``--smoke`` puts 8 MiB and does not judge the goals (it still fails when the
digests differ or the put was not audited). Exit code 0 on PASS, 1 on FAIL. Temporary data
lives under ``--dir`` and is removed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring
from bastion.store.artifacts import ArtifactStore
from bastion.store.db import make_engine, migrate

MIB = 1 << 20
MIN_RATIO = 0.70
MAX_RSS_GROWTH_MIB = 64


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _proc_status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so that an earlier peak, such as
    the keyring's scrypt, cannot hide the store's. ru_maxrss alone cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _RssWatch:
    """Peak RSS growth over a block: ru_maxrss before/after, and the exact VmHWM after a
    reset where Linux offers it. The larger of the two is what counts."""

    def __enter__(self) -> _RssWatch:
        self._maxrss = _peak_rss_mib()
        self._rss = _proc_status_mib("VmRSS")
        self._hwm_ok = self._rss is not None and _reset_hwm()
        return self

    def __exit__(self, *exc: object) -> None:
        self.maxrss_growth = _peak_rss_mib() - self._maxrss
        hwm = _proc_status_mib("VmHWM") if self._hwm_ok else None
        self.hwm_growth = None if hwm is None or self._rss is None else hwm - self._rss
        self.growth = max(self.maxrss_growth, self.hwm_growth or 0.0)

    def describe(self) -> str:
        hwm = "n/a" if self.hwm_growth is None else f"{self.hwm_growth:.1f}"
        return f"{self.growth:7.1f} MiB (ru_maxrss {self.maxrss_growth:.1f}, VmHWM {hwm})"


def _write_source(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = min(left, MIB)
            fh.write(os.urandom(piece))
            left -= piece


def run(size_mib: int, folder: Path, chunk_size: int, *, smoke: bool = False) -> bool:
    size = size_mib * MIB
    source = folder / "source.bin"
    _write_source(source, size)
    keyring = LocalKeyring.create(folder / "keyring.json", "benchmark passphrase", scrypt_log_n=14)
    engine = make_engine(f"sqlite:///{folder / 'meta.db'}")
    migrate(engine)
    # the real audit log, wired as the workspace wires it: the artifact row and its audit
    # entry commit together (``record_in``), so the put pays for what users get
    audit = AuditLog(engine, keyring)
    store = ArtifactStore(folder / "store", keyring, engine, audit, chunk_size=chunk_size)

    with _RssWatch() as put_rss:
        t0 = time.perf_counter()
        ref = store.put(source, actor="bench")
        store_s = time.perf_counter() - t0

    with _RssWatch() as read_rss:
        t0 = time.perf_counter()
        store.verify(ref.digest)
        read_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = source.read_bytes()
    sealed = AESGCM(AESGCM.generate_key(256)).encrypt(os.urandom(12), data, None)
    digest = hashlib.sha256(data).hexdigest()
    base_s = time.perf_counter() - t0
    del data, sealed
    audit.close()
    puts = audit.entries(action="artifact.put")
    audited = [e.resource for e in puts] == [f"artifact:{ref.digest}"]
    engine.dispose()

    if digest != ref.digest:
        print(f"FAIL: store digest {ref.digest} differs from baseline {digest}")
        return False
    if not audited:
        print(f"FAIL: expected one artifact.put audit entry for {ref.digest}, got {puts}")
        return False
    store_tp, base_tp, read_tp = size_mib / store_s, size_mib / base_s, size_mib / read_s
    ratio = store_tp / base_tp
    ok = ratio >= MIN_RATIO and put_rss.growth < MAX_RSS_GROWTH_MIB
    print(f"size                 {size_mib} MiB, chunk size {chunk_size // 1024} KiB")
    print(f"store put (path)     {store_s:7.2f} s  {store_tp:8.0f} MiB/s")
    print(f"baseline in-memory   {base_s:7.2f} s  {base_tp:8.0f} MiB/s")
    print(f"ratio store/baseline {ratio:7.2f}    (need >= {MIN_RATIO:.2f})")
    print(f"put peak RSS growth  {put_rss.describe()} (need < {MAX_RSS_GROWTH_MIB})")
    print(f"verified read        {read_s:7.2f} s  {read_tp:8.0f} MiB/s")
    print(f"read peak RSS growth {read_rss.describe()}")
    print("audit                one artifact.put entry, committed with the row")
    if smoke:
        print("smoke: goals not judged")
        return True
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    parser.add_argument("--chunk-size", type=int, default=MIB)
    parser.add_argument(
        "--smoke", action="store_true", help="8 MiB, goals not judged (CI: does it still run?)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.size_mib = 8
    if not 1 <= args.size_mib <= 2047:
        parser.error("--size-mib: expected 1..2047 (one-shot AESGCM takes < 2 GiB)")
    parent = args.dir
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-store-", dir=parent))
    try:
        ok = run(args.size_mib, folder, args.chunk_size, smoke=args.smoke)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
