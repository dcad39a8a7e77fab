"""Shared pieces of woof.py's benchmarks: start programs, time them, read peak memory.

Standard library only, Linux (os.wait4 gives each child's own peak memory).
Every benchmark talks to 127.0.0.1 only and stops by itself.
"""

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WOOF = os.path.join(os.path.dirname(HERE), "woof.py")
URL_LINE = re.compile(r"Now (?:serving|receiving) on (https?://\S+)")


class Child:
    """A started program; finish() gives its exit status, wall time and peak memory.

    After finish(), cpu_seconds holds the user and system time it used.
    """

    def __init__(self, argv, **popen_args):
        self.argv = argv
        self.cpu_seconds = None
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, **popen_args)

    def finish(self, timeout=600):
        """Wait for the program; return (exit status, seconds, peak RSS in MiB).

        Its CPU time (user + system, in seconds) is then in self.cpu_seconds,
        and the part spent in its own code (user) in self.user_seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.process.kill()
                pid, status, usage = os.wait4(self.process.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.monotonic() - self.started
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.user_seconds = usage.ru_utime
        code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
            else (status >> 8 if status & 0x7F == 0 else -(status & 0x7F))
        self.process.returncode = code
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        return code, seconds, usage.ru_maxrss / 1024.0

    def stop(self, timeout=10):
        """Ask the program to end (SIGTERM lets a master stop its workers), then kill it."""
        if self.process.returncode is None:
            self.process.terminate()
            return self.finish(timeout=timeout)
        return None


class DiscardingTerminal:
    """A pseudo-terminal whose output is read and thrown away, for a program
    that draws on its terminal: give it `slave`, then call started()."""

    def __init__(self):
        import pty
        self.master, self.slave = pty.openpty()
        self.reader = threading.Thread(target=self.drain)
        self.reader.daemon = True

    def started(self):
        os.close(self.slave)
        self.reader.start()

    def drain(self):
        try:
            while os.read(self.master, 65536):
                pass
        except OSError:  # EIO once the program has closed its end
            pass
        finally:
            os.close(self.master)


def environment_of_users():
    """This environment, but with Python's bytecode files allowed, as on a
    user's machine: woof.py then starts again from its bytecode cache (its
    Start-up section), which PYTHONDONTWRITEBYTECODE turns off."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


@functools.lru_cache(maxsize=None)
def started_once(python, script):
    """Run woof.py once, so that its bytecode cache is written before the
    runs measured, as it is for a user from the second start on."""
    subprocess.run([python, script, "--version"], env=environment_of_users(),
                   stdout=subprocess.DEVNULL, check=True)


def start_woof(args, cwd=None, python=sys.executable, stdin=None, timeout=30, terminal=False,
               script=WOOF):
    """Start woof.py (or another copy of it, `script`) on 127.0.0.1, any free
    port; return (Child, URL).

    Quiet, its stderr thrown away; with terminal=True, woof logs to a
    pseudo-terminal instead, so it draws its live progress too.
    """
    screen = DiscardingTerminal() if terminal else None
    argv = [python, script] + ([] if terminal else ["-q"]) + ["-i", "127.0.0.1", "-p", "0"]
    argv += list(args)
    environment = environment_of_users()
    started_once(python, script)
    child = Child(argv, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, env=environment,
                  stderr=screen.slave if screen else subprocess.DEVNULL,
                  universal_newlines=True)
    if screen:
        screen.started()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.process.stdout.readline()
        match = URL_LINE.search(line)
        if match:
            return child, match.group(1)
        if not line and child.process.poll() is not None:
            break
    child.stop()
    raise RuntimeError("woof did not print its URL: %s" % " ".join(argv))


def resident_mib(pid, field="VmRSS"):
    """A running process's resident size in MiB (Linux's /proc): now, or
    with field="VmHWM" its peak so far (since its last exec)."""
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run(argv, **kwargs):
    """Run a command to the end; return its wall time in seconds."""
    started = time.monotonic()
    subprocess.run(argv, check=True, **kwargs)
    return time.monotonic() - started


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago, for programs that need one named."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_listening(child, host, port, timeout=30):
    """Wait until a started program accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            break
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    child.stop()
    raise RuntimeError("nothing listens on %s:%d: %s" % (host, port, " ".join(child.argv)))


def parse_size(text):
    """A size such as 1G, 256M, 64KiB or 1000 (bytes); binary units."""
    match = re.match(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", text, re.IGNORECASE)
    if not match:
        raise ValueError("%r is not a size such as 1G or 256M" % text)
    number, unit = int(match.group(1)), match.group(2).lower()
    return number << (10 * " kmgt".index(unit or " "))


def have(command):
    return shutil.which(command) is not None


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def make_sparse_file(path, size):
    """A file of `size` bytes that takes no disk space (reads as zeros)."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def make_random_file(path, size, block=1 << 20):
    """A file of `size` random, hence incompressible, bytes."""
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(os.urandom(min(block, left)))
            left -= block
    return path


def report(rows, header):
    """Print rows of (label, values...) as an aligned table."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


NGINX_CONFIG = """\
daemon off;
user root;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen {host}:{port}{ssl};
        root {root};{certificate}
    }}
}}
"""

NGINX_TLS = """
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;"""


def nginx_argv(folder, host, port, root, certificate=None, key=None):
    """The command that starts nginx (master and workers) serving root on
    host:port, over TLS when given a certificate; what it writes stays in
    folder/nginx."""
    state = os.path.join(folder, "nginx")
    os.mkdir(state)
    tls = NGINX_TLS.format(certificate=certificate, key=key) if certificate else ""
    config = os.path.join(state, "nginx.conf")
    with open(config, "w") as handle:
        handle.write(NGINX_CONFIG.format(dir=state, host=host, port=port, root=root,
                                         ssl=" ssl" if certificate else "", certificate=tls))
    return ["nginx", "-p", state, "-c", config, "-e", os.path.join(state, "error.log")]
