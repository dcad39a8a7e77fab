#!/usr/bin/env python3
"""Client benchmark: `woof.py URL` beside `curl -o FILE`, in the same run.

Offers one file of random bytes (1 GiB by default) with woof.py on
127.0.0.1, started afresh with -c 1 for each fetch, and fetches it into a
file with curl and with woof.py's client mode, taking turns within each
repeat; then the same to standard output (curl -o /dev/null, woof.py -o -
into /dev/null), which leaves the disk out.  Reports the median and best
wall times, woof's median over curl's, and each client's peak memory.
Every copy is checked and deleted; the page cache's dirty pages are
written back (sync) before each fetch, so no fetch pays for the one before.

    python3 bench/bench_client.py              # 1 GiB, 5 repeats
    python3 bench/bench_client.py --quick      # 256 MiB, 1 repeat

Linux only (peak memory comes from os.wait4); needs curl.  Standard library
only; stops by itself; talks to 127.0.0.1 only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import benchlib

FILE_NAME = "offer.bin"
FETCH_SECONDS = 600
WOOF_EXIT_SECONDS = 30

IDLE_SAMPLES = 3

# The target the issue sets: at most 1.2 times curl's time, in constant
# memory (a fetch adds no more than its buffers to what woof.py takes idle).
MAX_RATIO_TO_CURL = 1.2
MAX_ADDED_MIB = 8.0


def client_argv(client, url, to_file, python):
    if client == "curl":
        return ["curl", "-sS", "-o", FILE_NAME if to_file else os.devnull, url]
    return [python, benchlib.WOOF, "-q"] + ([] if to_file else ["-o", "-"]) + [url]


def fetch_once(client, to_file, offered, folder, python):
    """Fetch the offer once into folder (or /dev/null); return (seconds, peak MiB)."""
    server, url = benchlib.start_woof(["-c", "1", offered], python=python)
    try:
        os.sync()
        with open(os.devnull, "wb") as null:
            child = benchlib.Child(client_argv(client, url, to_file, python), cwd=folder,
                                   stdout=null, stdin=subprocess.DEVNULL)
            code, seconds, peak = child.finish(timeout=FETCH_SECONDS)
        if code != 0:
            raise RuntimeError("%s exited with status %d" % (client, code))
        code, _, _ = server.finish(timeout=WOOF_EXIT_SECONDS)
        if code != 0:
            raise RuntimeError("the serving woof.py exited with status %d" % code)
    finally:
        server.stop()
    if to_file:
        saved = os.path.join(folder, FILE_NAME)
        if os.path.getsize(saved) != os.path.getsize(offered) or \
                subprocess.call(["cmp", "-s", saved, offered]) != 0:
            raise RuntimeError("%s saved a different file" % client)
        os.unlink(saved)
    return seconds, peak


def idle_peak(python):
    """woof.py's own peak memory, starting and exiting without a transfer (MiB)."""
    peaks = []
    for _ in range(IDLE_SAMPLES):
        child = benchlib.Child([python, benchlib.WOOF, "--version"], stdout=subprocess.DEVNULL)
        peaks.append(child.finish(timeout=WOOF_EXIT_SECONDS)[2])
    return benchlib.median(peaks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="file size (default 1G)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats (default 5)")
    parser.add_argument("--quick", action="store_true", help="256 MiB, 1 repeat")
    parser.add_argument("--python", default=sys.executable, help="Python that runs woof.py")
    args = parser.parse_args()
    if not benchlib.have("curl"):
        print("bench_client: curl is required", file=sys.stderr)
        return 1
    size = benchlib.parse_size("256M" if args.quick else args.size)
    repeat = 1 if args.quick else args.repeat
    work = tempfile.mkdtemp(prefix="woof-bench-client-")
    try:
        os.mkdir(os.path.join(work, "served"))
        offered = benchlib.make_random_file(os.path.join(work, "served", FILE_NAME), size)
        folder = os.path.join(work, "fetched")
        os.mkdir(folder)
        cases = [(to_file, client) for to_file in (True, False) for client in ("curl", "woof.py")]
        times = {case: [] for case in cases}
        peaks = {case: [] for case in cases}
        for round_number in range(repeat):
            order = cases if round_number % 2 == 0 else cases[::-1]
            for case in order:
                to_file, client = case
                seconds, peak = fetch_once(client, to_file, offered, folder, args.python)
                times[case].append(seconds)
                peaks[case].append(peak)
        idle = idle_peak(args.python)
        rows = []
        ok = True
        for to_file in (True, False):
            curl_median = benchlib.median(times[(to_file, "curl")])
            for client in ("curl", "woof.py"):
                case = (to_file, client)
                median = benchlib.median(times[case])
                ratio = median / curl_median
                peak = max(peaks[case])
                rows.append((client, "file" if to_file else "/dev/null", "%.3f" % median,
                             "%.3f" % min(times[case]),
                             "%.0f" % (size / median / (1 << 20)), "%.2f" % ratio,
                             "%.1f" % peak))
                if client == "woof.py":
                    ok &= peak - idle <= MAX_ADDED_MIB
                    ok &= ratio <= MAX_RATIO_TO_CURL or not to_file
        print("%s fetched %d times by each client, woof.py run by %s"
              % (size_text(size), repeat, args.python))
        benchlib.report(rows, ("client", "into", "median s", "best s", "MiB/s", "vs curl",
                               "peak MiB"))
        print("woof.py --version alone peaks at %.1f MiB" % idle)
        print("target: woof.py into a file within %.1fx curl's time, adding at most %d MiB "
              "to its idle peak: %s" % (MAX_RATIO_TO_CURL, MAX_ADDED_MIB, "ok" if ok else "MISS"))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def size_text(size):
    return "%d MiB" % (size >> 20) if size % (1 << 30) else "%d GiB" % (size >> 30)


if __name__ == "__main__":
    sys.exit(main())
