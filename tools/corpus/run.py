#!/usr/bin/env python3
"""Runs the malformed-input corpus (gen.py) against an `swm` binary, one bounded process per case.

Usage:
  python3 tools/corpus/run.py --swm target/release/swm [--corpus DIR | --generate] [--as-limit-mb 8192]
                              [--timeout 20] [--rss-limit-mb 512] [--jobs 2] [--json REPORT] [--only TEXT]

Each case runs under an address-space cap (`prlimit --as`, or setrlimit(RLIMIT_AS) in a tiny exec wrapper when
prlimit is missing; core dumps off) and a wall-clock timeout; its peak RSS comes from os.wait4 (ru_maxrss). The
address-space cap must stay generous (swm maps cuBLAS / cuDNN at start); the RSS limit is the real bound. A case
passes when none of these holds:

  FAIL(panic)            exit 101, or "panicked at" in stderr
  FAIL(signal)           killed by a signal (abort, segfault, ...) or exit 128+n
  FAIL(timeout)          still running after --timeout seconds (then killed)
  FAIL(rss)              peak RSS above --rss-limit-mb
  FAIL(outcome)          `ok` cases must exit 0; `error` cases exit 1 or 2 with a stderr line starting with
                         "error:"; `any` cases exit 0, 1 or 2 (with that line when non-zero)
  FAIL(message)          the error message (stderr from its first "error:" line, the case's directory paths
                         replaced) lacks an expected substring or holds one it must not (a misleading
                         diagnosis); case-insensitive
  FAIL(input changed)    a file of the case's input differs from its recorded sha256 afterwards
  FAIL(mode)             an output file's permission bits differ from the expected ones (umask 022)

Cases that record `unchanged` inputs run on a copy of their directory, so the corpus stays reusable. Prints one
line per failing case and `corpus: N cases, P passed, F failed`; exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Sets the limits and execs the command; used when prlimit(1) is not installed.
_WRAPPER = (
    "import os, resource, sys\n"
    "n = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (n, n))\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class Result:
    """The outcome of one case."""

    name: str
    cls: str
    outcome: str
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    exit_code: int | None = None
    signal: str | None = None
    wall_s: float = 0.0
    max_rss_mb: float = 0.0
    error_line: str = ""
    command: list[str] = field(default_factory=list)


def limited(argv: list[str], as_bytes: int) -> list[str]:
    """`argv` run under the address-space cap, core dumps off."""
    if shutil.which("prlimit"):
        return ["prlimit", f"--as={as_bytes}", "--core=0", "--", *argv]
    return [sys.executable, "-c", _WRAPPER, str(as_bytes), *argv]


def run_bounded(argv: list[str], cwd: Path, timeout: float, stdout: Path,
                stderr: Path) -> tuple[int, bool, float, float]:
    """Runs `argv` in its own session; returns (wait status, timed out, wall seconds, peak RSS in MiB)."""
    start = time.monotonic()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    # Children left in the session (none expected) are killed too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return status, timed_out, time.monotonic() - start, usage.ru_maxrss / 1024.0


def copy_entry(src: str, dst: str) -> None:
    """Copies a file for copytree; named pipes are recreated, not opened (opening one would block)."""
    if stat.S_ISFIFO(os.lstat(src).st_mode):
        os.mkfifo(dst)
    else:
        shutil.copy2(src, dst)


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def error_text(stderr: str) -> str:
    """stderr from its first line starting with `error:` (empty when there is none)."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error:"):
            return "\n".join(lines[i:])
    return ""


