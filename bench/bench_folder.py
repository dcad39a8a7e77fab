#!/usr/bin/env python3
"""Benchmark woof.py's folder offers: wall time and woof's peak memory.

    python3 bench/bench_folder.py [--quick]

1. One 1 GiB file offered alone, then in a folder as plain tar (-u) and as
   a stored zip (-Z --store).
2. 20,000 files of 1-10 KB in every format, and 200,000 files of 100 B as
   plain tar, each beside the C tool writing the same archive to a pipe in
   the same run (`tar cf - DIR | cat`, `| pigz -6`, `| pbzip2 -9`,
   `| xz -T0 -2`, `zip -qr -6 -`), medians of 3, with woof's time / the tool's.
   woof's time is the whole process: start, one download with curl, exit.
   With --baseline, another woof.py beside woof in the tiny case.
3. 60 photos of 3 MiB (random bytes named .jpg) as the default tar.gz,
   beside woof's own plain tar of them and `tar cf - | pigz -6`.
   A folder holding a 4.5 GiB sparse file, in every format (memory).
4. 250 clients that ask for the archive and read nothing (each format): woof's
   peak memory, and how many were answered 200 (streaming) or 503 (turn).
5. The 20,000 files as plain tar, downloaded alone and while 8 clients loop
   HEAD requests on it (they share walks): the ratio of the two.
6. In-process: how long a walk of the 20,000 files takes (each request
   walks the tree again) and the plain tar and stored zip layouts (made
   when it changed).
7. The 20,000 files as a stored zip (-Z --store), beside `zip -qr -0 -` and
   woof's plain tar in the same run, medians of 3; and the last 64 KiB of
   it from a fresh woof, whose central directory needs every file's CRC-32
   read first (what a resume or aria2c's last connection costs at worst).
8. Cold and warm page cache ("cold"): the 20,000 files as plain tar, tar.gz,
   zip and stored zip, woof's download alone (curl to /dev/null) beside
   `tar cf - DIR | cat`, `| pigz -6`, `zip -qr -6 -` and `zip -qr -0 -`,
   with `sync; echo 3 > /proc/sys/vm/drop_caches` before each cold run
   (root only: skipped with the reason otherwise); with --baseline, another
   woof.py (the one before a change) in the same run.  Medians of 3.

Everything lives in a temporary folder under /tmp, deleted at the end;
woof listens on 127.0.0.1 only and each run ends after one download.
--quick uses 2,000 small files, 10 photos and a 1.5 GiB sparse file; --only
CASES, --formats LIST and --repeats N run part of it (see --help).
"""

import argparse
import http.client
import os
import random
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

from benchlib import (WOOF, Child, have, make_random_file, make_sparse_file, median, report,
                      resident_mib, run, start_woof)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import woof  # noqa: E402  (the copy beside this folder)

FORMATS = (("-u", "tar"), ("-z", "tar.gz"), ("-j", "tar.bz2"), ("--xz", "tar.xz"),
           ("-Z", "zip"))
CASES = ("big", "small", "tiny", "photos", "sparse", "idle", "stored-zip", "heads", "walk",
         "cold")
REPEATS = 3


def fetch(url):
    """Download url to /dev/null with curl; return the wall time."""
    return run(["curl", "-sS", "-o", os.devnull, url])


def serve_once(args, whole=False):
    """Offer args once, download it; return (client seconds, woof peak MiB).

    With whole=True, the seconds are woof's whole process instead: its
    start (the walk of a folder), the download, its exit.
    """
    seconds, lifetime, peak = serve_and_time(args)
    return (lifetime if whole else seconds), peak


def serve_and_time(args, cold=False, script=WOOF):
    """Offer args once (with woof.py, or another copy of it, `script`), empty
    the caches when cold (after woof's start: its walk), download it once;
    return (client seconds, woof's whole process seconds, woof peak MiB)."""
    child, url = start_woof(args, script=script)
    try:
        if cold:
            drop_caches()
        seconds = fetch(url)
        code, lifetime, peak = child.finish(timeout=900)
    finally:
        child.stop()
    if code != 0:
        raise RuntimeError("woof exited with %s for %s" % (code, args))
    return seconds, lifetime, peak


def timed_rows(label, runs, tool_s=None, tool_name=""):
    """A row of download and whole-process medians (and the whole's ratio to a tool's)."""
    download = median([run[0] for run in runs])
    whole = median([run[1] for run in runs])
    ratio = "whole %.2fx %s" % (whole / tool_s, tool_name) if tool_s else ""
    return (label, "%.2f s, whole %.2f s" % (download, whole),
            "%.1f MiB" % max(run[2] for run in runs), ratio)


def make_small_tree(root, count):
    """count files of 1-10 KB, half random and half text, 100 per folder."""
    chance = random.Random(1)
    words = b"woof offers a folder as one archive built while it is sent "
    for index in range(count):
        folder = os.path.join(root, "d%03d" % (index // 100))
        if index % 100 == 0:
            os.makedirs(folder)
        size = chance.randint(1024, 10240)
        data = os.urandom(size) if index % 2 else (words * (size // len(words) + 1))[:size]
        with open(os.path.join(folder, "f%05d.txt" % index), "wb") as handle:
            handle.write(data)


def shell_seconds(command, cwd):
    return run(["sh", "-c", command], cwd=cwd)


def bench_big_file(work, rows):
    folder = os.path.join(work, "one-big")
    os.makedirs(folder)
    path = make_random_file(os.path.join(folder, "big.bin"), 1 << 30)
    alone = [serve_once([path]) for _ in range(REPEATS)]
    as_tar = [serve_once(["-u", folder]) for _ in range(REPEATS)]
    as_zip = [serve_once(["-Z", "--store", folder]) for _ in range(REPEATS)]
    alone_s = median([seconds for seconds, _ in alone])
    rows.append(("1 GiB file alone", "%.2f s" % alone_s,
                 "%.1f MiB" % max(peak for _, peak in alone), ""))
    for label, runs in (("-u", as_tar), ("-Z --store", as_zip)):
        seconds = median([seconds for seconds, _ in runs])
        rows.append(("1 GiB file in folder, %s" % label, "%.2f s" % seconds,
                     "%.1f MiB" % max(peak for _, peak in runs), "%.2fx" % (seconds / alone_s)))
    os.remove(path)


# The C tool that writes each format to a pipe, as a shell command on folder {}.
C_TOOLS = {"tar": "tar cf - {} | cat", "tar.gz": "tar cf - {} | pigz -6",
           "tar.bz2": "tar cf - {} | pbzip2 -9", "tar.xz": "tar cf - {} | xz -T0 -2",
           "zip": "zip -qr -6 - {}"}


def timed_shell(command, cwd):
    """Median wall time of a shell command writing to /dev/null (peak memory: the tool's)."""
    times = []
    for _ in range(REPEATS):
        child = Child(["sh", "-c", command + " >/dev/null"], cwd=cwd)
        code, seconds, _ = child.finish()
        if code != 0:
            raise RuntimeError("%s exited with %s" % (command, code))
        times.append(seconds)
    return median(times)


def compare_with_tools(work, name, label, formats, rows):
    """woof beside the C tool, format by format, on folder work/name."""
    root = os.path.join(work, name)
    shell_seconds("tar cf - %s | cat >/dev/null" % name, work)  # warm the page cache
    for flag, fmt in formats:
        tool = C_TOOLS[fmt].format(name)
        if not have(tool.split("|")[-1].split()[0]):
            rows.append(("%s: %s" % (label, tool), "not installed", "", ""))
            continue
        tool_s = timed_shell(tool, work)
        runs = [serve_once([flag, root], whole=True) for _ in range(REPEATS)]
        woof_s = median([seconds for seconds, _ in runs])
        rows.append(("%s: %s" % (label, tool), "%.2f s" % tool_s, "", ""))
        rows.append(("%s: woof %s" % (label, fmt), "%.2f s" % woof_s,
                     "%.1f MiB" % max(peak for _, peak in runs), "%.2fx" % (woof_s / tool_s)))


def bench_stored_zip(work, count, rows):
    """The small files as a stored zip, beside zip -0 and woof's plain tar."""
    root = os.path.join(work, "small")
    shell_seconds("tar cf - small | cat >/dev/null", work)  # warm the page cache
    label = "%d files" % count
    tool_s = None
    if have("zip"):
        tool_s = timed_shell("zip -qr -0 - small", work)
        rows.append(("%s: zip -qr -0 - small" % label, "%.2f s" % tool_s, "", ""))
    for name, args in (("woof -u", ["-u", root]), ("woof -Z --store", ["-Z", "--store", root])):
        runs = [serve_and_time(args) for _ in range(REPEATS)]
        rows.append(timed_rows("%s: %s" % (label, name), runs, tool_s, "zip -0"))
    tails = []
    for _ in range(REPEATS):
        child, url = start_woof(["-c", "0", "-Z", "--store", root])
        try:
            tails.append(run(["curl", "-sS", "-r", "-65536", "-o", os.devnull, url]))
        finally:
            child.stop()
    rows.append(("%s: -Z --store, last 64 KiB, fresh woof" % label,
                 "%.2f s" % median(tails), "", ""))


def make_photo_tree(root, count, size=3 << 20):
    """count incompressible files named like photos (random bytes, .jpg)."""
    os.makedirs(root)
    for index in range(count):
        make_random_file(os.path.join(root, "IMG_%04d.jpg" % index), size)


def bench_photos(work, count, rows):
    """The default tar.gz of photos beside woof's own plain tar and pigz."""
    name = "photos"
    make_photo_tree(os.path.join(work, name), count)
    root = os.path.join(work, name)
    label = "%d photos of 3 MiB" % count
    shell_seconds("tar cf - %s | cat >/dev/null" % name, work)  # warm the page cache
    plain = [serve_and_time(["-u", root]) for _ in range(REPEATS)]
    packed = [serve_and_time(["-z", root]) for _ in range(REPEATS)]
    tool_s = None
    if have("pigz"):
        tool_s = timed_shell(C_TOOLS["tar.gz"].format(name), work)
        rows.append(("%s: %s" % (label, C_TOOLS["tar.gz"].format(name)), "%.2f s" % tool_s,
                     "", ""))
    rows.append(timed_rows("%s: woof tar" % label, plain))
    rows.append(timed_rows("%s: woof tar.gz" % label, packed, tool_s, "pigz"))
    for index, what in ((0, "download"), (1, "whole")):
        ratio = median([run[index] for run in packed]) / median([run[index] for run in plain])
        rows.append(("%s: woof tar.gz / woof tar, %s" % (label, what), "", "", "%.2fx" % ratio))
    shutil.rmtree(root)


def make_tiny_tree(root, count):
    """count files of 100 bytes, 1,000 per folder."""
    data = b"t" * 100
    for index in range(count):
        folder = os.path.join(root, "d%03d" % (index // 1000))
        if index % 1000 == 0:
            os.makedirs(folder)
        with open(os.path.join(folder, "f%06d" % index), "wb") as handle:
            handle.write(data)


def bench_small_files(work, count, rows, formats=FORMATS):
    compare_with_tools(work, "small", "%d files" % count, formats, rows)


def bench_tiny_files(work, count, rows, baseline=None):
    """Tiny files as a plain tar beside GNU tar: the download alone (the issue's
    measure) and woof's whole process, each as a ratio to tar's whole process;
    with baseline, another woof.py beside it, taking turns."""
    root = os.path.join(work, "tiny")
    make_tiny_tree(root, count)
    label = "%d files of 100 B" % count
    shell_seconds("tar cf - tiny | cat >/dev/null", work)  # warm the page cache
    tool_s = timed_shell(C_TOOLS["tar"].format("tiny"), work)
    woofs = [("woof", WOOF)] + ([("before", baseline)] if baseline else [])
    runs = {name: [] for name, _ in woofs}
    for _ in range(REPEATS):
        for name, script in woofs:
            runs[name].append(serve_and_time(["-u", root], script=script))
    rows.append(("%s: %s" % (label, C_TOOLS["tar"].format("tiny")), "%.2f s" % tool_s, "", ""))
    for name, _ in woofs:
        download = median([run[0] for run in runs[name]])
        whole = median([run[1] for run in runs[name]])
        rows.append(("%s: %s tar" % (label, name), "%.2f s, whole %.2f s" % (download, whole),
                     "%.1f MiB" % max(run[2] for run in runs[name]),
                     "%.2fx, whole %.2fx" % (download / tool_s, whole / tool_s)))
    bench_descriptors(os.path.join(work, "tiny"), "%d files of 100 B" % count, rows)
    shutil.rmtree(os.path.join(work, "tiny"))


def descriptor_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:  # it has exited
        return 0


def bench_descriptors(root, label, rows):
    """The most descriptors woof holds while it sends root as plain tar, the
    page cache emptied first where it can be, so that read-ahead works in full."""
    child, url = start_woof(["-u", root])
    try:
        idle = descriptor_count(child.process.pid)
        reason = drop_caches()
        most, done = [idle], threading.Event()

        def sample():
            while not done.is_set():
                most.append(descriptor_count(child.process.pid))
                done.wait(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            seconds = fetch(url)
        finally:
            done.set()
            sampler.join()
        child.finish(timeout=900)
    finally:
        child.stop()
    rows.append(("%s: woof tar, descriptors idle / most while sent" % label,
                 "%d / %d" % (idle, max(most)), "",
                 "%.2f s%s" % (seconds, ", cold" if reason is None else ", warm: " + reason)))


def open_idle_readers(url, count):
    """count connections asking for url, each from 127.0.0.2 up (30 per address,
    as from many machines), with a 4 KiB receive buffer; they read nothing yet."""
    parts = urllib.parse.urlsplit(url)
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (parts.path, parts.netloc)).encode()
    readers = []
    for index in range(count):
        reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.bind(("127.0.0.%d" % (2 + index // 30), 0))
        reader.connect((parts.hostname, parts.port))
        reader.sendall(request)
        readers.append(reader)
    return readers


def answer_statuses(readers, timeout=120):
    """Wait until every reader has the first bytes of its answer; return their statuses."""
    statuses = []
    with selectors.DefaultSelector() as selector:
        for reader in readers:
            selector.register(reader, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(statuses) < len(readers) and time.monotonic() < deadline:
            for key, _ in selector.select(1):
                selector.unregister(key.fileobj)
                line = key.fileobj.recv(12)
                statuses.append(line[9:12].decode() if len(line) == 12 else "closed")
    return statuses


def bench_idle_readers(paths, count, rows, formats=FORMATS):
    """count clients that ask for the archive and then stop reading: woof's peak memory."""
    for flag, label in formats:
        child, url = start_woof(["-c", "0", flag] + paths)
        try:
            readers = open_idle_readers(url, count)
            statuses = answer_statuses(readers)
            peak = resident_mib(child.process.pid, "VmHWM")  # (since woof started again)
            for reader in readers:
                reader.close()
        finally:
            child.stop()
        answered = ", ".join("%d x %s" % (statuses.count(code), code)
                             for code in sorted(set(statuses)))
        rows.append(("%d idle readers: woof %s" % (count, label), answered,
                     "%.1f MiB" % peak, ""))


def loop_head(url, stop):
    """HEAD requests on url, one after another on one connection, until stop is set."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        while not stop.is_set():
            connection.request("HEAD", parts.path)
            connection.getresponse().read()
    finally:
        connection.close()


def bench_head_loopers(root, count, rows, loopers=8):
    """A plain tar download alone, then while `loopers` clients loop HEAD on it."""
    child, url = start_woof(["-c", "0", "-u", root])
    try:
        alone = median([fetch(url) for _ in range(REPEATS)])
        stop = threading.Event()
        threads = [threading.Thread(target=loop_head, args=(url, stop)) for _ in range(loopers)]
        for thread in threads:
            thread.start()
        try:
            busy = median([fetch(url) for _ in range(REPEATS)])
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    finally:
        child.stop()
    rows.append(("%d files, -u: download alone" % count, "%.2f s" % alone, "", ""))
    rows.append(("%d files, -u: with %d clients looping HEAD" % (count, loopers),
                 "%.2f s" % busy, "", "%.2fx alone" % (busy / alone)))


def bench_walk(root, count, rows):
    """Time the walk in this process; last, as it grows this process, whose peak
    memory the children started after it would inherit (ru_maxrss survives exec)."""
    started = time.monotonic()
    manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=True)
    walked = time.monotonic() - started
    started = time.monotonic()
    woof.TarLayout(manifest)
    laid_out = time.monotonic() - started
    started = time.monotonic()
    woof.StoredZipLayout(manifest)
    zip_laid_out = time.monotonic() - started
    rows.append(("%d files: first walk" % count, "%.3f s" % walked, "", ""))
    started = time.monotonic()
    woof.walk_paths(woof.resolve_offered_paths([root]), True, manifest)
    rewalked = time.monotonic() - started
    rows.append(("%d files: plain tar layout (on change)" % count, "%.3f s" % laid_out, "", ""))
    rows.append(("%d files: stored zip layout (on change)" % count, "%.3f s" % zip_laid_out,
                 "", ""))
    rows.append(("%d files: walk matching the last one" % count, "%.3f s" % rewalked, "", ""))


def bench_huge_sparse_file(work, size, rows, formats=FORMATS):
    folder = os.path.join(work, "huge")
    os.makedirs(folder)
    make_sparse_file(os.path.join(folder, "sparse.bin"), size)
    for flag, label in formats:
        seconds, peak = serve_once([flag, folder])
        rows.append(("%s sparse file: woof %s" % (woof.format_size(size), label),
                     "%.2f s" % seconds, "%.1f MiB" % peak, ""))
    shutil.rmtree(folder)


# Each woof format of the cold and warm case, beside the C tool that makes the same archive.
COLD_PAIRS = ((["-u"], "tar", "tar cf - {} | cat"), (["-z"], "tar.gz", "tar cf - {} | pigz -6"),
              (["-Z"], "zip", "zip -qr -6 - {}"), (["-Z", "--store"], "stored zip",
                                                   "zip -qr -0 - {}"))


def drop_caches():
    """Empty the page cache (and the kernel's caches of folders and inodes); None
    when done, else why it cannot be."""
    if os.geteuid() != 0:
        return "dropping the page cache needs root"
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write("3\n")
    except OSError as error:
        return "cannot drop the page cache: %s" % (error.strerror or error)
    return None


def woof_download_alone(args, cold, script):
    """Time one curl download of args (caches emptied first when cold);
    return (seconds, woof's peak MiB)."""
    seconds, _, peak = serve_and_time(args, cold, script)
    return seconds, peak


def tool_seconds(command, cwd, cold):
    if cold:
        drop_caches()
    child = Child(["sh", "-c", command + " >/dev/null"], cwd=cwd)
    code, seconds, _ = child.finish()
    if code != 0:
        raise RuntimeError("%s exited with %s" % (command, code))
    return seconds


def bench_cold_and_warm(work, count, rows, baseline=None):
    """The small files, cold and warm, woof's download alone beside each C tool.

    The woofs and the tool take turns within each repeat, so that they meet the
    same noise.  Cold: the caches are emptied after woof's start (its walk) and
    before the download; before the tool's whole run.
    """
    reason = drop_caches()
    states = (("warm", False),) if reason else (("cold", True), ("warm", False))
    if reason:
        rows.append(("%d files, cold: skipped" % count, reason, "", ""))
    woofs = [("woof", WOOF)] + ([("before", baseline)] if baseline else [])
    root = os.path.join(work, "small")
    for args, label, command in COLD_PAIRS:
        tool = command.format("small")
        program = tool.split("|")[-1].split()[0]
        if not have(program):
            rows.append(("%d files: %s" % (count, tool), "not installed (Debian: apt-get "
                         "install pigz zip)", "", ""))
            continue
        for state, cold in states:
            if not cold:
                shell_seconds("tar cf - small | cat >/dev/null", work)  # warm the page cache
            tool_times, woof_runs = [], {name: [] for name, _ in woofs}
            for _ in range(REPEATS):
                tool_times.append(tool_seconds(tool, work, cold))
                for name, script in woofs:
                    woof_runs[name].append(woof_download_alone(args + [root], cold, script))
            tool_s = median(tool_times)
            rows.append(("%d files, %s: %s" % (count, state, tool), "%.2f s" % tool_s, "", ""))
            for name, _ in woofs:
                runs = woof_runs[name]
                seconds = median([run[0] for run in runs])
                rows.append(("%d files, %s: %s %s, download alone" % (count, state, name, label),
                             "%.2f s" % seconds, "%.1f MiB" % max(run[1] for run in runs),
                             "%.2fx" % (seconds / tool_s)))


def set_repeats(count):
    global REPEATS
    REPEATS = count


def main(argv):
    if not have("curl") or not have("tar"):
        print("bench_folder.py needs curl and tar", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(description="Benchmark woof.py's folder offers.")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 small files and a 1.5 GiB sparse file, no 1 GiB file")
    parser.add_argument("--idle", type=int, default=250, metavar="N",
                        help="clients that ask for an archive and read nothing (default 250)")
    parser.add_argument("--only", default=",".join(CASES), metavar="CASES",
                        help="the cases to run, among %s (default all)" % ",".join(CASES))
    parser.add_argument("--formats", default=",".join(label for _, label in FORMATS),
                        metavar="LIST", help="the formats of the small files, sparse "
                        "file and idle readers cases (default all)")
    parser.add_argument("--repeats", type=int, default=REPEATS, metavar="N",
                        help="runs of each timing, of which the median (default 3)")
    parser.add_argument("--baseline", metavar="WOOF_PY",
                        help="another woof.py measured beside this one in the cold and the "
                             "tiny cases")
    options = parser.parse_args(argv)
    quick, idle, only = options.quick, options.idle, options.only.split(",")
    formats = tuple(item for item in FORMATS if item[1] in options.formats.split(","))
    set_repeats(options.repeats)
    rows = []
    work = tempfile.mkdtemp(prefix="woof-bench-folder-", dir="/tmp")
    try:
        if not quick and "big" in only:
            bench_big_file(work, rows)
        count = 2000 if quick else 20000
        if set(only) & {"small", "idle", "stored-zip", "heads", "walk", "cold"}:
            make_small_tree(os.path.join(work, "small"), count)
        if "small" in only:
            bench_small_files(work, count, rows, formats)
        if "tiny" in only:
            bench_tiny_files(work, 20000 if quick else 200000, rows, options.baseline)
        if "photos" in only:
            bench_photos(work, 10 if quick else 60, rows)
        if "sparse" in only:
            bench_huge_sparse_file(work, (3 << 29) if quick else (9 << 29), rows, formats)
        if "idle" in only:
            extra = make_random_file(os.path.join(work, "random.bin"), 16 << 20)
            bench_idle_readers([os.path.join(work, "small"), extra], idle, rows, formats)
        if "stored-zip" in only:
            bench_stored_zip(work, count, rows)
        if "cold" in only:
            bench_cold_and_warm(work, count, rows, options.baseline)
        if "heads" in only:
            bench_head_loopers(os.path.join(work, "small"), count, rows)
        if "walk" in only:
            bench_walk(os.path.join(work, "small"), count, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return finish(rows)


def finish(rows):
    print("python %s, %d CPUs" % (sys.version.split()[0], os.cpu_count() or 0))
    report(rows, ("case", "wall time", "woof peak RSS", "ratio"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