def run_case(case: dict, corpus: Path, work: Path, args: argparse.Namespace) -> Result:
    """Runs one case and classifies it."""
    res = Result(case["name"], case["class"], case["outcome"])
    scratch = Path(tempfile.mkdtemp(prefix=case["name"][:40] + "-", dir=work))
    try:
        case_dir = corpus / case["name"]
        if "unchanged" in case:
            copy = scratch / "case"
            shutil.copytree(case_dir, copy, symlinks=True, copy_function=copy_entry)
            case_dir = copy
        tmp = scratch / "tmp"
        tmp.mkdir()
        subst = {"{case}": str(case_dir), "{tmp}": str(tmp)}

        def fill(text: str) -> str:
            for k, v in subst.items():
                text = text.replace(k, v)
            return text

        cmd = [fill(a) for a in case["command"]]
        res.command = cmd
        status, timed_out, res.wall_s, res.max_rss_mb = run_bounded(
            limited([args.swm, *cmd], args.as_limit_mb << 20), scratch, args.timeout, scratch / "stdout",
            scratch / "stderr")
        stderr = (scratch / "stderr").read_bytes()[: 16 << 20].decode("utf-8", "replace")
        err = error_text(stderr)
        res.error_line = err.splitlines()[0][:400] if err else ""
        # Paths name the case (e.g. `c4-crc-...`): match expected words against the message without them.
        for path in sorted({str(scratch), str(case_dir), str(corpus / case["name"])}, key=len, reverse=True):
            err = err.replace(path, "<dir>")
        reasons = res.reasons
        if os.WIFSIGNALED(status):
            res.signal = signal.Signals(os.WTERMSIG(status)).name
        else:
            res.exit_code = os.WEXITSTATUS(status)
        if timed_out:
            reasons.append(f"timeout (> {args.timeout:g} s)")
        elif res.exit_code == 101 or "panicked at" in stderr:
            reasons.append("panic")
        elif res.signal or (res.exit_code or 0) > 128:
            reasons.append(f"signal ({res.signal or res.exit_code})")
        if res.max_rss_mb > args.rss_limit_mb:
            reasons.append(f"rss ({res.max_rss_mb:.0f} MiB > {args.rss_limit_mb} MiB)")
        if not reasons:
            code = res.exit_code
            wanted = case["outcome"]
            if wanted == "ok" and code != 0:
                reasons.append(f"outcome (expected exit 0, got {code})")
            elif wanted == "error" and code not in (1, 2):
                reasons.append(f"outcome (expected an error, got exit {code})")
            elif wanted == "any" and code not in (0, 1, 2):
                reasons.append(f"outcome (expected exit 0/1/2, got {code})")
            elif code in (1, 2) and not err:
                reasons.append("outcome (non-zero exit without an `error:` line)")
            elif code in (1, 2) and wanted == "error":
                low = err.lower()
                missing = [s for s in case.get("expect_substring", []) if s.lower() not in low]
                if missing:
                    reasons.append(f"message lacks {missing}")
                one_of = case.get("expect_one_of")
                if one_of and not any(s.lower() in low for s in one_of):
                    reasons.append(f"message lacks one of {one_of}")
                present = [s for s in case.get("expect_absent", []) if s.lower() in low]
                if present:
                    reasons.append(f"message says {present} (misleading)")
        for rel, digest in case.get("unchanged", {}).items():
            if sha256(case_dir / rel) != digest:
                reasons.append(f"input changed ({rel})")
        if res.exit_code == 0:
            for path, mode in case.get("expect_mode", {}).items():
                p = Path(fill(path))
                try:
                    got = format(p.stat().st_mode & 0o777, "o")
                except OSError:
                    got = "missing"
                if got != mode:
                    reasons.append(f"mode ({p.name}: {got}, expected {mode})")
        res.passed = not reasons
        return res
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def class_order(k: str) -> tuple:
    return (not k.isdigit(), int(k) if k.isdigit() else 0, k)


def main() -> int:
    ap = argparse.ArgumentParser(description="Run the malformed-input corpus against swm.")
    ap.add_argument("--swm", required=True, help="path to the swm binary")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", type=Path, help="a corpus written by gen.py")
    src.add_argument("--generate", action="store_true", help="generate a fresh corpus in a temporary directory")
    ap.add_argument("--seed", type=int, default=10, help="fuzz seed with --generate (default 10)")
    ap.add_argument("--as-limit-mb", type=int, default=8192, help="address-space cap per case (default 8192)")
    ap.add_argument("--timeout", type=float, default=20, help="seconds per case (default 20)")
    ap.add_argument("--rss-limit-mb", type=int, default=512, help="peak RSS bound per case (default 512)")
    ap.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default 2)")
    ap.add_argument("--json", type=Path, help="also write a JSON report here")
    ap.add_argument("--only", action="append", default=[], help="run only cases whose name contains TEXT")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories (and a generated corpus)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every case, not only failures")
    args = ap.parse_args()
    args.swm = str(Path(args.swm).resolve())
    if not os.access(args.swm, os.X_OK):
        print(f"run.py: {args.swm} is not an executable", file=sys.stderr)
        return 2
    os.umask(0o022)

    root = Path(tempfile.mkdtemp(prefix="swm-corpus-"))
    try:
        if args.generate:
            sys.path.insert(0, str(HERE))
            sys.dont_write_bytecode = True  # no __pycache__ in the source tree
            import gen

            corpus = root / "corpus"
            gen.generate(corpus, args.seed)
        else:
            corpus = args.corpus.resolve()
        cases = json.loads((corpus / "cases.json").read_text())["cases"]
        if args.only:
            cases = [c for c in cases if any(t in c["name"] for t in args.only)]
        work = root / "work"
        work.mkdir()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_case, c, corpus, work, args) for c in cases]
            results = []
            for f in futures:
                r = f.result()
                results.append(r)
                if not r.passed or args.verbose:
                    status = "PASS" if r.passed else "FAIL"
                    how = f"exit {r.exit_code}" if r.signal is None else r.signal
                    print(f"{status} {r.name} [{r.cls}] {'; '.join(r.reasons) or 'ok'} ({how}, "
                          f"{r.max_rss_mb:.0f} MiB, {r.wall_s:.1f} s)"
                          + (f"\n     {r.error_line}" if r.error_line and not r.passed else ""), flush=True)
        elapsed = time.monotonic() - start
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    failed = [r for r in results if not r.passed]
    by_class: dict[str, list[Result]] = collections.defaultdict(list)
    for r in results:
        by_class[r.cls].append(r)
    classes = sorted(by_class, key=class_order)
    print("per class: " + ", ".join(f"{k} {sum(r.passed for r in by_class[k])}/{len(by_class[k])}" for k in classes))
    peak = max(results, key=lambda r: r.max_rss_mb, default=None)
    if peak:
        print(f"peak RSS {peak.max_rss_mb:.0f} MiB ({peak.name}); {elapsed:.0f} s")
    print(f"corpus: {len(results)} cases, {len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        report = {
            "swm": args.swm,
            "limits": {"as_mb": args.as_limit_mb, "rss_mb": args.rss_limit_mb, "timeout_s": args.timeout},
            "summary": {"cases": len(results), "passed": len(results) - len(failed), "failed": len(failed)},
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
