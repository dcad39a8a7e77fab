#!/usr/bin/env python3
"""woof.py: web offer one file, and a little more.

Offers a file, a folder or standard input over HTTP to whoever opens the
printed URL, or receives files from them, then exits by itself.  One file,
standard library only, Python 3.6 to 3.13 on Linux, macOS and Windows.

    python3 woof.py FILE

Licensed under the MIT licence; see LICENSE.

Sections, in file order (each uses only what stands above it):

    Compatibility      every difference between Pythons and systems
    Constants          limits, names, formats
    Errors             WoofError and its kinds
    Pure helpers       names, URLs, headers, ranges, sizes
    Output             the one logger for stderr, colour
    Network discovery  the addresses to print, best first; the resolver's domains
    Response bodies    how bytes reach the socket (sendfile, chunks)
    Request heads      a deadline for what a client must send
    Offers             a file, standard input
    Compression        every core: one pool of threads; gzip, bzip2, xz in blocks
    Archive manifest   the walk of the offered paths, entries in compact columns
    Archive members    listed files opened again, only if unchanged; read ahead
    Tar                plain tar of known size, any span; streamed tars
    Zip streamed       deflated on every core; data descriptors, zip64
    Zip of known size  every member stored: Content-Length, ETag, Range
    Archive offer      walks shared, a body for each request, so many at once
    Receiving          request bodies, the multipart reader, safe saving; resumable
    Terminal           live progress, the QR code
    Security           the throwaway certificate; secret link, password, Host
    Connection gate    the places connections take; who is refused, logged
    Delivery ledger    what each client received, of which state of the offer
    HTTP handlers      the base every handler shares; downloads
    Upload page        one self-contained page and its script
    Upload handlers    the page, form posts and PUT; resumable uploads
    Server             sockets, TLS, threads; counting, the end
    Client mode        woof.py URL fetches (resumable, -x), woof.py URL FILE sends
    Command line       options, woofrc, what is printed at start
    main()             exit statuses, signals, how often threads switch
    Start-up           woof.py run as a program starts again without its parse tree
"""

__version__ = "1.0.0"

import argparse
import array
import base64
import bisect
import collections
import configparser
import datetime
import email.utils
import errno
import fractions
import functools
import getpass
import hashlib
import hmac
import html
import http.client
import importlib
import io
import ipaddress
import mimetypes
import os
import queue
import re
import secrets
import selectors
import shutil
import signal
import socket
import socketserver
import stat
import struct
import sys
import tarfile
import threading
import time
import unicodedata
import urllib.parse
import weakref
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import NamedTuple, Optional


# ---------------------------------------------------------------------------
# Compatibility: every difference between Pythons and systems lives here.
# ---------------------------------------------------------------------------

# Windows has no os.sendfile; socket.sendfile would then copy 8 KiB at a time.
HAS_OS_SENDFILE = hasattr(os, "sendfile")

# SO_REUSEADDR on Windows lets a second server steal a port that is in use.
REUSE_ADDRESS_IS_SAFE = os.name != "nt"

# A thread blocked reading a socket is woken by shutdown() from another
# thread on Linux and the BSDs; on Windows only by closing the socket.
CLOSE_WAKES_READER = os.name == "nt"

# Windows builds before 3.8 may lack the constant; its value is 27 there too.
IPV6_V6ONLY = getattr(socket, "IPV6_V6ONLY", 27)


def ipv6_dual_stack_available():
    """True when one IPv6 socket can also accept IPv4 connections."""
    if hasattr(socket, "has_dualstack_ipv6"):
        return socket.has_dualstack_ipv6()
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.IPPROTO_IPV6, IPV6_V6ONLY, 0)
            return True
    except OSError:
        return False


# Linux tells how many bytes sent on a TCP socket the peer has not yet
# acknowledged (SIOCOUTQ, which has the value of TIOCOUTQ); elsewhere woof
# trusts that what the kernel took arrives.
TCP_QUEUE_QUERY = sys.platform.startswith("linux")


def unacknowledged_bytes(sock):
    """Bytes sent on a TCP socket that the peer has not acknowledged, or None."""
    if not TCP_QUEUE_QUERY:
        return None
    try:
        import fcntl
        import termios
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
        return struct.unpack("i", raw)[0]
    except (ImportError, AttributeError, OSError):
        return None


# Opening an offered file must never hang on a FIFO swapped in after start,
# and a file of an archive must never be reached through a link; Windows
# has neither flag, and the identity check after opening (same device and
# inode as when listed) covers it there.
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_BINARY = getattr(os, "O_BINARY", 0)


# os.pread reads at an offset in one call and leaves the position alone;
# Windows has only lseek and read.
HAS_PREAD = hasattr(os, "pread")


def read_at(descriptor, offset, count):
    """Up to count bytes of an open file from offset: fewer only where it ends or fails."""
    pieces, done = [], 0
    try:
        if not HAS_PREAD:
            os.lseek(descriptor, offset, os.SEEK_SET)
        while done < count:
            if HAS_PREAD:
                piece = os.pread(descriptor, count - done, offset + done)
            else:
                piece = os.read(descriptor, count - done)
            if not piece:
                break
            pieces.append(piece)
            done += len(piece)
    except OSError:
        pass
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


# Asking the system to start reading a file's data before it is needed
# (POSIX_FADV_WILLNEED): Linux and the BSDs.  Where it is missing (macOS,
# Windows), archives read each file when they reach it, as GNU tar does.
READ_AHEAD = hasattr(os, "posix_fadvise")

# Linux (4.14 on, Python 3.7 on) reads only what the page cache holds when
# asked with RWF_NOWAIT, which tells read-ahead that a folder is cached
# already and needs none; elsewhere read-ahead asks for every file.
RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


def page_cached(descriptor):
    """True when an open file's first byte is in the page cache; False when not, or unknown."""
    if RWF_NOWAIT is None:
        return False
    try:
        return os.preadv(descriptor, [bytearray(1)], 0, RWF_NOWAIT) >= 0
    except OSError:  # EAGAIN: on the disk; EOPNOTSUPP: a kernel or file system without it
        return False


# Where the system lets a folder be listed and its entries examined and
# opened through one open descriptor, the walk never goes through a path
# that a folder swapped for a link mid-walk could redirect, and no path
# longer than one name reaches the system, so PATH_MAX does not limit how
# deep a file may be (Linux, macOS, the BSDs).
WALK_BY_DESCRIPTOR = (hasattr(os, "O_DIRECTORY") and os.listdir in os.supports_fd
                      and os.stat in os.supports_dir_fd and os.open in os.supports_dir_fd
                      and os.access in os.supports_dir_fd)

# The walk asks whether woof itself, with its effective ids, may read a file.
ACCESS_WITH_EFFECTIVE_IDS = os.access in getattr(os, "supports_effective_ids", ())


def may_read(path):
    """True when this process may open path for reading."""
    return os.access(path, os.R_OK, effective_ids=ACCESS_WITH_EFFECTIVE_IDS)


def resolve_link(path):
    """Where a symbolic link finally leads, or None when this system cannot tell.

    os.path.realpath resolves links on Windows only from Python 3.8; before,
    it returns the link itself, and such a link is treated as leading out.
    Before 3.13 it raises when a link on the way cannot be read (/proc/1/cwd,
    for whoever may not trace process 1); 3.13 stops resolving there.
    """
    try:
        resolved = os.path.realpath(path)
    except OSError:
        return None
    if os.path.normcase(resolved) == os.path.normcase(os.path.abspath(path)):
        return None
    return resolved


# The cores this process may run on (its CPU affinity where the system
# tells it), so that compression takes every one and no more.
def usable_cores():
    """How many threads can compress at once here; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0)) or 1
        except OSError:
            pass
    return os.cpu_count() or 1


USABLE_CORES = usable_cores()


def optional_module(name):
    """A module some Python builds lack (zlib, bz2, lzma), or None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# RFC 7540's 421 Misdirected Request joined http.HTTPStatus in Python 3.7.
MISDIRECTED_REQUEST = getattr(HTTPStatus, "MISDIRECTED_REQUEST", 421)


def tls_module():
    """The ssl module; WoofError where this Python was built without it."""
    ssl = optional_module("ssl")
    if ssl is None:
        raise WoofError("this Python was built without the ssl module, so woof cannot "
                        "serve HTTPS")
    return ssl


def terminal_available():
    """True when a password can be asked for without echo.

    getpass asks on the controlling terminal (/dev/tty) where there is one,
    whatever standard input is; on Windows, on the console behind stdin.
    """
    if os.name == "nt":
        return is_console(sys.stdin)
    try:
        descriptor = os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    os.close(descriptor)
    return True


def terminal_sequences_work(stream, environ):
    """True when `stream` is a terminal that moves its cursor and draws colour
    on ECMA-48 control sequences.

    A console of Windows 10 and later does once asked to (virtual terminal
    processing), older ones never; TERM=dumb names a terminal that does not.
    """
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    if environ.get("TERM") == "dumb":
        return False
    if os.name != "nt":
        return True
    mode = windows_console_mode(stream)
    if mode is None:
        return False
    try:
        import ctypes
        import msvcrt
        console = msvcrt.get_osfhandle(stream.fileno())
        return bool(ctypes.windll.kernel32.SetConsoleMode(console, mode | 0x0004))
    except (ImportError, AttributeError, OSError, ValueError):
        return False


def windows_console_mode(stream):
    """The console mode of the Windows console behind `stream`, or None when
    there is none (a file, a pipe, NUL, which isatty() takes for a terminal)."""
    try:
        import ctypes
        import msvcrt
        console = msvcrt.get_osfhandle(stream.fileno())
        mode = ctypes.c_uint32()
        if not ctypes.windll.kernel32.GetConsoleMode(console, ctypes.byref(mode)):
            return None
        return mode.value
    except (ImportError, AttributeError, OSError, ValueError):
        return None


def is_console(stream):
    """True when `stream` is a terminal a person types at.  Windows says NUL
    is a character device, so only a console mode tells a console there."""
    try:
        if stream is None or not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return os.name != "nt" or windows_console_mode(stream) is not None


def terminal_columns(stream, fallback=80):
    """The width of the terminal behind `stream`, in columns."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or fallback
    except (AttributeError, ValueError, OSError):
        return fallback


# Windows refuses some characters and device names in file names (CON, NUL...).
WINDOWS_FILE_NAMES = os.name == "nt"

# Commands woof prints to be pasted: cmd.exe passes '...' on with the quotes,
# PowerShell 5 takes `curl` for its Invoke-WebRequest, and Windows has no
# sha256sum; "...", curl.exe and certutil work in both of its shells.
WINDOWS_SHELLS = os.name == "nt"

# Errors that mean "this disk is full", wherever they exist (EDQUOT: quotas;
# EFBIG: the file-size limit or the file system's largest file, as on FAT).
DISK_FULL_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG")
                         if hasattr(errno, name))

# What os.link fails with where the file system has no hard links: EPERM
# (FAT on Linux), ENOTSUP or EOPNOTSUPP (SMB on macOS), ENOSYS (some FUSE
# file systems), EINVAL or EACCES (FAT and network shares on Windows).
NO_HARD_LINK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EINVAL", "EACCES") if hasattr(errno, name))


# Signals that stop woof as Ctrl-C does, as this system has them: SIGTERM
# (kill, timeout, service managers), SIGHUP (the terminal closed; POSIX),
# SIGBREAK (Ctrl-Break; Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGBREAK")
                     if hasattr(signal, name))


def signal_name(number):
    """SIGTERM for 15: the name this system gives a signal number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def read_some_into(stream):
    """stream's readinto1 where it has one: what has arrived, without waiting for more.

    Filling a whole buffer before writing it out leaves the socket unread
    while the disk is written; uploads ran at half speed that way.
    """
    return getattr(stream, "readinto1", stream.readinto)


def lock_exclusively(handle):
    """Lock an open file against other processes that lock it too; False
    when one already holds it.  Where the system has no flock (Windows), no
    lock is taken and True returned."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
    return True


# tarfile's "data" filter (PEP 706): Python 3.12, and security releases of
# 3.8 to 3.11 since June 2023.  Client mode applies the same rules itself
# wherever it is missing.
TAR_DATA_FILTER = getattr(tarfile, "data_filter", None)


# Linux lists every interface address, route and interface state in /proc
# and through interface ioctls, so woof can read them all without asking the
# network; other systems (and a Linux without /proc) fall back on the host
# name's addresses and the address of the default route.
LINUX_INTERFACE_TABLES = sys.platform.startswith("linux") and os.path.exists("/proc/net/route")


# CPython's parser (the PEG parser, 3.9 on) keeps the syntax tree of the
# script it was started with, and the tokens it read, until the script ends;
# CPython 3.8 and earlier free them before the script's first line runs.
SCRIPT_PARSE_TREE_KEPT = sys.implementation.name == "cpython" and sys.version_info >= (3, 9)

# os.execv replaces the running program on POSIX: the same process, its
# descriptors, its ignored signals and its limits.  On Windows it starts
# another process and ends this one, which hands the console back at once.
# Starting again also needs files opened, renamed and touched through a
# folder's descriptor (Linux, macOS, the BSDs).
EXEC_REPLACES_PROCESS = os.name == "posix" and all(
    call in os.supports_dir_fd for call in (os.open, os.rename, os.stat, os.unlink, os.utime))


def monitoring_tools_in_use():
    """True when a tool watches this Python through sys.monitoring (3.12 on:
    debuggers and coverage), which a new Python would not carry over."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return False
    return any(monitoring.get_tool(number) is not None for number in range(6))


def running_interpreter_is(path):
    """False when path is known not to be the program this process runs
    (Python guesses sys.executable from argv[0] and PATH); True where the
    system does not tell (no /proc/self/exe)."""
    try:
        return os.path.samefile(path, "/proc/self/exe")
    except OSError:
        return not os.path.exists("/proc/self/exe")


def woof_cache_folder(environ):
    """woof's folder in this user's cache folder: XDG_CACHE_HOME where it is
    set (and absolute), LOCALAPPDATA on Windows, else ~/.cache."""
    base = environ.get("XDG_CACHE_HOME") or environ.get("LOCALAPPDATA")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "woof")


def original_argv():
    """The command line Python was started with, its own options included:
    sys.orig_argv (3.10 on), Linux's /proc before that; None elsewhere."""
    if hasattr(sys, "orig_argv"):
        return list(sys.orig_argv)
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            arguments = handle.read().split(b"\0")[:-1]
    except OSError:
        return None
    return [os.fsdecode(argument) for argument in arguments]


# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

DEFAULT_PORT = 8080
DEFAULT_COUNT = 1
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 86400
COPY_BUFFER_SIZE = 1 << 20
SMALL_WRITE_LIMIT = 64 << 10
MAX_SPANS_PER_CLIENT = 256
MAX_CLIENTS_REMEMBERED = 256  # with their spans: 8 MiB at the very most
MAX_RANGE_DIGITS = 19
POLL_INTERVAL = 0.2
HELP_WIDTH = 80
HELP_OPTION_WIDTH = 26  # where the help of each option starts
CONFIG_PATHS = ("/etc/woofrc", "~/.woofrc")
CONFIG_COMMENT_PREFIXES = (";", "#")  # whole-line and, after a space, inline
STDIN_NAME = "stdin"

# Colours of finished and failed transfers (ECMA-48 SGR parameters)
SGR_COMPLETE = "32"              # green
SGR_ABORTED = "31"               # red

# Receiving
MAX_NAME_BYTES = 255
MAX_EXTENSION_BYTES = 32
MAX_UPLOAD_DEPTH = 32
MAX_UPLOAD_PATH_BYTES = 1024  # far below PATH_MAX (4096 on Linux, 1024 on macOS)
MAX_NAME_TRIES = 10000
MAX_UPLOAD_FILES = 10000
MAX_PART_HEADER = 16 << 10
MAX_CHUNK_LINE = 4096
MAX_TRAILER_LINES = 64
MAX_EPILOGUE = 64 << 10
MAX_IGNORED_BODY = 64 << 10      # a body on GET or HEAD up to this is read and dropped
DRAIN_SECONDS = 2.0
DRAIN_LIMIT = 64 << 20
UNNAMED_UPLOAD = "upload"
# Tells woof.py's client mode that a URL takes files (a HEAD of it shows it).
UPLOAD_MARKER = ("X-Woof", "upload")
TEMPORARY_PREFIX = ".woof-"
# Methods that bring files or change an upload: another site's page may not use them.
UPLOAD_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TEMPORARY_SUFFIX = ".part"

# Reaching the right person, and only them
SECRET_TOKEN_BYTES = 16          # 128 random bits in the first path segment
FREE_PASSWORD_TRIES = 5          # wrong passwords from one address before slowing down
MAX_PASSWORD_DELAY = 3600        # seconds; the wait doubles after each further failure
MAX_TRACKED_CLIENTS = 4096       # addresses remembered for the slow-down, oldest forgotten
PREFIX_PASSWORD_TRIES_FACTOR = 10  # an IPv6 /64 may fail this many times more than one address
AUTH_REALM = "woof"
EXIT_EXPIRED = 3                 # --expire ended woof before the count was reached
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_PLAIN_HEAD = 8192            # bytes read of a plain HTTP request sent to the HTTPS port
THROWAWAY_CERTIFICATE_LIFETIME = 86400

# Holding out against clients that hog connections
MAX_CONNECTIONS = 256            # connections served at once; one thread each
MAX_CONNECTIONS_PER_CLIENT = 32  # what one address may hold once places run short
RESERVED_CONNECTIONS = 64        # the last places, kept for addresses holding fewer
FEW_CONNECTIONS = 8              # holding fewer, a newcomer may take an idle place when full
MAX_HEAD_SECONDS = 30            # a request head (and TLS handshake) must arrive by then
RETRY_AFTER_SECONDS = 10         # what a refused connection is told to wait
REFUSAL_LOG_SECONDS = 60         # one line a minute at most about one address's refusals

# Values of `compressed` in woofrc, as the original woof and users spell them.
COMPRESSION_WORDS = {
    "gz": "gz", "gzip": "gz", "true": "gz", "yes": "gz", "on": "gz", "1": "gz",
    "bz2": "bz2", "bzip2": "bz2",
    "xz": "xz",
    "zip": "zip",
    "tar": "tar", "off": "tar", "none": "tar", "false": "tar", "no": "tar", "0": "tar",
}

# Archive formats: the extension of the download name, by `compression`.
ARCHIVE_EXTENSIONS = {"gz": ".tar.gz", "bz2": ".tar.bz2", "xz": ".tar.xz",
                      "zip": ".zip", "tar": ".tar"}
# The endings that already say a name is an archive of that format.
ARCHIVE_NAME_ENDINGS = {"gz": (".tar.gz", ".tgz"), "bz2": (".tar.bz2", ".tbz2", ".tbz"),
                        "xz": (".tar.xz", ".txz"), "zip": (".zip",), "tar": (".tar",)}

# Deflate blocks as pigz cuts them (tar.gz and zip alike), each primed with
# the 32 KiB of data before it (deflate's window, RFC 1951 3.2.5) so that
# little ratio is lost.
GZIP_BLOCK_SIZE = 128 << 10
DEFLATE_WINDOW = 32 << 10

# A file at least this large whose extension says nothing is tried first:
# when level 1 cannot bring its first bytes below STORE_TRIAL_RATIO, it
# goes into a tar.gz as it is (stored deflate blocks), not deflated.
STORE_TRIAL_MIN = 64 << 10
STORE_TRIAL_SIZE = 64 << 10

# A smaller file going into a zip, from this size on, is tried on its first
# SMALL_TRIAL_SIZE bytes, on the thread that deflates it: noise (random
# bytes, encrypted files) is stored at once.  For 20,000 files of 1-10 KB,
# half of them random, deflating took 0.93 s of CPU; 0.68 s with the trial
# (and the zip came out 50 kB smaller).
SMALL_TRIAL_MIN = 1 << 10
SMALL_TRIAL_SIZE = 1 << 10

# Below this size a member's data is read into the send buffer; above it,
# sendfile() hands it to the kernel (fewer system calls for small files).
SENDFILE_MIN = 64 << 10

# What an archive being built reads of a file at a time.  Each stream holds
# one such buffer, what it compressed from it and the sink's gathered bytes
# while its client is slow: small, so that many streams fit in little memory.
ARCHIVE_READ_SIZE = 64 << 10

# Zip fields are 32 bits; at 0xFFFFFFFF they defer to zip64 extra fields
# (APPNOTE 6.3.10, 4.5.3).  A member whose deflated size could pass the
# limit (zlib's worst case adds under 0.1%) is written as zip64 up front.
ZIP32_MAX = 0xFFFFFFFF
ZIP_MAX_ENTRIES = 0xFFFF


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

class WoofError(Exception):
    """An expected failure, reported to the user as one line."""


class Unavailable(WoofError):
    """The offer cannot answer this request; carries the HTTP status to send,
    and for a 503 the seconds after which to try again (Retry-After)."""

    def __init__(self, status, message, retry_after=None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ShortFile(WoofError):
    """A file ended before the bytes promised to the client were sent."""


class FileChanged(WoofError):
    """A listed file is gone, or is no longer the file that was listed."""


class UnsatisfiableRange(WoofError):
    """A Range header that selects no byte of the offer (RFC 7233, 4.4)."""


class UploadRefused(Unavailable):
    """An upload that cannot be (or was not completely) received; carries the status."""


class BodyCutOff(UploadRefused):
    """A request body that ended before its end: the client or its network went away."""


class StopRequested(BaseException):
    """A stop signal arrived; raised in the main thread, like KeyboardInterrupt.

    Not an Exception, so that no `except Exception` on the way (socketserver
    has some) swallows it before main() cleans up.
    """

    def __init__(self, number):
        super().__init__(signal_name(number))
        self.number = number


# ---------------------------------------------------------------------------
# Pure helpers: names, URLs, headers, ranges, sizes
# ---------------------------------------------------------------------------

MAX_RANGES = 16

# Requests browsers and crawlers make on their own; they must never get the
# offer, nor count, nor be redirected to it.
SIDE_REQUEST_PATHS = (
    "/favicon.ico",
    "/robots.txt",
    "/apple-touch-icon.png",
    "/apple-touch-icon-precomposed.png",
    "/browserconfig.xml",
    "/manifest.json",
)
SIDE_REQUEST_PREFIXES = ("/.well-known/",)

COMPRESSED_MIME_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def name_bytes(name):
    """The bytes of a name, keeping undecodable file-system bytes as they were."""
    return name.encode("utf-8", "surrogateescape")


def url_path_for(name):
    """The percent-quoted URL path under which a name is offered."""
    return "/" + urllib.parse.quote(name_bytes(name), safe="")


def request_path(raw_path):
    """Decode the path part of a request target, dropping query and fragment;
    ValueError when the target cannot be parsed."""
    path = urllib.parse.urlsplit(raw_path).path
    return urllib.parse.unquote_to_bytes(path).decode("utf-8", "surrogateescape")


def is_side_request(path):
    """True for requests browsers make by themselves (icons, robots.txt...)."""
    return path in SIDE_REQUEST_PATHS or path.startswith(SIDE_REQUEST_PREFIXES)


def printable_name(name):
    """A name fit for a terminal: undecodable bytes and controls made visible."""
    text = name_bytes(name).decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256
                   else "\\u%04x" % ord(c) for c in text)


def ascii_fallback(name):
    """An ASCII stand-in for a name, for clients that ignore filename*."""
    decomposed = unicodedata.normalize("NFKD", name_bytes(name).decode("utf-8", "replace"))
    kept = []
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        safe = 32 <= ord(char) < 127 and char not in '"\\%'
        kept.append(char if safe else "_")
    return "".join(kept) or "download"


def content_disposition(name, disposition="attachment"):
    """A Content-Disposition value that keeps any name (RFC 6266, RFC 5987).

    The quoted filename is an ASCII fallback; filename* carries the exact
    name in UTF-8 whenever the fallback differs from it.
    """
    fallback = ascii_fallback(name)
    value = '%s; filename="%s"' % (disposition, fallback)
    if fallback != name:
        exact = urllib.parse.quote(name_bytes(name), safe="!#$&+^`|")
        value += "; filename*=UTF-8''" + exact
    return value


def guess_content_type(name):
    """The media type for a name; compressed files are named as such."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return COMPRESSED_MIME_TYPES.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def http_date(timestamp):
    """A timestamp as an HTTP date (RFC 7231, 7.1.1.1)."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(value):
    """The timestamp of an HTTP date in any of its three forms (RFC 9110,
    5.6.7), or None when it is not one.  asctime's form names no zone: like
    the others, it is in UTC."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


_RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header, size):
    """The one span (start, stop) a Range header asks of `size` bytes, or None.

    None means "send the whole body": the header is malformed, names another
    unit, or asks for several disjoint spans, all of which RFC 7233 (3.1)
    lets a server ignore.  Overlapping and adjacent spans are merged first.
    Raises UnsatisfiableRange when no span overlaps the body, or when the
    header lists more than MAX_RANGES spans (a request made to waste work).
    """
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs:
        return None
    parts = [part for part in specs.split(",") if part.strip()]
    if not parts:
        return None
    if len(parts) > MAX_RANGES:
        raise UnsatisfiableRange("too many ranges")
    spans = []
    for part in parts:
        match = _RANGE_SPEC.match(part)
        if not match:
            return None
        first, last = match.groups()
        if not first and not last:
            return None
        if len(first) > MAX_RANGE_DIGITS or len(last) > MAX_RANGE_DIGITS:
            return None
        span = range_span(first, last, size)
        if span is False:
            return None
        if span is not None:
            spans.append(span)
    if not spans:
        raise UnsatisfiableRange("no range overlaps the body")
    merged = merge_spans(spans)
    return merged[0] if len(merged) == 1 else None


def range_span(first, last, size):
    """One byte-range-spec as (start, stop); None if outside the body, False if invalid."""
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return (max(0, size - suffix), size)
    start = int(first)
    if last and int(last) < start:
        return False
    if start >= size:
        return None
    stop = size if not last else min(int(last) + 1, size)
    return (start, stop)


def merge_spans(spans):
    """Sort spans and merge those that overlap or touch."""
    merged = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def covers(spans, size):
    """True when merged spans hold every byte from 0 to size."""
    if size == 0:
        return True
    return bool(spans) and spans[0][0] == 0 and spans[0][1] >= size


def format_size(count):
    """A byte count for people: 512 B, 1.5 KiB, 2.0 GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return "%d B" % count if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024
    return "%d B" % count


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtpe])(i?)(b?)|(b?))\s*$", re.I)
SIZE_PREFIXES = "kmgtpe"


def parse_size(text):
    """The bytes in a size people write: 1048576, 500M, 2G, 1.5GiB, 2GB.

    K, M, G... and KiB, MiB, GiB... are powers of 1024; KB, MB, GB... are
    powers of 1000, as in dd.  Raises ValueError for anything else.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError("%r is not a size" % text)
    number, prefix, binary, byte, _ = match.groups()
    power = SIZE_PREFIXES.index(prefix.lower()) + 1 if prefix else 0
    base = 1000 if byte and not binary else 1024
    return int(fractions.Fraction(number) * base ** power)


def client_host(address):
    """The client's address as people write it (no IPv4-mapped prefix)."""
    host = address[0]
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def url_host(host):
    """A host as it stands in a URL: IPv6 literals go in brackets."""
    return "[%s]" % host if ":" in host else host


# ---------------------------------------------------------------------------
# Output: one logger for everything that goes to stderr
# ---------------------------------------------------------------------------

SGR_WARNING = "33"  # yellow (an ECMA-48 SGR parameter)


class Log:
    """Writes log lines to stderr (or another stream), one whole line at a time.

    On a terminal, live lines (the progress of transfers) may stand below the
    log: show_live() redraws them in place, and every other line, on stderr
    or stdout, is written above them.  Colour only on a terminal, and never
    when NO_COLOR is set.
    """

    def __init__(self, quiet=False, stream=None, environ=None):
        environ = os.environ if environ is None else environ
        self.quiet = quiet
        self.stream = stream
        self.lock = threading.Lock()
        sequences = terminal_sequences_work(self.target(), environ)
        self.colour = sequences and wants_colour(self.target(), environ)
        self.live = sequences and not quiet
        self.live_lines = []

    def target(self):
        return self.stream if self.stream is not None else sys.stderr

    def write(self, line, out=None):
        """Write one line to stderr, or to `out` (stdout), above any live lines."""
        stream = self.target()
        out = stream if out is None else out
        with self.lock:
            try:
                if self.live_lines:
                    stream.write(self.erase_live())
                    stream.flush()
                out.write(line + "\n")
                out.flush()
                if self.live_lines:
                    stream.write(self.live_text())
                    stream.flush()
            except (OSError, ValueError, UnicodeError):
                pass  # a closed or odd terminal must not stop a transfer

    def show_live(self, lines):
        """Put these lines in place of the live lines drawn before (a terminal's only)."""
        if not self.live:
            return
        stream = self.target()
        with self.lock:
            if not lines and not self.live_lines:
                return
            erase = self.erase_live()
            self.live_lines = list(lines)
            try:
                stream.write(erase + self.live_text())
                stream.flush()
            except (OSError, ValueError, UnicodeError):
                pass

    def live_text(self):
        return "".join(line + "\n" for line in self.live_lines)

    def erase_live(self):
        """What erases the live lines: the cursor up to the first (CUU), then
        erase to the end of the screen (ED); ECMA-48, 8.3.22 and 8.3.39."""
        if not self.live_lines:
            return ""
        return "\x1b[%dA\r\x1b[J" % len(self.live_lines)

    def columns(self):
        return terminal_columns(self.target())

    def paint(self, text, style):
        """text in an ECMA-48 graphic rendition (SGR), where colour is wanted."""
        return "\x1b[%sm%s\x1b[0m" % (style, text) if self.colour else text

    def info(self, message):
        """A routine event: a request, a finished download.  Silenced by -q."""
        if not self.quiet:
            self.write(time.strftime("[%H:%M:%S] ") + message)

    def warn(self, message):
        """Something the user must know even with -q."""
        self.write(self.paint("woof: warning:", SGR_WARNING) + " " + message)


def wants_colour(stream, environ=None):
    """True for a terminal, unless NO_COLOR is set to anything (no-color.org)."""
    environ = os.environ if environ is None else environ
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return terminal and not environ.get("NO_COLOR")


# ---------------------------------------------------------------------------
# Network discovery
# ---------------------------------------------------------------------------

# Addresses reserved for documentation (RFC 5737, RFC 3849): connecting a UDP
# socket to one sends nothing but tells which local address would be used.
TEST_NET_V4 = "192.0.2.1"
TEST_NET_V6 = "2001:db8::1"

# Interfaces only this machine's containers and virtual machines reach:
# Docker (docker0, br-*, veth*), Podman, CNI, libvirt, LXC, LXD, Incus,
# VirtualBox and VMware host-only networks.  A plain "br0" is left in: it
# is usually the bridge that carries the machine onto its LAN.
LOCAL_BRIDGE_PREFIXES = ("docker", "br-", "veth", "podman", "cni", "virbr", "lxcbr",
                         "lxdbr", "incusbr", "vboxnet", "vmnet")

# Interfaces of VPNs and overlay networks: tun and tap (OpenVPN and others;
# a virtual machine's tap is a bridge port and carries no address), WireGuard,
# macOS utun, PPP, IPsec, Tailscale, ZeroTier, Nebula.  Point-to-point
# interfaces count as tunnels too, whatever their name.
TUNNEL_PREFIXES = ("tun", "tap", "wg", "utun", "ppp", "ipsec", "tailscale", "zt", "nebula")
VPN_NOTE = "VPN"

# RFC 6598 shared address space: carrier-grade NAT and overlays (Tailscale).
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")

# Site-private ranges: RFC 1918, and IPv6 unique local addresses (RFC 4193).
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))

# Linux interface ioctls (linux/sockios.h) and the struct ifreq they take:
# a 16-byte name, then a union whose largest member is struct ifmap.
SIOCGIFCONF = 0x8912
SIOCGIFFLAGS = 0x8913
IFNAMSIZ = 16
IFREQ_SIZE = IFNAMSIZ + max(16, struct.calcsize("LLHBBB0L"))
MAX_IFCONF_RECORDS = 1 << 16
IFF_UP = 0x1
IFF_POINTOPOINT = 0x10
IFF_RUNNING = 0x40

# IPv6 address flags in /proc/net/if_inet6 (linux/if_addr.h).  Temporary
# addresses (RFC 4941) are left out: the kernel makes them only beside a
# stable address of the same prefix, which reaches this machine as well and
# does not change while woof runs.  Addresses still being checked for
# duplicates, found duplicate, or deprecated are not to be handed out.
IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
UNADVERTISED_IPV6_FLAGS = IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE

# Route flags in /proc/net/route and /proc/net/ipv6_route (linux/route.h).
RTF_UP = 0x0001
RTF_REJECT = 0x0200


def resolve_bind_address(ip, port):
    """(family, address) to listen on: all addresses, or the one asked for."""
    if not ip:
        if ipv6_dual_stack_available():
            return socket.AF_INET6, ("::", port)
        return socket.AF_INET, ("0.0.0.0", port)
    try:
        infos = socket.getaddrinfo(ip, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise WoofError("cannot listen on %r: %s" % (ip, getattr(error, "strerror", error)))
    family, _, _, _, address = infos[0]
    return family, address


def outgoing_address(family):
    """The local address this machine would use to reach others, or None.

    Connecting a UDP socket sends no packet; it only makes the system pick
    a route, whose source address is the one other machines can reach.
    """
    probe = TEST_NET_V4 if family == socket.AF_INET else TEST_NET_V6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))
            address = udp.getsockname()[0]
    except OSError:
        return None
    return None if address in ("0.0.0.0", "::") else address


class LocalAddress(NamedTuple):
    """One address of this machine, with what is known of its interface."""

    address: str
    interface: str = ""  # "" where the system does not tell
    index: int = 0  # the interface's place in the system's list
    on_default_route: bool = False  # its interface carries a default route
    point_to_point: bool = False  # its interface is a tunnel's end


def is_advertised(ip, interface):
    """True when another machine could reach ip on this interface.

    Loopback and link-local addresses (169.254/16, fe80::/10: the latter
    needs the other side's zone, which woof cannot know) are left out, and
    so are the bridges of local containers and virtual machines.
    """
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified
                or interface.startswith(LOCAL_BRIDGE_PREFIXES))


def is_tunnel(ip, local):
    """True for an address of a VPN or an overlay network."""
    return (local.point_to_point or local.interface.startswith(TUNNEL_PREFIXES)
            or ip in SHARED_ADDRESS_SPACE)


def ranked_hosts(addresses):
    """(host, note) for the LocalAddress list worth printing, best first.

    Ordinary interfaces come before VPNs and overlays (note VPN_NOTE).  In
    each group: interfaces carrying a default route first, then IPv4 before
    IPv6, then interfaces in the system's order; on one interface, private
    addresses (RFC 1918, ULA) before global ones, each as the system lists
    them.  An address listed twice is printed once.
    """
    ranked = []
    seen = set()
    for position, local in enumerate(addresses):
        try:
            ip = ipaddress.ip_address(local.address.split("%", 1)[0])
        except ValueError:
            continue
        if ip in seen or not is_advertised(ip, local.interface):
            continue
        seen.add(ip)
        tunnel = is_tunnel(ip, local)
        private = any(ip in network for network in PRIVATE_NETWORKS)
        key = (tunnel, not local.on_default_route, ip.version, local.index, not private, position)
        ranked.append((key, str(ip), VPN_NOTE if tunnel else ""))
    ranked.sort(key=lambda entry: entry[0])
    return [(host, note) for _, host, note in ranked]


def ipv4_interface_addresses(ifconf):
    """(interface, address) pairs in the records of a SIOCGIFCONF answer.

    Each struct ifreq names the address's label ("eth0", or "eth0:1" for a
    labelled alias of eth0) and holds a struct sockaddr_in.
    """
    pairs = []
    for start in range(0, len(ifconf) - IFREQ_SIZE + 1, IFREQ_SIZE):
        label = os.fsdecode(ifconf[start:start + IFNAMSIZ].split(b"\0", 1)[0])
        family = struct.unpack_from("H", ifconf, start + IFNAMSIZ)[0]
        if family == socket.AF_INET:
            packed = ifconf[start + IFNAMSIZ + 4:start + IFNAMSIZ + 8]
            pairs.append((label.split(":", 1)[0], socket.inet_ntoa(packed)))
    return pairs


def ipv6_interface_addresses(if_inet6):
    """(interface, address) pairs of /proc/net/if_inet6 fit to hand out."""
    pairs = []
    for line in if_inet6.splitlines():
        fields = line.split()
        if len(fields) != 6 or int(fields[4], 16) & UNADVERTISED_IPV6_FLAGS:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        pairs.append((fields[5], str(address)))
    return pairs


def default_route_interfaces(ipv4_routes, ipv6_routes):
    """Names of the interfaces carrying a default route in /proc/net/route
    and /proc/net/ipv6_route (unreachable and prohibit routes do not count)."""
    names = set()
    for line in ipv4_routes.splitlines()[1:]:
        fields = line.split()
        if (len(fields) >= 8 and int(fields[1], 16) == 0 and int(fields[7], 16) == 0
                and int(fields[3], 16) & (RTF_UP | RTF_REJECT) == RTF_UP):
            names.add(fields[0])
    for line in ipv6_routes.splitlines():
        fields = line.split()
        if (len(fields) == 10 and int(fields[0], 16) == 0 and int(fields[1], 16) == 0
                and int(fields[8], 16) & (RTF_UP | RTF_REJECT) == RTF_UP):
            names.add(fields[9])
    return names


def interface_addresses(pairs, indexes, default_interfaces, flags):
    """LocalAddress for each (interface, address) pair on an interface that is up.

    indexes and flags map interface names to their index and their IFF_*
    flags; an interface missing from flags is taken to be up.
    """
    addresses = []
    for interface, address in pairs:
        interface_flags = flags.get(interface, IFF_UP | IFF_RUNNING)
        if interface_flags & (IFF_UP | IFF_RUNNING) != IFF_UP | IFF_RUNNING:
            continue  # down, or without carrier: nobody reaches it now
        addresses.append(LocalAddress(address, interface, indexes.get(interface, len(indexes)),
                                      interface in default_interfaces,
                                      bool(interface_flags & IFF_POINTOPOINT)))
    return addresses


def read_table(path):
    """A kernel table from /proc, or "" when this kernel has none (no IPv6)."""
    try:
        with open(path, encoding="ascii", errors="replace") as table:
            return table.read()
    except FileNotFoundError:
        return ""


def kernel_ifconf(probe):
    """The kernel's SIOCGIFCONF answer: one struct ifreq per IPv4 address."""
    import fcntl
    records = 64
    while True:
        buffer = array.array("B", bytes(records * IFREQ_SIZE))
        request = struct.pack("iP", len(buffer), buffer.buffer_info()[0])
        length = struct.unpack("iP", fcntl.ioctl(probe.fileno(), SIOCGIFCONF, request))[0]
        if length < len(buffer) or records >= MAX_IFCONF_RECORDS:
            return buffer.tobytes()[:length]
        records *= 4  # a full buffer may have left addresses out


def kernel_interface_flags(probe, name):
    """An interface's IFF_* flags by SIOCGIFFLAGS, or None if it has gone."""
    import fcntl
    request = struct.pack("%dsH" % IFNAMSIZ, os.fsencode(name), 0).ljust(IFREQ_SIZE, b"\0")
    try:
        answer = fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, request)
    except OSError:
        return None
    return struct.unpack_from("H", answer, IFNAMSIZ)[0]


def kernel_table_addresses(families):
    """This machine's addresses of the given families, from the Linux kernel's
    tables and interface ioctls (nothing is sent); OSError where unreadable.

    SIOCGIFCONF lists every IPv4 address in one fixed-layout answer, where
    netlink would need a request, a multipart dump and attribute parsing for
    the same facts; IPv6 addresses and routes are text tables in /proc.
    """
    pairs = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if socket.AF_INET in families:
            pairs.extend(ipv4_interface_addresses(kernel_ifconf(probe)))
        if socket.AF_INET6 in families:
            pairs.extend(ipv6_interface_addresses(read_table("/proc/net/if_inet6")))
        flags = {}
        for name in set(name for name, _ in pairs):
            found = kernel_interface_flags(probe, name)
            flags[name] = 0 if found is None else found
    indexes = dict((name, index) for index, name in socket.if_nameindex())
    default_interfaces = default_route_interfaces(read_table("/proc/net/route"),
                                                  read_table("/proc/net/ipv6_route"))
    return interface_addresses(pairs, indexes, default_interfaces, flags)


def host_name_addresses(families, host_name=None):
    """This machine's addresses as other systems tell them: the source address
    of each family's default route first, then what the host name resolves to.

    The first sends nothing (a UDP connect).  The second is usually answered
    from the hosts file or the system's own record of its name (Windows; a
    macOS .local name); a name known to neither makes the resolver ask DNS.
    """
    addresses = []
    for family in families:
        outgoing = outgoing_address(family)
        if outgoing is not None:
            addresses.append(LocalAddress(outgoing, on_default_route=True))
    try:
        infos = socket.getaddrinfo(host_name or socket.gethostname(), None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    for family, _, _, _, address in infos:
        if family in families:
            addresses.append(LocalAddress(address[0]))
    return addresses


def advertised_hosts(bound_host):
    """(host, note) pairs for the URLs to print for a server bound to
    bound_host, best first (see ranked_hosts); note is "" or VPN_NOTE.

    "0.0.0.0" gets IPv4 addresses, "::" (dual stack) IPv4 then IPv6 ones, any
    other address just itself.  With nothing else, the loopback address.
    """
    if bound_host not in ("0.0.0.0", "::"):
        return [(bound_host, "")]
    if bound_host == "0.0.0.0":
        families, loopback = (socket.AF_INET,), "127.0.0.1"
    elif ipv6_dual_stack_available():
        families, loopback = (socket.AF_INET, socket.AF_INET6), "127.0.0.1"
    else:
        families, loopback = (socket.AF_INET6,), "::1"
    addresses = None
    if LINUX_INTERFACE_TABLES:
        try:
            addresses = kernel_table_addresses(families)
        except (OSError, ValueError):
            pass  # tables hidden or odd (a sandbox): ask as other systems do
    if addresses is None:
        addresses = host_name_addresses(families)
    return ranked_hosts(addresses) or [(loopback, "")]


# Where the resolver keeps the domains it appends to short names (resolv.conf(5)).
RESOLVER_CONFIGURATION = "/etc/resolv.conf"


def resolver_domains(text):
    """The domains a resolv.conf text names on its "domain" and "search"
    lines, lowercased, without a final dot, in order and once each."""
    domains = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] not in ("domain", "search"):
            continue
        for word in words[1:]:
            domain = word.lower().strip(".")
            if domain and domain not in domains:
                domains.append(domain)
    return domains


def own_domains(path=RESOLVER_CONFIGURATION):
    """resolver_domains of this system's resolver configuration; none
    where there is none (Windows) or it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return resolver_domains(handle.read())
    except OSError:
        return []


def describe_bind_error(error, settings):
    """One line telling why listening failed and what to do about it."""
    if error.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        return ("port %d is already in use; choose another with -p PORT, or -p 0 "
                "for any free port" % settings.port)
    if error.errno in (errno.EACCES, getattr(errno, "WSAEACCES", -1)):
        return ("not allowed to listen on port %d; ports below 1024 need special "
                "rights, so try -p 8080" % settings.port)
    if error.errno == errno.EADDRNOTAVAIL:
        return "%s is not an address of this machine" % settings.ip
    return "cannot listen on port %d: %s" % (settings.port, error.strerror or error)


# ---------------------------------------------------------------------------
# Response bodies: how bytes reach the socket
# ---------------------------------------------------------------------------

SENDFILE_SLICE = 64 << 20


class ResponseSink:
    """Writes one response body to a socket, counting the body bytes sent.

    With chunked=True the body is framed in HTTP/1.1 chunks (RFC 7230, 4.1),
    for bodies whose size is not known in advance.  Small writes are
    gathered into larger ones; sendfile() hands file data to the kernel.
    `sent` counts body bytes that left woof, framing excluded.  A TLS socket
    must not be given to sendfile(), which would bypass the encryption.
    """

    def __init__(self, sock, chunked=False, use_sendfile=HAS_OS_SENDFILE):
        self.sock = sock
        self.chunked = chunked
        self.use_sendfile = use_sendfile
        self.sent = 0
        self.pending = bytearray()

    def write(self, data):
        """Send bytes, gathering small writes into larger ones."""
        if len(data) >= SMALL_WRITE_LIMIT:
            self.flush()
            self.send_framed(data)  # large already: no copy into the gathering buffer
            return
        self.pending += data
        if len(self.pending) >= SMALL_WRITE_LIMIT:
            self.flush()

    def flush(self):
        """Send what write() has gathered."""
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.send_framed(data)

    def send_framed(self, data):
        if self.chunked:
            self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            self.sent += len(data)
        else:
            self.send_counted(data)

    def send_counted(self, data):
        """Send all of data, counting in `sent` what the socket took even when
        the client goes away midway (sendall would lose that count)."""
        view = memoryview(data)
        while view:
            taken = self.sock.send(view)
            self.sent += taken
            view = view[taken:]

    def sendfile(self, fileobj, offset, count):
        """Send exactly `count` bytes of a regular file, from `offset`.

        Raises ShortFile when the file ends first (it shrank while offered).
        """
        self.flush()
        if count <= 0:
            return
        if self.chunked:
            self.sock.sendall(b"%x\r\n" % count)
        if self.use_sendfile:
            self.copy_with_sendfile(fileobj, offset, count)
        else:
            self.copy_with_buffer(fileobj, offset, count)
        if self.chunked:
            self.sock.sendall(b"\r\n")

    def copy_with_sendfile(self, fileobj, offset, count):
        # os.sendfile rather than socket.sendfile: the latter loses count of
        # what was sent when the client goes away midway.
        out, source = self.sock.fileno(), fileobj.fileno()
        timeout = self.sock.gettimeout()
        end = offset + count
        with selectors.DefaultSelector() as selector:
            selector.register(out, selectors.EVENT_WRITE)
            while offset < end:
                try:
                    done = os.sendfile(out, source, offset, min(SENDFILE_SLICE, end - offset))
                except BlockingIOError:
                    if not selector.select(timeout):
                        raise socket.timeout("timed out")
                    continue
                if done == 0:
                    raise ShortFile("file ended %d bytes early" % (end - offset))
                offset += done
                self.sent += done

    def copy_with_buffer(self, fileobj, offset, count):
        fileobj.seek(offset)
        buffer = bytearray(min(COPY_BUFFER_SIZE, count))
        view = memoryview(buffer)
        while count > 0:
            got = fileobj.readinto(view[:min(len(buffer), count)])
            if not got:
                raise ShortFile("file ended %d bytes early" % count)
            self.send_counted(view[:got])
            count -= got

    def finish(self):
        """Send what is left and, when chunked, the last chunk."""
        self.flush()
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def received(self):
        """Body bytes the client's TCP acknowledged: all of `sent` where the system cannot tell.

        Linux keeps the count of unacknowledged bytes even after a reset, so
        this holds for a broken transfer too.
        """
        pending = unacknowledged_bytes(self.sock)
        return self.sent if pending is None else max(0, self.sent - pending)

    def wait_for_delivery(self, timeout):
        """Wait until the client's TCP has acknowledged the body; return bytes it lacks.

        Where the system cannot tell, return 0: the kernel took everything.
        A client that vanishes (Wi-Fi lost, laptop closed) leaves bytes
        unacknowledged; an RST or the timeout ends the wait.
        """
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            pending = unacknowledged_bytes(self.sock)
            if not pending:
                return 0
            failed = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failed or time.monotonic() > deadline:
                return min(pending, self.sent)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


# ---------------------------------------------------------------------------
# Request heads: a deadline for what a client must send
#
# A timeout on each read alone lets a client hold a connection for ever by
# sending a byte now and then.  A request head, and the TLS handshake
# before the first one, must arrive whole by a deadline: a set time after
# the connection was accepted, or after the previous response.
# ---------------------------------------------------------------------------

def set_timeout_by(sock, deadline, timeout):
    """Give sock's next operation the time left before a monotonic deadline,
    and at most `timeout`; raise socket.timeout when none is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    sock.settimeout(min(left, timeout))


class HeadReader(io.RawIOBase):
    """A connection's incoming bytes, for an io.BufferedReader; while a head
    is awaited (start_head), every read gets only the time left before its
    deadline, however many bytes the reads before it brought.

    `cut` tells whether the last head awaited ran out of time after some of
    it had arrived: a connection merely left idle has nothing to report.
    """

    def __init__(self, sock, timeout):
        self.sock = sock
        self.timeout = timeout
        self.deadline = None
        self.head_bytes = 0
        self.cut = False

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is None:
            return self.sock.recv_into(buffer)
        try:
            set_timeout_by(self.sock, self.deadline, self.timeout)
            count = self.sock.recv_into(buffer)
        except socket.timeout:
            self.cut = self.head_bytes > 0
            raise
        self.head_bytes += count
        return count

    def start_head(self, deadline):
        self.deadline = deadline
        self.head_bytes = 0
        self.cut = False

    def end_head(self):
        """The head has arrived: reads get the usual timeout again."""
        if self.deadline is not None:
            self.deadline = None
            self.sock.settimeout(self.timeout)


# ---------------------------------------------------------------------------
# Offers: what woof hands out
#
# An offer has a `name` (the download name), a `content_type`, and
# open(sending_body, resuming) returning a ResponseBody for one request
# (resuming: it asks for a Range), or raising Unavailable.  Only bodies of
# known size are asked for ranges.
# ---------------------------------------------------------------------------

DIGEST_BUFFER_SIZE = 256 << 10   # the offered file's SHA-256 is read this much at a time


class ResponseBody:
    """What every body has, with its defaults; the bodies of offers derive from it.

    `size` is None when unknown; `etag` and `mtime` are None when the body
    has none; `digest` is the SHA-256 of all its bytes (for Repr-Digest)
    when woof knows it, else None.  A body of unknown size that cannot be
    sent again has one_shot = True, give_back_unreached() and read_failed
    (its source, not the client, failed).  `resume_conflict`, when set, is a reason to refuse a Range without
    If-Range from a client whose earlier bytes came from another state
    (ETag) of the offer.  write(sink, start, stop) sends bytes [start,
    stop) of it; close() lets go of what it holds.
    """

    size = None
    etag = None
    mtime = None
    digest = None
    one_shot = False
    read_failed = False
    resume_conflict = None

    def write(self, sink, start, stop):
        raise NotImplementedError

    def close(self):
        pass


def open_listed_file(path, identity, extra_flags=0, dir_fd=None):
    """Open path only if it is still the regular file listed as identity; return (file, status).

    identity is (device, inode), an inode of 0 (unknown) matching any file;
    with dir_fd, path is relative to that folder's descriptor.  Raises
    FileChanged, never blocking on a FIFO that took the file's place.
    """
    descriptor, status = open_listed_descriptor(path, identity, extra_flags, dir_fd)
    try:
        return os.fdopen(descriptor, "rb"), status
    except BaseException:
        os.close(descriptor)
        raise


def open_listed_descriptor(path, identity, extra_flags=0, dir_fd=None):
    """open_listed_file's (descriptor, status): no file object, for files read at once."""
    try:
        descriptor = os.open(path, os.O_RDONLY | O_BINARY | O_NONBLOCK | extra_flags,
                             dir_fd=dir_fd)
    except OSError as error:
        raise FileChanged(error.strerror or str(error))
    try:
        status = os.fstat(descriptor)
        same = identity[1] == 0 or (status.st_dev, status.st_ino) == identity
        if not stat.S_ISREG(status.st_mode) or not same:
            raise FileChanged("it was replaced after woof listed it")
        return descriptor, status
    except BaseException:
        os.close(descriptor)
        raise


def file_etag(status):
    """A strong ETag for a file as os.stat found it: inode, size and modification time."""
    mtime_ns = getattr(status, "st_mtime_ns", int(status.st_mtime * 1e9))
    return '"%x-%x-%x"' % (status.st_ino, status.st_size, mtime_ns)


class FileBody(ResponseBody):
    """One open, regular file, as it is at the time of the request.

    `digest` is its SHA-256 when woof has computed it for this very file
    (same ETag), or None.
    """

    def __init__(self, fileobj):
        self.file = fileobj
        status = os.fstat(fileobj.fileno())
        self.size = status.st_size
        self.mtime = status.st_mtime
        self.etag = file_etag(status)

    def write(self, sink, start, stop):
        sink.sendfile(self.file, start, stop - start)

    def close(self):
        self.file.close()


class FileOffer:
    """A regular file on disk, re-opened for each request.

    Each request must find the very file offered at start (same device and
    inode): a FIFO or a link to another file put in its place is refused.
    """

    def __init__(self, path, name=None):
        self.path = path
        self.name = name or os.path.basename(os.path.abspath(path))
        self.content_type = guess_content_type(self.name)
        check_readable_file(path)
        status = os.stat(path)
        self.identity = (status.st_dev, status.st_ino)
        self.digest = None  # (ETag, SHA-256) once compute_digest() has read the file

    def open(self, sending_body=True, resuming=False):
        try:
            fileobj, _ = open_listed_file(self.path, self.identity)
        except FileChanged as error:
            raise Unavailable(HTTPStatus.GONE, "the offered file is gone: %s" % error)
        body = FileBody(fileobj)
        known = self.digest
        if known is not None and known[0] == body.etag:
            body.digest = known[1]
        return body

    def compute_digest(self, may_go_on=lambda: True):
        """Read the file once and keep its SHA-256 for the bodies of the very
        same file (same ETag); return it in hex, or None when the file changed
        meanwhile or may_go_on() said to stop.

        may_go_on() is asked before each read, and may wait: woof pauses
        while a transfer runs, so that computing never slows one down.
        """
        try:
            fileobj, status = open_listed_file(self.path, self.identity)
        except FileChanged:
            return None
        view = memoryview(bytearray(DIGEST_BUFFER_SIZE))
        digest = hashlib.sha256()
        with fileobj:
            while True:
                if not may_go_on():
                    return None
                got = fileobj.readinto(view)
                if not got:
                    break
                digest.update(view[:got])
            etag = file_etag(status)
            if file_etag(os.fstat(fileobj.fileno())) != etag:
                return None
        self.digest = (etag, digest.digest())
        return digest.hexdigest()


def check_readable_file(path):
    """Raise WoofError unless path is a regular file this process can read."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise WoofError("%s is a folder" % printable_name(path))
        if not stat.S_ISREG(mode):
            raise WoofError("%s is not a regular file" % printable_name(path))
        with open(path, "rb") as fileobj:
            fileobj.read(1)
    except OSError as error:
        raise WoofError("cannot read %s: %s" % (printable_name(path), error.strerror or error))


class StreamBody(ResponseBody):
    """The rest of a stream that can be read only once, such as a pipe.

    The stream is this client's only once a byte of it has reached the
    client (ResponseSink.received: acknowledged by its TCP, where the system
    tells).  Until then every byte read is held, with what earlier clients
    were sent in vain first, so that a transfer that fails gives it all
    back to the offer, in order, for the next client: one that left before
    the first byte costs nothing.  What is held is bounded by what the
    kernel takes unacknowledged.
    """

    one_shot = True
    read_failed = False  # True once reading the stream failed, not sending it

    def __init__(self, read, held, give_back):
        self.read = read
        self.held = held  # the stream from its start, read; None once a byte reached
        self.give_back = give_back
        self.started = False

    def write(self, sink, start=0, stop=None):
        self.started = True
        for data in list(self.held):
            self.send(sink, data)
        while True:
            # read1 returns what has arrived, so a slow producer is not held back.
            try:
                data = self.read(COPY_BUFFER_SIZE)
            except OSError as error:
                self.held = None  # a stream that fails is lost for everyone
                self.read_failed = True
                raise WoofError("cannot read the stream: %s" % (error.strerror or error))
            if not data:
                return
            if self.held is not None:
                self.held.append(data)
            self.send(sink, data)

    def send(self, sink, data):
        sink.write(data)
        sink.flush()
        if self.held is not None and sink.received() > 0:
            self.held = None

    def give_back_unreached(self):
        """After a transfer that failed: give the stream back if no byte reached.

        Returns False when bytes reached the client and were let go: the
        stream's start is lost and it cannot be sent to anyone else.
        """
        if self.held is None:
            return False
        self.give_back(self.held)
        self.held = None
        return True

    def close(self):
        if not self.started:
            self.give_back(self.held)


class StreamOffer:
    """Standard input or another one-shot stream: the first client it reaches takes it."""

    def __init__(self, stream, name=STDIN_NAME):
        self.read = getattr(stream, "read1", stream.read)
        self.name = name
        self.content_type = guess_content_type(name)
        self.taken = False
        self.unreached = []  # what was read and sent in vain, for the next client
        self.lock = threading.Lock()

    def open(self, sending_body=True, resuming=False):
        with self.lock:
            if self.taken:
                raise Unavailable(HTTPStatus.GONE, "the stream has already been sent")
            if not sending_body:
                return StreamBody(self.read, [], lambda held: None)
            self.taken = True
            held, self.unreached = self.unreached, []
        return StreamBody(self.read, held, self.give_back)

    def give_back(self, held):
        """Take the stream back with what was read of it (from its start), unsent."""
        with self.lock:
            self.unreached = held
            self.taken = False


def standard_input():
    """This process's standard input, in binary; WoofError when it has none.

    Python sets sys.stdin to None when descriptor 0 is closed (`<&-`), and
    under pythonw on Windows.
    """
    if sys.stdin is None:
        raise WoofError("standard input is closed: there is nothing to offer with -")
    return sys.stdin.buffer


# ---------------------------------------------------------------------------
# Compression
#
# Archives are compressed on every core.  zlib, bz2 and lzma let other
# threads run while they compress, so blocks handed to a few threads
# compress at once.  One pool serves every archive of an offer; each stream
# keeps its blocks in order and only a few in flight, so that a client that
# reads nothing holds little.  With one core there are no threads: each
# block is compressed where it is given.
# ---------------------------------------------------------------------------

# Levels chosen for speed with the usual ratio: gzip's and bzip2's defaults;
# xz preset 2 needs 17 MiB to compress, where its default (6) needs 94 MiB.
GZIP_LEVEL = 6
BZIP2_LEVEL = 9
XZ_PRESET = 2

# Compressed tars are cut into blocks that every core compresses at once:
# deflate blocks of GZIP_BLOCK_SIZE; bzip2 blocks of its -9 size, each its
# own stream; xz blocks of three times preset 2's 1 MiB dictionary, as
# xz -T cuts them.
BZIP2_BLOCK_SIZE = 900000
XZ_BLOCK_SIZE = 3 << 20
STORED_BLOCK_MAX = 0xFFFF  # a stored deflate block's LEN is 16 bits (RFC 1951 3.2.4)
STORED_SEND_SIZE = 256 << 10  # what a file stored in a tar.gz is sent by

# Blocks of one stream given to the cores and not yet sent: one more than
# the cores, to keep them busy, but few enough that a client that reads
# nothing holds little (at most this many bytes of blocks, and never fewer
# than two blocks).  Small blocks (deflate's) fill ARCHIVE_BYTES_QUEUED
# whatever the cores: with 3 in flight on 2 cores, the cores waited on
# the thread reading files, and a tar.gz of 20,000 small files took 1.2 to
# 1.3 s; with 8, 1.10 to 1.14 s; with 12 (and 16), 1.03 to 1.08 s.  250
# clients that read nothing then hold woof at 160 MiB (tar.gz).
ARCHIVE_BYTES_IN_FLIGHT = 8 << 20
ARCHIVE_BYTES_QUEUED = 3 << 19

# A compression thread with nothing to do for this long ends; the next
# archive starts it again.
COMPRESSION_THREAD_IDLE = 2.0

# A file tried first (see STORE_TRIAL_MIN) is stored when level 1 cannot
# bring its first bytes below this share of their size.
STORE_TRIAL_RATIO = 0.95

# Already-compressed files are stored as they are, in zips and in tar.gz
# (as stored deflate blocks): deflating them again costs time and gains nothing.
ZIP_STORED_EXTENSIONS = frozenset((
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".avif", ".jxl",
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".3gp",
    ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac", ".wma",
    ".zip", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst", ".lz", ".lz4",
    ".7z", ".rar", ".jar", ".apk", ".deb", ".rpm", ".dmg", ".cab",
    ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".woff", ".woff2",
))


class CompressionTask:
    """A function to run on a pool thread, and what it returned or raised."""

    def __init__(self, function, args):
        self.function = function
        self.args = args
        self.done = threading.Event()
        self.value = self.error = None

    def run(self):
        try:
            self.value = self.function(*self.args)
        except BaseException as error:  # handed to whoever waits for the result
            self.error = error
        self.function = self.args = None
        self.done.set()

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class CompressionPool:
    """Threads, one per usable core, started when first needed; each ends after
    COMPRESSION_THREAD_IDLE seconds without work.  They are daemons: woof never
    waits for them to exit.  However many streams there are, no more blocks
    than threads are compressed at once, so compressors' memory (17 MiB
    each for xz -2) stays bounded."""

    def __init__(self, threads=None):
        self.threads = threads
        self.tasks = queue.Queue()
        self.running = 0
        self.lock = threading.Lock()

    def size(self):
        """How many threads compress at once (1: each task runs where it is given)."""
        if self.threads is None:
            self.threads = max(USABLE_CORES, 1)
        return self.threads

    def submit(self, function, *args):
        """Run function(*args), on a pool thread when there are several cores."""
        task = CompressionTask(function, args)
        if self.size() <= 1:
            task.run()
            return task
        with self.lock:
            self.tasks.put(task)
            if self.running < self.threads:
                self.running += 1
                worker = threading.Thread(target=self.work, name="woof-compress")
                worker.daemon = True
                worker.start()
        return task

    def work(self):
        while True:
            try:
                task = self.tasks.get(timeout=COMPRESSION_THREAD_IDLE)
            except queue.Empty:
                # A task is put under the lock: either it is seen here, or this
                # thread is no longer counted and submit() starts another.
                with self.lock:
                    if self.tasks.empty():
                        self.running -= 1
                        return
                continue
            task.run()

    def blocks_in_flight(self, block_size):
        """How many blocks of one stream may be compressing or waiting to be sent."""
        return max(2, min(self.size() + 1, ARCHIVE_BYTES_IN_FLIGHT // block_size),
                   ARCHIVE_BYTES_QUEUED // block_size)


class OrderedResults:
    """Tasks of one stream on a pool, their results delivered in the order given.

    At most `limit` are out at once: the next waits for the oldest, so a
    stream whose client reads nothing stops there.  Each result goes to the
    function given with its task, `deliver` by default, on the stream's thread.
    """

    def __init__(self, pool, deliver, limit):
        self.pool = pool
        self.deliver = deliver
        self.limit = limit
        self.pending = collections.deque()  # (task, what takes its result)

    def add(self, function, *args):
        self.add_then(self.deliver, function, *args)

    def add_then(self, then, function, *args):
        """Run function(*args) on the pool; then(its result) in turn."""
        self.make_room()
        self.pending.append((self.pool.submit(function, *args), then))

    def after(self, action):
        """action(), once every result given before it is delivered."""
        self.make_room()
        if not self.pending:
            action()
            return
        task = CompressionTask(tuple, ())
        task.run()
        self.pending.append((task, lambda _: action()))

    def make_room(self):
        """Deliver what is ready, and wait for the oldest while `limit` are out."""
        pending = self.pending
        while pending and (len(pending) >= self.limit or pending[0][0].done.is_set()):
            self.deliver_oldest()

    def deliver_oldest(self):
        task, then = self.pending.popleft()
        then(task.result())

    def finish(self):
        while self.pending:
            self.deliver_oldest()


def stored_blocks(data):
    """data as stored deflate blocks, not final (RFC 1951 3.2.4).

    Each block's three header bits are zero and, the stream being at a byte
    boundary after a sync flush, fill one byte; LEN and NLEN follow.
    """
    pieces = []
    for start in range(0, len(data), STORED_BLOCK_MAX):
        piece = data[start:start + STORED_BLOCK_MAX]
        pieces.append(struct.pack("<BHH", 0, len(piece), len(piece) ^ 0xFFFF))
        pieces.append(piece)
    return b"".join(pieces)


def deflate_block(zlib, level, window, data, runs, last):
    """A block of a raw deflate stream, ending at a byte boundary.

    runs are (stop, stored) in order, covering data: a stored run goes in as
    stored blocks, the others are deflated, each by a compressor primed with
    the 32 KiB of the stream before it (the decoder has them in its window),
    and ended with a sync flush.  The last block ends with a final empty one.
    """
    pieces, start = [], 0
    view = memoryview(data)
    for stop, stored in runs:
        if stored:
            pieces.append(stored_blocks(view[start:stop]))
        else:
            before = max(0, start - DEFLATE_WINDOW)
            dictionary = (window + data[before:start])[-DEFLATE_WINDOW:]
            if dictionary:
                compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary)
            else:
                compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
            pieces.append(compressor.compress(view[start:stop]))
            pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        start = stop
    if last:
        pieces.append(zlib.compressobj(level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
    return b"".join(pieces)


def deflate_block_and_crc(zlib, level, window, data, runs, last):
    """deflate_block() and the CRC-32 of data, both counted on the thread given the block."""
    return deflate_block(zlib, level, window, data, runs, last), zlib.crc32(data)


# CRC-32 (ISO-HDLC, as zlib and gzip have it), its polynomial reflected.
CRC32_POLYNOMIAL = 0xEDB88320


def crc32_multiply(first, second):
    """The product of two polynomials modulo the CRC-32 polynomial, in the
    reflected order CRC-32 keeps its bits in (x^0 is the top bit)."""
    product, bit = 0, 1 << 31
    while first:
        if first & bit:
            product ^= second
            first ^= bit
        bit >>= 1
        second = (second >> 1) ^ CRC32_POLYNOMIAL if second & 1 else second >> 1
    return product


def crc32_shift_operator(length):
    """x^(8*length) modulo the polynomial: what crc32_combine() multiplies
    the first CRC by to stand it `length` bytes further on."""
    operator, power = 1 << 31, 1 << 30  # 1, and x^(2^0)
    bits = 8 * length
    while bits:
        if bits & 1:
            operator = crc32_multiply(power, operator)
        power = crc32_multiply(power, power)  # x^(2^(k+1)) from x^(2^k)
        bits >>= 1
    return operator


def crc32_combine(first_crc, second_crc, second_length, operator=None):
    """The CRC-32 of two pieces of data one after the other, from their own
    CRC-32s and the second's length; operator may be
    crc32_shift_operator(second_length), computed once for many pieces.
    """
    if operator is None:
        operator = crc32_shift_operator(second_length)
    return crc32_multiply(operator, first_crc) ^ second_crc


def incompressible_name(name):
    """True when a name's extension says its data is compressed already.

    A dot in a folder's name gives an "extension" no file type has.
    """
    return name[name.rfind("."):].lower() in ZIP_STORED_EXTENSIONS


def incompressible_start(zlib, data, sample_size=STORE_TRIAL_SIZE):
    """True when level 1 cannot bring the start of data below STORE_TRIAL_RATIO of its size."""
    sample = data[:sample_size]
    packed = zlib.compressobj(1, zlib.DEFLATED, -15)
    return len(packed.compress(sample)) + len(packed.flush()) > STORE_TRIAL_RATIO * len(sample)


# The gzip member header (RFC 1952 2.3): deflate, no flags, no time, no
# extra flags, operating system unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class ParallelGzipWriter:
    """Writes one ordinary gzip member, its deflate blocks made on every core.

    Data is cut into blocks of GZIP_BLOCK_SIZE, each deflated on its own as
    deflate_block() tells, its CRC-32 counted beside it and joined to the
    stream's here, in order (crc32_combine).  A file that cannot shrink (by
    its extension, or by a trial of its first bytes) goes in as stored
    blocks, copied, never deflated: a small one inside its block, a large
    one straight to the sink once the blocks before it are sent, so that it
    costs no more than a plain tar.
    """

    def __init__(self, sink, zlib, pool, level=GZIP_LEVEL, block_size=GZIP_BLOCK_SIZE):
        self.zlib = zlib
        self.level = level
        self.block_size = block_size
        self.results = OrderedResults(pool, self.send_block, pool.blocks_in_flight(block_size))
        self.block_operator = crc32_shift_operator(block_size)  # see send_block()
        self.sink = sink
        self.window = b""  # the last DEFLATE_WINDOW bytes before `pending`
        self.pending = bytearray()
        self.runs = []  # [stop, stored] over pending
        self.storing = self.straight = False
        self.file_size = self.file_done = 0
        self.stored = bytearray()  # stored blocks of a large file, not yet sent
        self.block_left = self.block_head = 0  # of the stored block being filled
        self.trial_due = False
        self.crc = 0
        self.size = 0
        sink.write(GZIP_HEADER)

    def start_file(self, name, size):
        """The data written from now on, until end_file(), is that of file `name`."""
        self.storing = incompressible_name(name)
        self.file_size, self.file_done = size, 0
        self.trial_due = not self.storing and size >= STORE_TRIAL_MIN

    def write_small_file(self, name, header, data, zeros):
        if data and incompressible_name(name):
            self.write(header)
            self.storing = True
            self.write(data)
            self.storing = False
            self.write(zeros)
        else:
            self.write(b"".join((header, data, zeros)))

    def end_file(self):
        if self.straight:
            self.end_stored()
        self.storing = self.straight = self.trial_due = False
        self.file_size = 0

    def store_straight(self, data):
        """Append data to the stored blocks being gathered, sent by STORED_SEND_SIZE.

        Each block's head is written when it starts, for what the file still
        has to give; a file that ends early has the head of its last block
        mended in end_stored().
        """
        if self.file_size - (self.file_done + len(data)) < DEFLATE_WINDOW:
            # The file's last window: what the next deflate block is primed with.
            self.window = (self.window + bytes(data))[-DEFLATE_WINDOW:]
        view = memoryview(data)
        while len(view):
            if not self.block_left:
                left = self.file_size - self.file_done
                self.block_left = min(STORED_BLOCK_MAX, left) if left > 0 else STORED_BLOCK_MAX
                self.block_head = len(self.stored)
                self.stored += struct.pack("<BHH", 0, self.block_left, self.block_left ^ 0xFFFF)
            piece = view[:self.block_left]
            self.stored += piece
            self.block_left -= len(piece)
            self.file_done += len(piece)
            view = view[len(piece):]
            if not self.block_left and len(self.stored) >= STORED_SEND_SIZE:
                self.sink.write(self.stored)
                self.stored = bytearray()

    def end_stored(self):
        if self.file_done < self.file_size:
            self.window = b""  # its last window was not kept: prime with nothing
        if self.block_left:
            length = struct.unpack_from("<H", self.stored, self.block_head + 1)[0]
            length -= self.block_left
            struct.pack_into("<HH", self.stored, self.block_head + 1, length, length ^ 0xFFFF)
            self.block_left = 0
        self.sink.write(self.stored)
        self.stored = bytearray()

    def write(self, data):
        if not len(data):
            return
        if self.trial_due:
            self.trial_due = False
            self.storing = incompressible_start(self.zlib, data)
        if self.storing and not self.straight and self.file_size >= STORE_TRIAL_MIN:
            if self.pending:
                self.hand_out(last=False)
            self.results.finish()
            self.straight = True
        self.size += len(data)
        if self.straight:  # every block before is sent: the CRC goes on from theirs
            self.crc = self.zlib.crc32(data, self.crc)
            self.store_straight(data)
            return
        room = self.block_size - len(self.pending)
        if len(data) < room:  # most writes: the block is not full yet
            self.pending += data
            self.note_run()
            return
        view = memoryview(data)
        while len(view) >= room:
            self.pending += view[:room]
            self.note_run()
            self.hand_out(last=False)
            view, room = view[room:], self.block_size
        if len(view):
            self.pending += view
            self.note_run()

    def note_run(self):
        """Extend the last run of `pending` to its end, or start one of the other kind."""
        runs = self.runs
        if runs and runs[-1][1] == self.storing:
            runs[-1][0] = len(self.pending)
        else:
            runs.append([len(self.pending), self.storing])

    def hand_out(self, last):
        block, self.pending = self.pending, bytearray()  # the block is the worker's now
        runs = [tuple(run) for run in self.runs]
        if len(block) == self.block_size:
            self.results.add(deflate_block_and_crc, self.zlib, self.level, self.window, block,
                             runs, last)
        else:
            # A shorter block (before a file stored straight, or the last):
            # joining its CRC would take an operator of its own (0.1-0.2 ms
            # to make), so it is counted here, once the blocks before it are in.
            self.results.finish()
            self.crc = self.zlib.crc32(block, self.crc)
            self.results.add(deflate_block, self.zlib, self.level, self.window, block, runs,
                             last)
        self.window = bytes((self.window + block[-DEFLATE_WINDOW:])[-DEFLATE_WINDOW:])
        self.runs = []

    def send_block(self, result):
        """Send a deflated block; a full one comes with its CRC-32, joined to the stream's."""
        if isinstance(result, tuple):
            packed, crc = result
            self.crc = crc32_combine(self.crc, crc, self.block_size, self.block_operator)
        else:
            packed = result
        self.sink.write(packed)

    def finish(self):
        self.hand_out(last=True)
        self.results.finish()
        self.sink.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))


def bzip2_stream(bz2, block):
    return bz2.compress(block, BZIP2_LEVEL)


def xz_stream(lzma, block):
    return lzma.compress(block, format=lzma.FORMAT_XZ, preset=XZ_PRESET)


class ParallelStreamsWriter:
    """Writes whole compressed streams one after another, one per block, made
    on every core: bzip2, xz (and the tar readers) take them as one."""

    def __init__(self, sink, pool, compress, module, block_size):
        self.compress = compress
        self.module = module
        self.block_size = block_size
        self.results = OrderedResults(pool, sink.write, pool.blocks_in_flight(block_size))
        self.pending = bytearray()
        self.handed_out = False

    def start_file(self, name, size):
        pass

    def end_file(self):
        pass

    def write_small_file(self, name, header, data, zeros):
        self.write(b"".join((header, data, zeros)))

    def write(self, data):
        self.pending += data
        while len(self.pending) >= self.block_size:
            self.hand_out(self.pending[:self.block_size])
            del self.pending[:self.block_size]

    def hand_out(self, block):
        self.results.add(self.compress, self.module, block)
        self.handed_out = True

    def finish(self):
        if self.pending or not self.handed_out:
            self.hand_out(self.pending)
        self.pending = bytearray()
        self.results.finish()


def parallel_writer(sink, compression, modules, pool):
    """The writer that compresses a tar stream of this format on every core."""
    if compression == "gz":
        return ParallelGzipWriter(sink, modules["zlib"], pool)
    if compression == "bz2":
        return ParallelStreamsWriter(sink, pool, bzip2_stream, modules["bz2"], BZIP2_BLOCK_SIZE)
    return ParallelStreamsWriter(sink, pool, xz_stream, modules["lzma"], XZ_BLOCK_SIZE)


# ---------------------------------------------------------------------------
# Archive manifest: the walk of the offered paths
#
# A folder, or several paths, offered as one archive built while it is sent:
# nothing is written to disk and memory does not grow with the data.  A
# walk of the tree makes a manifest (nothing behind a symbolic link is ever
# read); requests made while it runs share it.  Files are opened only when
# their turn comes, and only if they are still the very file that was
# listed.  Plain tar and stored zips have a size known in advance and serve
# any span; compressed tars and deflated zips are streamed, only so many at
# once.
#
# The walk keeps what it finds as columns of machine integers, not an
# object per entry, so that a tree of millions of files stays small; a
# walk that finds the tree unchanged returns the manifest it already had.
# ---------------------------------------------------------------------------

FILE, FOLDER, LINK = "file", "folder", "link"
KINDS = (FILE, FOLDER, LINK)  # a manifest stores each entry's kind as its index here
FILE_CODE, FOLDER_CODE, LINK_CODE = range(3)


class ArchiveEntry(NamedTuple):
    """One member of an archive, as the walk found it."""

    name: str       # its name in the archive, "/"-separated
    kind: str       # FILE, FOLDER or LINK
    size: int
    mtime_ns: int
    mode: int       # permission bits
    device: int     # device and inode: the file opened later must be this one
    inode: int
    target: str = ""  # a link's target, relative and inside the offer


# The columns that take 4 bytes an entry until a value needs more, and the
# type each then takes (a device or inode number no machine integer holds
# makes its column a list: see append_wide).
NARROW = "I"
WIDE_COLUMNS = (("sizes", "q"), ("devices", "Q"), ("inodes", "Q"), ("leaf_starts", "q"))


class ManifestColumns:
    """Entries kept as columns of machine integers, not one object per entry.

    A folder's name is kept once, in `folders` (with a "/" after it; "" is
    the top of the archive); each entry keeps the number of its folder's
    name and its own last name, the last names joined into one string.
    About 45 bytes an entry and its last name, where a tuple of objects took 350:
    sizes, devices, inodes and where last names start are kept in 4 bytes
    each (NARROW) until one of them needs more, then all four in 8.

    Made with `known`, the manifest of the last walk, the columns only
    count entries while they match it, and are made (what matched copied
    from it) at the first that does not: a walk that finds nothing changed
    keeps no second copy.
    """

    BLOCK = 8192  # last names gathered before they are joined

    def __init__(self, known=None):
        self.known = known
        self.count = 0  # entries added
        self.kinds = bytearray()
        self.sizes = array.array(NARROW)
        self.mtimes = array.array("q")
        self.modes = array.array("H")
        self.devices = array.array(NARROW)
        self.inodes = array.array(NARROW)
        self.ctimes = array.array("q")  # not part of an entry: see unchanged()
        self.parents = array.array("I")
        self.leaf_starts = array.array(NARROW, [0])  # and where the last one ends
        self.narrow = True
        self.leaf_blocks = []
        self.leaf_pending = []
        self.leaf_length = 0
        self.folders = [""]
        self.folder_indexes = {"": 0}
        self.targets = {}  # entry index: a link's target
        self.leaves, self.finished = "", False

    def add(self, parent, leaf, kind, size, mtime_ns, mode, device, inode, ctime_ns=0):
        """Add an entry in folder number parent; return its index."""
        index = self.count
        self.count += 1
        known = self.known
        if known is not None:
            if (index < len(known.kinds) and known.inodes[index] == inode
                    and known.mtimes[index] == mtime_ns and known.sizes[index] == size
                    and known.kinds[index] == kind and known.modes[index] == mode
                    and known.devices[index] == device and known.parents[index] == parent
                    and known.ctimes[index] == ctime_ns and known.leaf(index) == leaf):
                return index
            self.copy_known(index)
        leaf_end = self.leaf_length + len(leaf)
        if self.narrow and (size | device | inode | leaf_end) >> 32:  # (or one is negative)
            self.widen()
        self.kinds.append(kind)
        self.sizes.append(size)
        self.mtimes.append(mtime_ns)
        self.modes.append(mode)
        self.append_wide("devices", device)
        self.append_wide("inodes", inode)
        self.ctimes.append(ctime_ns)
        self.parents.append(parent)
        self.leaf_length = leaf_end
        self.leaf_starts.append(leaf_end)
        pending = self.leaf_pending
        pending.append(leaf)
        if len(pending) >= self.BLOCK:
            self.leaf_blocks.append("".join(pending))
            del pending[:]
        return index

    def unchanged(self, status):
        """True when the entry about to be added is, by its lstat, the known one unchanged.

        Its change time moves with anything that could change who may
        read it (mode, owner, ACLs, a rename), so the walk need not ask
        again.
        """
        known, index = self.known, self.count
        return (known is not None and index < len(known.kinds)
                and known.ctimes[index] == status.st_ctime_ns
                and known.inodes[index] == status.st_ino
                and known.devices[index] == status.st_dev)

    def widen(self):
        """Give the narrow columns 8 bytes an entry, once: a value needs more than 4."""
        for name, typecode in WIDE_COLUMNS:
            setattr(self, name, array.array(typecode, getattr(self, name)))
        self.narrow = False

    def append_wide(self, column_name, value):
        """Append to a column of numbers that becomes a list (of any integers)
        when it meets one no machine integer holds: a negative device
        number (macOS), a 128-bit file ID (ReFS, Windows)."""
        column = getattr(self, column_name)
        try:
            column.append(value)
        except OverflowError:
            column = list(column)
            column.append(value)
            setattr(self, column_name, column)

    def copy_known(self, count):
        """Stop matching the known manifest: take its first count entries as added."""
        known, self.known = self.known, None
        self.kinds = known.kinds[:count]
        for column in ("sizes", "mtimes", "modes", "devices", "inodes", "ctimes", "parents"):
            setattr(self, column, getattr(known, column)[:count])
        self.leaf_length = known.leaf_starts[count]
        self.leaf_starts = known.leaf_starts[:count + 1]
        self.leaf_blocks = [known.leaves[:self.leaf_length]]
        self.narrow = self.sizes.typecode == NARROW  # (the four are widened together)

    def matches_known(self):
        """True when every entry added matched the known manifest, and nothing more is in it."""
        known = self.known
        return (known is not None and self.count == len(known.kinds)
                and self.folders == known.folders and self.targets == known.targets)

    def add_folder(self, name):
        """The number of a folder's name (entries inside it give it as parent)."""
        prefix = name + "/"
        index = self.folder_indexes.get(prefix)
        if index is None:
            index = self.folder_indexes[prefix] = len(self.folders)
            self.folders.append(prefix)
        return index

    def add_entry(self, entry):
        """Add an ArchiveEntry, its folder found from its name."""
        folder, _, leaf = entry.name.rpartition("/")
        parent = self.add_folder(folder) if folder else 0
        index = self.add(parent, leaf, KINDS.index(entry.kind), entry.size, entry.mtime_ns,
                         entry.mode, entry.device, entry.inode)
        if entry.target:
            self.targets[index] = entry.target

    def finish(self):
        """Join the last names into `leaves`; `leaf_starts` tells where each begins."""
        if self.known is not None:
            self.copy_known(self.count)
        if not self.finished:
            self.leaf_blocks.append("".join(self.leaf_pending))
            self.leaf_pending = []
            self.leaves = "".join(self.leaf_blocks)
            self.leaf_blocks = []
            self.finished = True
        return self


class ManifestEntries:
    """A manifest's entries as a sequence of ArchiveEntry, each made when asked for."""

    def __init__(self, manifest):
        self.manifest = manifest

    def __len__(self):
        return len(self.manifest.kinds)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.manifest.entry(number)
                    for number in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("manifest entry out of range")
        return self.manifest.entry(index)

    def __iter__(self):
        entry = self.manifest.entry
        for index in range(len(self)):
            yield entry(index)


class Manifest:
    """What an archive holds: entries in order, and what was left out and why.

    `entries` is a sequence of ArchiveEntry, made from compact columns when
    asked for (see ManifestColumns); `roots` maps the first part of a name to
    the path given for it.  The digest (the plain tar's ETag) covers every
    field of every entry.
    """

    def __init__(self, entries, problems, roots):
        columns = entries
        if not isinstance(columns, ManifestColumns):
            columns = ManifestColumns()
            for entry in entries:
                columns.add_entry(entry)
        # First: finishing may put the columns copied from a known manifest in place.
        columns.finish()
        self.kinds, self.sizes, self.mtimes = columns.kinds, columns.sizes, columns.mtimes
        self.modes, self.devices, self.inodes = columns.modes, columns.devices, columns.inodes
        self.ctimes = columns.ctimes
        self.parents, self.folders, self.targets = columns.parents, columns.folders, \
            columns.targets
        self.leaves, self.leaf_starts = columns.leaves, columns.leaf_starts
        self.problems = problems
        self.roots = roots
        self.entries = ManifestEntries(self)
        self.digest = self.fingerprint()
        self.mtime = max(self.mtimes, default=0) / 1e9

    def fingerprint(self):
        """A digest of every field of every entry, and of its change time: a
        file rewritten with its modification time put back (cp -p, rsync -t)
        is another state of the folder, which no resume may join to the last."""
        digest = hashlib.sha256(repr(sorted(self.roots.items())).encode("utf-8",
                                                                        "backslashreplace"))
        wide = dict(WIDE_COLUMNS)
        for name in ("kinds", "sizes", "mtimes", "modes", "devices", "inodes", "ctimes",
                     "parents", "leaf_starts"):
            column = getattr(self, name)
            if isinstance(column, list):
                column = repr(column).encode("ascii")
            elif name in wide and column.typecode == NARROW:
                # The same state, the same digest, narrow or wide: a walk that
                # took a known manifest's columns may have its wide ones.
                column = array.array(wide[name], column)
            digest.update(column)
            digest.update(b"\0")
        for text in (self.leaves, "\0".join(self.folders), repr(sorted(self.targets.items()))):
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        return digest.hexdigest()[:32]

    def leaf(self, index):
        return self.leaves[self.leaf_starts[index]:self.leaf_starts[index + 1]]

    def name(self, index):
        return self.folders[self.parents[index]] + self.leaf(index)

    def entry(self, index):
        return ArchiveEntry(self.name(index), KINDS[self.kinds[index]], self.sizes[index],
                            self.mtimes[index], self.modes[index], self.devices[index],
                            self.inodes[index], self.targets.get(index, ""))

    def path_of(self, entry):
        """Where an entry is on disk."""
        return self.path_of_name(entry.name)

    def path_of_name(self, name):
        top, _, rest = name.partition("/")
        if not rest:
            return self.roots[top]
        return os.path.join(self.roots[top], *rest.split("/"))


def top_level_name(path):
    """The name a path the user gave has at the top of the archive."""
    return os.path.basename(os.path.normpath(os.path.abspath(path))) or "root"


def archive_name(paths, compression):
    """The download name: the folder's name, or the first path's and a count."""
    name = top_level_name(paths[0])
    if len(paths) > 1:
        if not os.path.isdir(paths[0]):
            name = os.path.splitext(name)[0] or name
        name = "%s-and-%d-more" % (name, len(paths) - 1)
    return name + ARCHIVE_EXTENSIONS[compression]


class OfferedPath(NamedTuple):
    """A path the user named, resolved once when woof starts."""

    name: str       # its name at the top of the archive
    path: str       # where it is, every link in it resolved
    identity: tuple  # (device, inode): what later walks must find there


def resolve_offered_paths(paths):
    """The OfferedPath of each path given; WoofError for one woof cannot offer.

    A link the user named is followed now, once: later walks find the same
    file or folder at the same resolved path, or refuse to go on.
    """
    offered, names = [], set()
    for path in paths:
        name = top_level_name(path)
        if name in names:
            raise WoofError("two paths would both be %s in the archive" % printable_name(name))
        names.add(name)
        try:
            status = os.stat(path)
        except OSError as error:
            raise WoofError("cannot read %s: %s" % (printable_name(path), error.strerror or error))
        if stat.S_ISREG(status.st_mode):
            check_readable_file(path)
        elif not stat.S_ISDIR(status.st_mode):
            raise WoofError("%s is neither a file nor a folder" % printable_name(path))
        offered.append(OfferedPath(name, os.path.realpath(path), (status.st_dev, status.st_ino)))
    return offered


def walk_paths(offered, keep_links, previous=None):
    """The Manifest of every OfferedPath, folders walked without following links.

    Returns `previous` itself when the walk found every entry as it was;
    while the walk matches it, no second copy of the entries is kept.  Raises
    WoofError when a path given cannot be read at all; what cannot be read
    inside a folder is left out and listed in the manifest's problems.
    """
    problems, roots = [], {}
    columns = ManifestColumns(previous)
    walk_entries(offered, keep_links, problems, roots, columns)
    if columns.matches_known() and previous.roots == roots:
        return previous
    return Manifest(columns, problems, roots)


def walk_entries(offered, keep_links, problems, roots, columns):
    """Add the entries of every OfferedPath to columns, in archive order."""
    for item in offered:
        roots[item.name] = item.path
        try:
            status = os.lstat(item.path)
        except OSError as error:
            raise WoofError("cannot read %s: %s" % (printable_name(item.path),
                                                    error.strerror or error))
        if (status.st_dev, status.st_ino) != item.identity:
            raise WoofError("%s was replaced after woof started" % printable_name(item.path))
        if stat.S_ISDIR(status.st_mode):
            walk_folder(item, keep_links, problems, columns)
        else:
            add_status(columns, 0, item.name, FILE_CODE, status)


def add_status(columns, parent, leaf, kind, status):
    """Add an entry as os.lstat found it; return its index."""
    return columns.add(parent, leaf, kind, status.st_size if kind == FILE_CODE else 0,
                       status.st_mtime_ns, stat.S_IMODE(status.st_mode), status.st_dev,
                       status.st_ino, status.st_ctime_ns)


class OpenFolder:
    """A folder being walked, listed and examined through one descriptor where possible.

    Entered only if it is still the folder listed (same device and inode),
    never through a link: a folder swapped for a link mid-walk is left out.
    `lstat(name)` and `may_read(name)` examine a name in it.
    """

    def __init__(self, path, identity, parent=None):
        self.path = path
        self.descriptor = None
        if WALK_BY_DESCRIPTOR:
            flags = os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW
            self.descriptor = (os.open(os.path.basename(path), flags, dir_fd=parent.descriptor)
                               if parent is not None else os.open(path, flags))
            # Bound once per folder: the walk calls them for every name in it.
            self.lstat = functools.partial(os.stat, dir_fd=self.descriptor,
                                           follow_symlinks=False)
            self.may_read = functools.partial(os.access, mode=os.R_OK, dir_fd=self.descriptor,
                                              effective_ids=ACCESS_WITH_EFFECTIVE_IDS)
        try:
            self.names = sorted(os.listdir(self.path if self.descriptor is None
                                           else self.descriptor))
            status = (os.lstat(path) if self.descriptor is None
                      else os.fstat(self.descriptor))
            if not stat.S_ISDIR(status.st_mode) or (status.st_dev, status.st_ino) != identity:
                raise FileChanged("it was replaced while woof listed it")
        except BaseException:
            self.close()
            raise

    def lstat(self, name):
        return os.lstat(os.path.join(self.path, name))

    def may_read(self, name):
        """True when this process may open the file name in this folder for reading."""
        return may_read(os.path.join(self.path, name))

    def close(self):
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


def walk_folder(item, keep_links, problems, columns):
    """Add the entries of an offered folder tree, depth first, in name order."""
    try:
        top = OpenFolder(item.path, item.identity)
        add_status(columns, 0, item.name, FOLDER_CODE, top.lstat("."))
    except (OSError, FileChanged) as error:
        raise WoofError("cannot read the folder %s: %s"
                        % (printable_name(item.path), getattr(error, "strerror", None) or error))
    stack = [(top, columns.add_folder(item.name), item.name, iter(top.names))]
    try:
        while stack:
            inner = walk_children(stack[-1], item.path, keep_links, problems, columns)
            if inner is None:
                stack.pop()[0].close()
            else:
                stack.append(inner)
    finally:
        for level in stack:
            level[0].close()


def walk_children(level, root, keep_links, problems, columns):
    """Add a folder's next children, up to the first folder among them.

    level is (OpenFolder, its number in columns, its archive name, an
    iterator over the names left).  Returns the level of that first folder,
    opened, or None once every name is taken.  This loop runs once per file
    of the tree: it makes no object per entry.
    """
    folder, parent, folder_name, children = level
    lstat, may_read_child, add, unchanged = (folder.lstat, folder.may_read, columns.add,
                                             columns.unchanged)
    for child in children:
        try:
            status = lstat(child)
        except OSError as error:
            problems.append("left out %s: %s" % (printable_name(folder_name + "/" + child),
                                                 error.strerror or error))
            continue
        mode = status.st_mode
        if stat.S_ISREG(mode):
            if not unchanged(status) and not may_read_child(child):
                problems.append("left out %s: permission denied"
                                % printable_name(folder_name + "/" + child))
                continue
            add(parent, child, FILE_CODE, status.st_size, status.st_mtime_ns, mode & 0o7777,
                status.st_dev, status.st_ino, status.st_ctime_ns)
        elif stat.S_ISDIR(mode):
            add(parent, child, FOLDER_CODE, 0, status.st_mtime_ns, mode & 0o7777,
                status.st_dev, status.st_ino, status.st_ctime_ns)
            name = folder_name + "/" + child
            try:
                opened = OpenFolder(os.path.join(folder.path, child),
                                    (status.st_dev, status.st_ino), folder)
            except (OSError, FileChanged) as error:
                problems.append("left out the contents of %s: %s" % (
                    printable_name(name), getattr(error, "strerror", None) or error))
                continue
            return opened, columns.add_folder(name), name, iter(opened.names)
        elif stat.S_ISLNK(mode):
            name = folder_name + "/" + child
            target = link_target(os.path.join(folder.path, child), name, root, keep_links,
                                 problems)
            if target is not None:
                columns.targets[add_status(columns, parent, child, LINK_CODE, status)] = target
        else:
            problems.append("left out %s: not a regular file"
                            % printable_name(folder_name + "/" + child))
    return None


def link_target(path, name, root, keep_links, problems):
    """A symbolic link's target when it is kept as a link (it leads inside the offer), else None.

    The target is rewritten relative to the link, so that it still works
    wherever the archive is unpacked.
    """
    resolved = resolve_link(path)
    inside = resolved is not None and (resolved == root or
                                       resolved.startswith(root.rstrip(os.sep) + os.sep))
    if not inside:
        problems.append("left out %s: the link leads outside what is offered"
                        % printable_name(name))
        return None
    if not keep_links:
        problems.append("left out %s: zip archives keep no links (what it leads to is "
                        "in the archive)" % printable_name(name))
        return None
    return os.path.relpath(resolved, os.path.dirname(path)).replace(os.sep, "/")


# ---------------------------------------------------------------------------
# Archive members: listed files, opened again when their turn comes
#
# The walk only lists.  An archive opens each file when it reaches it, and
# only if it is still the file listed (same device and inode, never through
# a link); what changed or went is left out, or stood in for by zeros where
# a header already promised its size, and the user is told.
# ---------------------------------------------------------------------------

class MemberOpener:
    """Opens a manifest's files, each through its folder's descriptor where possible.

    The folders leading to the file last opened stay open, so files taken
    in archive order cost one open each, and no path longer than one name
    reaches the system: a file deeper than PATH_MAX opens too.  Folders are
    opened without following links, and a file only if it is still the one
    listed.  Without WALK_BY_DESCRIPTOR, files are opened by path.
    """

    def __init__(self, manifest):
        self.manifest = manifest
        self.folders = []  # [(name, descriptor)] from the offered folder down
        self.parent = None  # the folder number whose descriptor is the last in folders

    def open_descriptor(self, entry):
        """Open a listed file, only if it is still that file; return (descriptor, status)."""
        identity = (entry.device, entry.inode)
        parts = entry.name.split("/")
        if not WALK_BY_DESCRIPTOR or len(parts) == 1:
            return open_listed_descriptor(self.manifest.path_of(entry), identity, O_NOFOLLOW)
        return open_listed_descriptor(parts[-1], identity, O_NOFOLLOW, self.enter(parts[:-1]))

    def open_member(self, index):
        """open_descriptor() of the manifest's entry number index, no entry made."""
        manifest = self.manifest
        parent = manifest.parents[index]
        identity = (manifest.devices[index], manifest.inodes[index])
        if not WALK_BY_DESCRIPTOR or parent == 0:
            return open_listed_descriptor(manifest.path_of_name(manifest.name(index)),
                                          identity, O_NOFOLLOW)
        return open_listed_descriptor(manifest.leaf(index), identity, O_NOFOLLOW,
                                      self.folder(parent))

    def open_unchecked(self, index):
        """A descriptor of whatever stands where the manifest's file number
        index was listed, reached as open_member() reaches it, not compared
        with the listing: for read-ahead, which only gives the disk a hint."""
        manifest = self.manifest
        parent = manifest.parents[index]
        flags = os.O_RDONLY | O_BINARY | O_NONBLOCK | O_NOFOLLOW
        if not WALK_BY_DESCRIPTOR or parent == 0:
            return os.open(manifest.path_of_name(manifest.name(index)), flags)
        return os.open(manifest.leaf(index), flags, dir_fd=self.folder(parent))

    def folder(self, parent):
        """The descriptor of the manifest's folder number parent, entered from the top."""
        if parent != self.parent:
            self.enter(self.manifest.folders[parent][:-1].split("/"))
            self.parent = parent
        return self.folders[-1][1]

    def enter(self, parts):
        """The descriptor of the folder named by parts, opening the levels not open yet."""
        self.parent = None
        kept = 0
        while (kept < min(len(parts), len(self.folders))
               and self.folders[kept][0] == parts[kept]):
            kept += 1
        self.close(kept)
        flags = os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW
        try:
            for part in parts[kept:]:
                if self.folders:
                    descriptor = os.open(part, flags, dir_fd=self.folders[-1][1])
                else:
                    descriptor = os.open(self.manifest.roots[part], flags)
                self.folders.append((part, descriptor))
        except OSError as error:
            raise FileChanged(error.strerror or str(error))
        return self.folders[-1][1]

    def close(self, keep=0):
        """Close the folders below the first `keep` (all of them by default)."""
        self.parent = None
        while len(self.folders) > keep:
            os.close(self.folders.pop()[1])


# Read-ahead (where READ_AHEAD): the disk is asked for the files an archive
# reaches next, at most this many files and bytes ahead of the one being
# sent (what it reads waits in the page cache, not in woof), by this many
# threads shared by every archive of an offer, handed this many files at a
# time.  On the project's machine GNU tar reads a cold folder of 20,000
# small files in about 2 s, one after another; 16 readers at once in 0.5 s;
# woof's plain tar, reading ahead so, in 0.85 to 0.9 s.  More threads,
# smaller batches or more files ahead were slower (1.1 to 1.7 s): each
# thread needs the interpreter's lock between two system calls, and the
# file the archive waits for queues behind all that was asked for.
READ_AHEAD_FILES = 128
READ_AHEAD_BYTES = 32 << 20
READ_AHEAD_THREADS = 2
READ_AHEAD_BATCH = 64
READ_AHEAD_LOOK_MAX = 1024  # files between two looks in a folder found cached
READ_AHEAD_THREAD_IDLE = 5.0  # seconds a thread waits for work before it ends

# Where it can start, a helper process does the asking for the threads: a
# child Python, given the files' paths on its standard input (each ended by
# a NUL), opens each, asks for its data and closes it, away from woof's
# interpreter lock, which a reading thread took three times a file while the
# archive's own threads waited for it.  Cold, 20,000 small files: plain tar
# 0.21x GNU tar's time against 0.41x with the threads asking, zip 0.44x
# `zip -6`'s against 0.62x (bench/README.md).  A path is only a hint: a
# folder swapped for a link on the way leads it to ask for another file's
# data, of which nothing reaches woof.
READ_AHEAD_HELPER_CODE = r"""
import os, signal, sys

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def open_folder(path):
    # From the top, each name through the folder before it, never through a link.
    descriptor = os.open(b"/", FOLDER_FLAGS)
    try:
        for name in path.split(b"/"):
            if name:
                inner = os.open(name, FOLDER_FLAGS, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = inner
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


class Asker:
    # Asks for the data of files, the folder of the last one kept open.

    def __init__(self, limit):
        self.limit = limit
        self.folder_path, self.folder = None, None

    def ask(self, path):
        folder_path, _, name = path.rpartition(b"/")
        if folder_path != self.folder_path:
            self.close()
            self.folder_path = folder_path
            try:
                self.folder = open_folder(folder_path)
            except OSError:
                return
        if self.folder is None:
            return
        try:
            descriptor = os.open(name, FILE_FLAGS, dir_fd=self.folder)
        except OSError:
            return
        try:
            os.posix_fadvise(descriptor, 0, self.limit, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def close(self):
        if self.folder is not None:
            os.close(self.folder)
            self.folder = None


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # woof's Ctrl-C ends it through its input
    asker, pending = Asker(int(sys.argv[1])), b""
    while True:
        block = os.read(0, 1 << 16)
        if not block:
            break
        paths = (pending + block).split(b"\0")
        pending = paths.pop()
        for path in paths:
            asker.ask(path)


if __name__ == "__main__":
    main()
"""


def end_read_ahead_helper(process):
    """End the helper at once (what it was asked for is only a hint), which
    also frees a thread blocked writing to it, and wait for it."""
    try:
        process.kill()
    except OSError:
        pass
    try:
        process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(READ_AHEAD_THREAD_IDLE)
    except Exception:  # subprocess.TimeoutExpired: stuck in a file system
        pass


class ReadAheadHelper:
    """The helper process of an offer's read-ahead (READ_AHEAD_HELPER_CODE):
    started when first asked, ended when woof is done with the offer (at
    the latest as the interpreter exits).  Once it cannot start or take
    paths, ask() says so and the threads ask the disk themselves.  What it
    was handed it asks for even if the archive has gone past it or ended:
    at most READ_AHEAD_FILES files an archive."""

    def __init__(self, command=None):
        # -I: no folder of woof's (an upload may have left a signal.py
        # there) nor environment variable decides what the helper runs.
        self.command = command or [sys.executable, "-I", "-S", "-c", READ_AHEAD_HELPER_CODE,
                                   str(READ_AHEAD_BYTES)]
        self.lock = threading.Lock()
        self.process = None
        self.end = None  # ends the process, once
        self.failed = getattr(sys, "frozen", False) or not sys.executable

    def ask(self, paths):
        """Hand the helper these paths; False when it cannot take them."""
        data = memoryview(b"".join(os.fsencode(path) + b"\0" for path in paths))
        with self.lock:
            if self.failed:
                return False
            try:
                if self.process is None:
                    self.start()
                while data:  # an unbuffered pipe: close() never waits for a writer
                    data = data[self.process.stdin.write(data):]
                return True
            except Exception:  # no such program, it died, woof is exiting
                self.failed = True
        self.close()
        return False

    def start(self):
        import subprocess
        self.process = subprocess.Popen(self.command, bufsize=0, stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.end = weakref.finalize(self, end_read_ahead_helper, self.process)

    def close(self):
        if self.end is not None:
            self.end()


class ReadAhead:
    """An archive's read-ahead where there is none: it is told which member
    the archive has reached, and does nothing."""

    def reached(self, index):
        """The archive is at member number index (in manifest order)."""

    def close(self):
        """The archive is done: what is still asked for need not be read."""


class FilesAhead(ReadAhead):
    """Keeps the disk reading the next files of one archive while it sends.

    Each time the archive has gone a few files further, the files from there
    to READ_AHEAD_FILES (or READ_AHEAD_BYTES) ahead of it that were not yet
    asked for go to the pool's threads, which hand their paths to the
    helper process (ReadAheadHelper), or where it cannot run open each as
    listed, ask for its data (POSIX_FADV_WILLNEED) and close it at once: a
    thread holds one descriptor at a time, and nothing read passes through
    woof.

    In a folder found in the page cache (page_cached), that work would only
    slow the archive down; there the archive's own thread only looks now and
    then, further and further on (up to READ_AHEAD_LOOK_MAX files), whether
    it still is.  The first look, too, is its own: a look handed to a thread
    costs the archive more than the look (both need the interpreter's lock:
    200,000 small files went 8% slower, against 2% looking here).
    """

    def __init__(self, manifest, pool):
        self.manifest = manifest
        self.pool = pool
        self.position = -1  # the member being sent
        self.asked = 0  # members below this number were asked for
        self.refill_at = 0  # the position at which to ask for more
        self.cached_looks = 0  # looks in a row that found the folder cached
        self.looked = False  # the first look, before anything is asked for
        self.closed = False

    def reached(self, index):
        self.position = index
        if index >= self.refill_at:
            self.ask_from(index)

    def ask_from(self, index):
        sizes, count = self.manifest.sizes, len(self.manifest.sizes)
        if self.cached_looks or not self.looked:
            step = min(READ_AHEAD_BATCH << min(self.cached_looks, 10), READ_AHEAD_LOOK_MAX)
            look_at = index + step if self.looked else index + 1
            self.looked = True
            if self.cached_from(look_at):
                self.cached_looks += 1
                self.asked, self.refill_at = index + 1, index + step
                return
            self.cached_looks = 0
        start = max(self.asked, index + 1)
        ahead = sum(min(size, READ_AHEAD_BYTES) for size in sizes[index + 1:start])
        stop, limit = start, min(count, index + 1 + READ_AHEAD_FILES)
        while stop < limit and ahead < READ_AHEAD_BYTES:
            ahead += min(sizes[stop], READ_AHEAD_BYTES)
            stop += 1
        for first in range(start, stop, READ_AHEAD_BATCH):
            self.pool.submit(self, first, min(first + READ_AHEAD_BATCH, stop))
        self.asked = max(self.asked, stop)
        if self.asked >= count:
            self.refill_at = count  # all asked for: nothing more to do
        else:
            self.refill_at = index + max(1, min(READ_AHEAD_BATCH, (stop - index) // 2))

    def cached_from(self, first):
        """True when the first file with data from member number first on (in
        one batch) is in the page cache, or there is none; looked at as
        fetch() looks, on the archive's thread, holding no descriptor after."""
        manifest = self.manifest
        kinds, sizes = manifest.kinds, manifest.sizes
        opener = MemberOpener(manifest)
        try:
            for index in range(first, min(first + READ_AHEAD_BATCH, len(sizes))):
                if kinds[index] != FILE_CODE or not sizes[index]:
                    continue
                try:
                    descriptor = opener.open_unchecked(index)
                except (FileChanged, OSError):
                    continue
                try:
                    return page_cached(descriptor)
                finally:
                    os.close(descriptor)
            return True
        finally:
            opener.close()

    def fetch(self, first, stop):
        """On a pool thread: ask for the data of members first to stop-1.

        A batch whose first file is in the page cache is taken for a cached
        folder and skipped; after that first file, the rest go to the helper
        process where it runs.  Files are reached as the archive reaches them
        (MemberOpener: through their folders' descriptors, never through a
        link) but not checked against the listing, a hint needing no more:
        each one's path from the top, and the check, cost the read-ahead
        a third of its time.
        """
        manifest = self.manifest
        kinds, sizes = manifest.kinds, manifest.sizes
        opener = MemberOpener(manifest)
        probe, helped = True, False
        try:
            for index in range(first, stop):
                if self.closed or self.position >= stop:
                    return
                size = sizes[index]
                if kinds[index] != FILE_CODE or not size or index <= self.position:
                    continue
                if not probe and not helped:
                    helped = True
                    if self.ask_helper(index, stop):
                        return
                try:
                    descriptor = opener.open_unchecked(index)
                except (FileChanged, OSError):
                    continue  # the archive will say what became of it
                try:
                    if probe:
                        if page_cached(descriptor):
                            self.cached_looks += 1
                            return
                        probe, self.cached_looks = False, 0
                    os.posix_fadvise(descriptor, 0, min(size, READ_AHEAD_BYTES),
                                     os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass
                finally:
                    os.close(descriptor)
        finally:
            opener.close()

    def ask_helper(self, first, stop):
        """Hand the files with data among members first to stop-1 to the helper
        process; False when there is none to take them."""
        manifest = self.manifest
        kinds, sizes = manifest.kinds, manifest.sizes
        return self.pool.helper.ask([manifest.path_of_name(manifest.name(index))
                                     for index in range(first, stop)
                                     if kinds[index] == FILE_CODE and sizes[index]])

    def close(self):
        self.closed = True


class ReadAheadPool:
    """The threads that read ahead for an offer's archives, READ_AHEAD_THREADS at
    most, started when first needed; each ends after READ_AHEAD_THREAD_IDLE
    seconds without work.  Daemons: woof never waits for them to exit."""

    def __init__(self, threads=READ_AHEAD_THREADS, helper=None):
        self.threads = threads
        self.helper = helper or ReadAheadHelper()
        self.jobs = queue.Queue()
        self.running = 0
        self.lock = threading.Lock()

    def follow(self, manifest):
        """A ReadAhead for one archive of manifest: FilesAhead where the system can."""
        return FilesAhead(manifest, self) if READ_AHEAD else ReadAhead()

    def submit(self, files_ahead, first, stop):
        with self.lock:
            self.jobs.put((files_ahead, first, stop))
            if self.running < self.threads:
                self.running += 1
                worker = threading.Thread(target=self.work, name="woof-read-ahead")
                worker.daemon = True
                worker.start()

    def work(self):
        while True:
            try:
                files_ahead, first, stop = self.jobs.get(timeout=READ_AHEAD_THREAD_IDLE)
            except queue.Empty:
                with self.lock:  # as in CompressionPool.work
                    if self.jobs.empty():
                        self.running -= 1
                        return
                continue
            files_ahead.fetch(first, stop)


def write_zeros(out, count):
    """Write count zero bytes, a buffer at a time."""
    zeros = bytes(min(count, ARCHIVE_READ_SIZE))
    while count > 0:
        out.write(zeros[:count] if count < len(zeros) else zeros)
        count -= len(zeros)


def copy_file_data(out, fileobj, count, on_data=None):
    """Copy up to count bytes from fileobj's position into out; return how many.

    Fewer means the file ended early or could not be read further.
    """
    buffer = bytearray(min(ARCHIVE_READ_SIZE, max(count, 1)))
    view = memoryview(buffer)
    done = 0
    while done < count:
        try:
            got = fileobj.readinto(view[:min(len(buffer), count - done)])
        except OSError:
            break
        if not got:
            break
        if on_data is not None:
            on_data(view[:got])
        out.write(view[:got])
        done += got
    return done


def read_member(fileobj, count):
    """Up to count bytes from fileobj's position: fewer where it ends or fails."""
    pieces, done = [], 0
    while done < count:
        try:
            piece = fileobj.read(count - done)
        except OSError:
            break
        if not piece:
            break
        pieces.append(piece)
        done += len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def send_file_span(sink, descriptor, offset, count):
    """Send count bytes of an open file from offset; return how many were sent."""
    if count < SENDFILE_MIN:
        data = read_at(descriptor, offset, count)
        sink.write(data)
        return len(data)
    sink.flush()
    before = sink.sent
    try:
        with os.fdopen(descriptor, "rb", closefd=False) as fileobj:
            sink.sendfile(fileobj, offset, count)
    except ShortFile:
        return sink.sent - before
    return count


class ArchiveWarnings:
    """Tells the user what an archive being sent could not hold as listed."""

    def __init__(self, log):
        self.log = log

    def left_out(self, entry, reason):
        self.log.warn("left out %s: %s" % (printable_name(entry.name), reason))

    def short(self, entry, reason):
        self.log.warn("%s %s; the archive stays valid" % (printable_name(entry.name), reason))


def members_as_reached(manifest, warnings, ahead=None):
    """Yield (entry, open file, status, data) for the manifest, files opened as
    their turn comes.

    Folders and links come with None for the rest.  A file of at most
    ARCHIVE_READ_SIZE bytes (most of them) comes read, as data, with None
    for file: opened through its folder's descriptor, read and closed in
    four system calls, where a file object takes six and the interpreter's
    lock, which compressing threads want too, is taken back after each.  A
    larger one comes open, with None for data, and is closed when the next
    entry is asked for.  A file that cannot be opened any more is left out,
    with a warning.  The ReadAhead `ahead`, if any, is told of each entry
    reached.
    """
    opener = MemberOpener(manifest)
    ahead = ahead or ReadAhead()
    kinds = manifest.kinds
    try:
        for index, entry in enumerate(manifest.entries):
            ahead.reached(index)
            if kinds[index] != FILE_CODE:
                yield entry, None, None, None
                continue
            try:
                descriptor, status = opener.open_member(index)
            except FileChanged as error:
                warnings.left_out(entry, error)
                continue
            if status.st_size <= ARCHIVE_READ_SIZE:
                try:
                    data = read_at(descriptor, 0, status.st_size)
                finally:
                    os.close(descriptor)
                yield entry, None, status, data
                continue
            try:
                fileobj = os.fdopen(descriptor, "rb")
            except BaseException:
                os.close(descriptor)
                raise
            with fileobj:
                yield entry, fileobj, status, None
    finally:
        opener.close()


# ---------------------------------------------------------------------------
# Tar: of known size, and streamed
#
# A plain tar's size follows from the manifest alone (headers, data padded
# to 512-byte blocks, two zero blocks at the end), so TarBody can send any
# span of it.  A compressed tar is written whole, in order, by
# write_tar_stream into the block compressor of the Compression section.
# ---------------------------------------------------------------------------

TAR_BLOCK = 512
TAR_END = 2 * TAR_BLOCK
TAR_ZEROS = bytes(TAR_BLOCK)
TAR_PADDINGS = tuple(bytes(count) for count in range(TAR_BLOCK))  # made once, not per file

TAR_TYPES = {FILE: b"0", LINK: b"2", FOLDER: b"5"}
TAR_OCTAL_LIMIT = 8 ** 11  # what 11 octal digits hold: sizes and times below 8 GiB


def tar_header(entry, size, mtime_ns):
    """The header block(s) of one tar member, PAX for long or non-ASCII names."""
    mtime = mtime_ns // 1000000000
    name = entry.name + "/" if entry.kind == FOLDER else entry.name
    if 0 <= size < TAR_OCTAL_LIMIT and 0 <= mtime < TAR_OCTAL_LIMIT:
        try:
            name_field, target_field = name.encode("ascii"), entry.target.encode("ascii")
        except UnicodeEncodeError:
            pass
        else:
            if len(name_field) <= 100 and len(target_field) <= 100:
                return ustar_header(name_field, entry.kind, size, mtime, entry.mode,
                                    target_field)
    return pax_header(entry, size, mtime)


# name, mode, uid, gid, size, mtime, checksum, type, link target, magic and
# version (POSIX.1-1988 ustar); the rest of the block is zeros.
USTAR_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8s247x")
USTAR_FIXED = b"0000000\0"  # uid and gid: owners are written as 0
USTAR_MAGIC = b"ustar\x0000"
USTAR_FIXED_SUM = 2 * sum(USTAR_FIXED) + sum(USTAR_MAGIC) + 8 * ord(" ")


def ustar_header(name, kind, size, mtime, mode, target):
    """A plain ustar header (POSIX.1-1988), as tarfile makes it.

    Most members need nothing more, and tarfile takes ten times as long.
    The checksum counts its own field as spaces; zeros add nothing to it.
    """
    mode_field, size_field, mtime_field = b"%07o\0" % mode, b"%011o\0" % size, \
        b"%011o\0" % mtime
    type_field = TAR_TYPES[kind]
    checksum = (sum(name) + sum(mode_field) + sum(size_field) + sum(mtime_field)
                + type_field[0] + sum(target) + USTAR_FIXED_SUM)
    return USTAR_FIELDS.pack(name, mode_field, USTAR_FIXED, USTAR_FIXED, size_field,
                             mtime_field, b"%06o\0 " % checksum, type_field, target,
                             USTAR_MAGIC)


# The same block for TarBody's loop: name, mode, uid and gid, size and mtime,
# checksum, type; a plain member has no link target.
USTAR_PACKED = struct.Struct("100s8s16s24s8sc100x8s247x")
USTAR_OWNERS = USTAR_FIXED * 2
USTAR_TYPES = tuple(TAR_TYPES[kind] for kind in KINDS)


def pax_header(entry, size, mtime):
    """A header with a PAX record before it, for what ustar cannot hold."""
    info = tarfile.TarInfo(entry.name)
    info.mode = entry.mode
    info.mtime = mtime
    if entry.kind == FOLDER:
        info.type = tarfile.DIRTYPE
    elif entry.kind == LINK:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.size = size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_padding(size):
    """How many zero bytes fill a member's data up to a whole block."""
    return -size % TAR_BLOCK


class TarLayout:
    """Where each member of a plain tar starts, so that any span can be served.

    A member whose header is 512 bytes has a plain ustar header (a PAX one
    is longer): TarBody makes those straight from the manifest's columns.
    """

    def __init__(self, manifest):
        self.manifest = manifest
        self.entries = manifest.entries
        self.starts = array.array(NARROW)  # widened past 4 GiB
        offset = 0
        rooms = [TAR_NAME_ROOM - len(name_field) if name_field is not None else -1
                 for name_field in tar_folder_fields(manifest)]
        leaves_ascii = len(manifest.leaves.encode("utf-8", "surrogatepass")) == \
            len(manifest.leaves)
        starts, sizes, mtimes, kinds, parents, leaf_starts = (
            self.starts, manifest.sizes, manifest.mtimes, manifest.kinds, manifest.parents,
            manifest.leaf_starts)
        for index in range(len(kinds)):
            try:
                starts.append(offset)
            except OverflowError:
                starts = self.starts = array.array("q", starts)
                starts.append(offset)
            size, kind = sizes[index], kinds[index]
            room = rooms[parents[index]] - (kind == FOLDER_CODE)
            if (kind != LINK_CODE and size < TAR_OCTAL_LIMIT
                    and 0 <= mtimes[index] < TAR_MTIME_LIMIT_NS
                    and leaf_starts[index + 1] - leaf_starts[index] <= room
                    and (leaves_ascii or tar_ascii(manifest.leaf(index)))):
                offset += TAR_BLOCK
            else:
                offset += len(tar_header(manifest.entry(index), size, mtimes[index]))
            offset += size + (-size % TAR_BLOCK)
        self.size = offset + TAR_END

    def member_end(self, index):
        """Where member number index ends (the next one starts)."""
        return (self.starts[index + 1] if index + 1 < len(self.starts)
                else self.size - TAR_END)


TAR_NAME_ROOM = 100  # bytes of a ustar name field
TAR_MTIME_LIMIT_NS = TAR_OCTAL_LIMIT * 1000000000


def tar_folder_fields(manifest):
    """Each folder name of a manifest ("/" after it) in ASCII bytes, None where it is not."""
    fields = []
    for name in manifest.folders:
        try:
            fields.append(name.encode("ascii"))
        except UnicodeEncodeError:
            fields.append(None)
    return fields


def tar_ascii(text):
    try:
        text.encode("ascii")
        return True
    except UnicodeEncodeError:
        return False


def overlap(first, last, start, stop):
    """The part of [first, last) inside [start, stop), as (lo, hi), or None."""
    lo, hi = max(first, start), min(last, stop)
    return (lo, hi) if lo < hi else None


class SizedArchiveBody(ResponseBody):
    """What the archives of exact size share (plain tar, stored zip): an
    ETag of the manifest's state, a conflict to tell a resume that would
    splice two states, on_close, called once when the body is closed, and
    the ReadAheadPool that reads ahead for it (None: no read-ahead)."""

    kind = "archive"

    def __init__(self, manifest, layout, warnings, resume_conflict=None, on_close=None,
                 read_ahead_pool=None):
        self.on_close = on_close
        self.read_ahead_pool = read_ahead_pool
        self.layout = layout
        self.warnings = warnings
        self.size = layout.size
        self.mtime = manifest.mtime
        self.etag = '"%s-%s"' % (self.kind, manifest.digest)
        self.resume_conflict = resume_conflict
        self.partial = False

    def close(self):
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def read_ahead(self):
        """A ReadAhead for one write of this body, to be closed after it."""
        if self.read_ahead_pool is None:
            return ReadAhead()
        return self.read_ahead_pool.follow(self.layout.manifest)


class TarBody(SizedArchiveBody):
    """A plain tar of a manifest, of exact size: any span of it can be sent."""

    kind = "tar"
    GATHER = 256 << 10  # members' bytes gathered before they go to the sink

    def write(self, sink, start, stop):
        # A part is joined to others of the same ETag: each must hold the
        # files as listed, where a whole archive may take them as they are.
        self.partial = (start, stop) != (0, self.size)
        opener, ahead = MemberOpener(self.layout.manifest), self.read_ahead()
        try:
            self.write_span(sink, opener, ahead, start, stop)
        finally:
            ahead.close()
            opener.close()

    def write_span(self, sink, opener, ahead, start, stop):
        layout = self.layout
        count = len(layout.starts)
        index = max(bisect.bisect_right(layout.starts, start) - 1, 0)
        while index < count:
            member_start = layout.starts[index]
            if member_start >= stop:
                return
            if start <= member_start and layout.member_end(index) <= stop:
                index = self.write_whole_members(sink, opener, ahead, index, stop)
                continue
            ahead.reached(index)
            self.write_member(sink, opener, layout.entries[index], member_start, start, stop)
            index += 1
        end = overlap(layout.size - TAR_END, layout.size, start, stop)
        if end:
            write_zeros(sink, end[1] - end[0])

    def write_whole_members(self, sink, opener, ahead, index, stop):
        """Write members from number index on while each ends by stop; return the next number.

        Most members go this way, and it is where a folder of many small
        files spends its time: headers packed straight from the columns, a
        small file opened, checked, read and closed in four system calls,
        the bytes of many members gathered into one large write.
        """
        layout, manifest = self.layout, self.layout.manifest
        starts, sizes, mtimes, modes, kinds, parents, leaves, leaf_starts = (
            layout.starts, manifest.sizes, manifest.mtimes, manifest.modes, manifest.kinds,
            manifest.parents, manifest.leaves, manifest.leaf_starts)
        fields = [(field, sum(field)) if field is not None else (None, 0)
                  for field in tar_folder_fields(manifest)]
        devices, inodes = manifest.devices, manifest.inodes
        flags = os.O_RDONLY | O_BINARY | O_NONBLOCK | O_NOFOLLOW
        pack, fixed_sum, paddings, gather = (USTAR_PACKED.pack, USTAR_FIXED_SUM, TAR_PADDINGS,
                                             self.GATHER)
        mode_fields = {}  # permission bits: (their field, its sum), for the few there are
        out = bytearray()
        count = len(starts)
        last, end = count - 1, layout.size - TAR_END
        while index < count:
            member_end = starts[index + 1] if index < last else end
            if member_end > stop:
                break
            ahead.reached(index)
            size, kind = sizes[index], kinds[index]
            padding = -size % TAR_BLOCK
            leaf = leaves[leaf_starts[index]:leaf_starts[index + 1]]
            if kind != LINK_CODE and member_end - starts[index] - size - padding == TAR_BLOCK:
                folder, folder_sum = fields[parents[index]]
                leaf_field = leaf.encode("ascii")
                type_field = USTAR_TYPES[kind]
                if kind == FOLDER_CODE:
                    leaf_field += b"/"
                mode = modes[index]
                mode_field = mode_fields.get(mode)
                if mode_field is None:
                    mode_field = b"%07o\0" % mode
                    mode_field = mode_fields[mode] = (mode_field, sum(mode_field))
                numbers = b"%011o\0%011o\0" % (size, mtimes[index] // 1000000000)
                checksum = (folder_sum + sum(leaf_field) + mode_field[1] + sum(numbers)
                            + type_field[0] + fixed_sum)
                out += pack(folder + leaf_field, mode_field[0], USTAR_OWNERS, numbers,
                            b"%06o\0 " % checksum, type_field, USTAR_MAGIC)
            else:
                out += tar_header(manifest.entry(index), size, mtimes[index])
            if size >= SENDFILE_MIN:
                sink.write(out)
                out = bytearray()
                self.write_data(sink, opener, manifest.entry(index), 0, size)
            elif size:
                descriptor, status = None, None
                if WALK_BY_DESCRIPTOR and parents[index] == opener.parent:
                    try:  # the usual case, inline: the next file of the same folder
                        descriptor = os.open(leaf, flags, dir_fd=opener.folders[-1][1])
                        status = os.fstat(descriptor)
                    except OSError:
                        if descriptor is not None:
                            os.close(descriptor)
                        descriptor = None
                if (descriptor is not None and status.st_ino == inodes[index]
                        and status.st_dev == devices[index] and status.st_size == size
                        and status.st_mtime_ns == mtimes[index] and stat.S_ISREG(status.st_mode)):
                    try:
                        data = os.pread(descriptor, size, 0) if HAS_PREAD else b""
                    except OSError:
                        data = b""
                    finally:
                        os.close(descriptor)
                    if len(data) < size:
                        data = self.read_small_member(opener, index, size)
                else:
                    if descriptor is not None:
                        os.close(descriptor)
                    data = self.read_small_member(opener, index, size)
                out += data
            out += paddings[padding]
            if len(out) >= gather:
                sink.write(out)
                out = bytearray()
            index += 1
        sink.write(out)
        return index

    def read_small_member(self, opener, index, size):
        """A small member's data as listed, zeros standing in for what is gone (see write_data)."""
        manifest = self.layout.manifest
        try:
            descriptor, status = opener.open_member(index)
        except FileChanged as error:
            self.check_not_partial(manifest.entry(index), error)
            self.warnings.short(manifest.entry(index),
                                "could not be read (%s): sent as zeros" % error)
            return bytes(size)
        try:
            if status.st_size != size or status.st_mtime_ns != manifest.mtimes[index]:
                self.check_unchanged(manifest.entry(index), status)
            data = read_at(descriptor, 0, size)
        finally:
            os.close(descriptor)
        if len(data) < size:
            self.check_not_partial(manifest.entry(index), "it shrank while it was read")
            self.warnings.short(manifest.entry(index),
                                "ended early (it shrank or failed): padded with zeros")
            data += bytes(size - len(data))
        return data

    def check_not_partial(self, entry, reason):
        """In a part, refuse to stand zeros in for what is gone: the other
        parts may hold the file's bytes (the part is cut short instead)."""
        if self.partial:
            raise FileChanged("%s: %s; this part would not match the others"
                              % (printable_name(entry.name), reason))

    def check_unchanged(self, entry, status):
        """Warn of, or refuse in a part, a file that is not as listed any more."""
        if self.partial and (status.st_size, status.st_mtime_ns) != (entry.size,
                                                                     entry.mtime_ns):
            raise FileChanged("%s changed since it was listed: this part would not match "
                              "the others" % printable_name(entry.name))
        if status.st_size != entry.size:
            self.warnings.short(entry, "changed size while offered: sent as listed")

    def write_member(self, sink, opener, entry, member_start, start, stop):
        header = tar_header(entry, entry.size, entry.mtime_ns)
        data_start = member_start + len(header)
        part = overlap(member_start, data_start, start, stop)
        if part:
            sink.write(header[part[0] - member_start:part[1] - member_start])
        part = overlap(data_start, data_start + entry.size, start, stop)
        if part:
            self.write_data(sink, opener, entry, part[0] - data_start, part[1] - part[0])
        padding_start = data_start + entry.size
        part = overlap(padding_start, padding_start + tar_padding(entry.size), start, stop)
        if part:
            write_zeros(sink, part[1] - part[0])

    def write_data(self, sink, opener, entry, offset, count):
        """Send count bytes of a member's data; zeros stand in for what is gone.

        The size was promised in Content-Length and in the member's header,
        so a file that vanished or shrank is padded rather than cut short.
        """
        try:
            descriptor, status = opener.open_descriptor(entry)
        except FileChanged as error:
            self.check_not_partial(entry, error)
            self.warnings.short(entry, "could not be read (%s): sent as zeros" % error)
            write_zeros(sink, count)
            return
        try:
            self.check_unchanged(entry, status)
            done = send_file_span(sink, descriptor, offset, count)
        finally:
            os.close(descriptor)
        if done < count:
            self.check_not_partial(entry, "it shrank while it was read")
            self.warnings.short(entry, "ended early (it shrank or failed): padded with zeros")
            write_zeros(sink, count - done)


def write_tar_stream(manifest, out, warnings, ahead=None):
    """Write a whole tar of the manifest to out, files as they are when reached.

    out is told where each file's data starts and ends (start_file(name,
    size), end_file()), which it may store rather than compress; a small
    file comes whole, with its header and the zeros after it
    (write_small_file(name, header, data, zeros)).  A file that shrinks
    while read is padded, as its header already holds its size.
    """
    for entry, fileobj, status, data in members_as_reached(manifest, warnings, ahead):
        if status is None:
            out.write(tar_header(entry, 0, entry.mtime_ns))
            continue
        size = status.st_size
        mtime_ns = getattr(status, "st_mtime_ns", entry.mtime_ns)
        if data is not None:  # most files: read at once, one write
            if len(data) < size:
                warnings.short(entry, "ended early (it shrank or failed): padded with zeros")
            out.write_small_file(entry.name, tar_header(entry, size, mtime_ns), data,
                                 bytes(size - len(data) + tar_padding(size)))
            continue
        out.write(tar_header(entry, size, mtime_ns))
        out.start_file(entry.name, size)
        done = copy_file_data(out, fileobj, size)
        out.end_file()
        if done < size:
            warnings.short(entry, "ended early (it shrank or failed): padded with zeros")
            write_zeros(out, size - done)
        write_zeros(out, tar_padding(size))
    out.write(bytes(TAR_END))


# ---------------------------------------------------------------------------
# Zip streamed: deflated on every core
#
# A zip with deflated members has no size known in advance: it is sent as
# it is made, its members deflated on the pool's threads and written in
# order.  A small file, read whole before its header is written, has its
# CRC and sizes there; a large one's follow its data in a data descriptor
# (APPNOTE 4.3.9), and it is deflated, or in stored blocks when it cannot
# shrink, as stream readers take no descriptor after a stored member.
# Zip64 fields are used only where a size or an offset needs them, so that
# a small zip opens in every tool.
# ---------------------------------------------------------------------------

# Zip records (APPNOTE 4.3): all little-endian.
ZIP_LOCAL = struct.Struct("<IHHHHHIIIHH")
ZIP_DESCRIPTOR = struct.Struct("<IIII")
ZIP_DESCRIPTOR64 = struct.Struct("<IIQQ")
ZIP_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
ZIP_END64 = struct.Struct("<IQHHIIQQQQ")
ZIP_LOCATOR64 = struct.Struct("<IIQI")
ZIP_END = struct.Struct("<IHHHHIIH")
ZIP_FLAG_DESCRIPTOR = 0x08   # sizes and CRC follow the data (4.4.4, bit 3)
ZIP_FLAG_UTF8 = 0x800        # the name is UTF-8 (4.4.4, bit 11; appendix D)
ZIP_MADE_BY_UNIX = 3 << 8    # external attributes hold Unix modes (4.4.2)
ZIP_DEFLATE_LEVEL = 6        # zlib's default, as GZIP_LEVEL


def dos_date_time(seconds):
    """(time, date) in MS-DOS form, local time, clamped to 1980-2107 (4.4.6)."""
    try:
        moment = time.localtime(seconds)
    except (OverflowError, OSError, ValueError):
        moment = None
    if moment is None or moment.tm_year < 1980:
        return 0, (1 << 5) | 1
    if moment.tm_year > 2107:
        return (23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31
    return ((moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2),
            ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday)


def zip_name(entry):
    """A member's name as bytes, and the flag telling it is UTF-8.

    Zip names separate folders with "/" only (APPNOTE 4.4.17); a backslash,
    legal in a Unix file name, is made "_", since Windows tools would read
    it as a separator, and "..\\" as a way out of the folder unpacked into.
    """
    name = name_bytes(entry.name).replace(b"\\", b"_") + (b"/" if entry.kind == FOLDER else b"")
    try:
        name.decode("ascii")
        return name, 0
    except UnicodeDecodeError:
        pass
    try:
        name.decode("utf-8")
        return name, ZIP_FLAG_UTF8
    except UnicodeDecodeError:
        return name, 0  # bytes that are no text: left for the reader to guess


def zip_method(name, size):
    """0 (stored) for an empty file or one whose extension says it is
    compressed already, else 8 (deflated)."""
    return 0 if size == 0 or incompressible_name(name) else 8


class StoredBlocksWriter:
    """Writes what it is given as deflate's stored blocks (RFC 1951 3.2.4),
    nothing compressed, then a final empty one: a deflated member that costs
    no more than a stored one, for data that cannot shrink.  A reader that
    goes through a zip as a stream (Java's ZipInputStream, Android's) takes
    a deflated member whose sizes follow its data, never a stored one."""

    def __init__(self, sink):
        self.sink = sink

    def write(self, data):
        if len(data):
            self.sink.write(stored_blocks(data))

    def finish(self):
        self.sink.write(struct.pack("<BHH", 1, 0, 0xFFFF))  # BFINAL set, LEN 0


class ZipWriter:
    """Writes a zip to a sink as it goes: data descriptors, zip64 where needed.

    zip64_from is the size and offset from which zip64 fields are used;
    below it the archive is plain zip, which every tool opens.
    """

    def __init__(self, sink, zlib, zip64_from=ZIP32_MAX):
        self.sink = sink
        self.zlib = zlib
        self.zip64_from = zip64_from
        self.offset = 0
        self.central = []

    def emit(self, data):
        self.sink.write(data)
        self.offset += len(data)

    def add_folder(self, entry):
        name, flags = zip_name(entry)
        mode = (stat.S_IFDIR | entry.mode) << 16 | 0x10  # 0x10: the MS-DOS folder bit
        member = self.begin_member(name, flags, 0, entry.mtime_ns, mode, 0)
        self.end_member(member, 0, 0, 0, has_data=False)

    def add_unshrinkable_file(self, entry, fileobj, status):
        """Add the data of an open file that cannot shrink, as it is now, in
        stored blocks (StoredBlocksWriter); return how many bytes it had."""
        member = self.begin_file(entry, status, 8)
        start, crc = self.offset, [0]

        def add_to_crc(data):
            crc[0] = self.zlib.crc32(data, crc[0])

        blocks = StoredBlocksWriter(self)
        done = copy_file_data(blocks, fileobj, status.st_size, add_to_crc)
        blocks.finish()
        self.end_member(member, crc[0] & 0xFFFFFFFF, self.offset - start, done)
        return done

    def begin_file(self, entry, status, method):
        """Write the local header of a file whose data follows; return what
        end_member() needs once the data is written."""
        name, flags = zip_name(entry)
        mode = (stat.S_IFREG | entry.mode) << 16
        mtime_ns = getattr(status, "st_mtime_ns", entry.mtime_ns)
        return self.begin_member(name, flags | ZIP_FLAG_DESCRIPTOR, method, mtime_ns, mode,
                                 status.st_size)

    def add_read_file(self, entry, status, method, crc, member_data, size):
        """Add a file read whole: member_data is its `size` bytes stored
        (method 0) or deflated (8).  Its CRC and sizes go in its local
        header, with no data descriptor after it, as a reader that goes
        through the zip as a stream (Java's ZipInputStream) wants of a
        stored member."""
        name, flags = zip_name(entry)
        mode = (stat.S_IFREG | entry.mode) << 16
        clock, date = dos_date_time(getattr(status, "st_mtime_ns", entry.mtime_ns) / 1e9)
        header_offset, packed = self.offset, len(member_data)
        zip64 = max(size, packed) >= self.zip64_from
        if zip64:  # only where zip64_from is set low: small files fit plain fields
            extra, sizes = struct.pack("<HHQQ", 1, 16, size, packed), (ZIP32_MAX, ZIP32_MAX)
        else:
            extra, sizes = b"", (packed, size)
        self.emit(ZIP_LOCAL.pack(0x04034b50, 45 if zip64 else 20, flags, method, clock, date,
                                 crc, sizes[0], sizes[1], len(name), len(extra)) + name + extra)
        self.emit(member_data)
        self.central.append(self.central_record(name, flags, method, clock, date, mode, crc,
                                                packed, size, header_offset, zip64))

    def begin_member(self, name, flags, method, mtime_ns, mode, size):
        header_offset = self.offset
        zip64 = size + (size >> 10) + 1024 >= self.zip64_from
        clock, date = dos_date_time(mtime_ns / 1e9)
        version = 45 if zip64 else 20
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        unknown = ZIP32_MAX if zip64 else 0
        self.emit(ZIP_LOCAL.pack(0x04034b50, version, flags, method, clock, date,
                                 0, unknown, unknown, len(name), len(extra)) + name + extra)
        return name, flags, method, clock, date, mode, header_offset, zip64

    def end_member(self, member, crc, packed, done, has_data=True):
        """The data descriptor (for a member with data) and the central record."""
        name, flags, method, clock, date, mode, header_offset, zip64 = member
        if has_data:
            if zip64:
                self.emit(ZIP_DESCRIPTOR64.pack(0x08074b50, crc, packed, done))
            else:
                self.emit(ZIP_DESCRIPTOR.pack(0x08074b50, crc, packed, done))
        self.central.append(self.central_record(name, flags, method, clock, date, mode,
                                                crc, packed, done, header_offset, zip64))

    def write(self, data):
        self.emit(data)

    def central_record(self, name, flags, method, clock, date, mode, crc, packed, size,
                       header_offset, zip64):
        """One central directory record; zip64 fields for what does not fit (4.5.3)."""
        extra = b""
        if zip64:
            extra += struct.pack("<QQ", size, packed)
            size = packed = ZIP32_MAX
        if header_offset >= self.zip64_from:
            extra += struct.pack("<Q", header_offset)
            header_offset = ZIP32_MAX
        if extra:
            extra = struct.pack("<HH", 1, len(extra)) + extra
        version = 45 if extra else 20
        return ZIP_CENTRAL.pack(0x02014b50, ZIP_MADE_BY_UNIX | version, version, flags,
                                method, clock, date, crc, packed, size, len(name),
                                len(extra), 0, 0, 0, mode, header_offset) + name + extra

    def finish(self):
        """Write the central directory and its end records (4.3.12 to 4.3.16)."""
        directory_offset = self.offset
        for record in self.central:
            self.emit(record)
        directory_size = self.offset - directory_offset
        count = len(self.central)
        if (count >= ZIP_MAX_ENTRIES or directory_offset >= self.zip64_from
                or directory_size >= self.zip64_from):
            end64_offset = self.offset
            self.emit(ZIP_END64.pack(0x06064b50, ZIP_END64.size - 12, ZIP_MADE_BY_UNIX | 45,
                                     45, 0, 0, count, count, directory_size,
                                     directory_offset))
            self.emit(ZIP_LOCATOR64.pack(0x07064b50, 0, end64_offset, 1))
            count = min(count, ZIP_MAX_ENTRIES)
            directory_size = min(directory_size, ZIP32_MAX)
            directory_offset = ZIP32_MAX
        self.emit(ZIP_END.pack(0x06054b50, 0, 0, count, count, directory_size,
                               directory_offset, 0))


def write_zip_stream(manifest, sink, warnings, zlib, zip64_from=ZIP32_MAX, pool=None,
                     ahead=None):
    """Write a whole zip of the manifest to sink, files as they are when reached.

    Files are deflated on the pool's threads (ZipMembersOnCores); a file
    stored as it is, read while it is open, waits for those before it.
    """
    writer = ZipWriter(sink, zlib, zip64_from)
    members = ZipMembersOnCores(writer, pool or CompressionPool(), warnings)
    for entry, fileobj, status, data in members_as_reached(manifest, warnings, ahead):
        if status is None:
            members.add_folder(entry)  # zip manifests hold no links
        else:
            members.add_file(entry, fileobj, status, data)
    members.finish()
    writer.finish()


def deflate_members(zlib, contents):
    """(CRC-32, method, the bytes that go in the zip) of each file's bytes:
    a raw deflate stream (8), or the bytes themselves (0, stored) when a
    trial of their start says they cannot shrink."""
    packed = []
    for data in contents:
        crc = zlib.crc32(data) & 0xFFFFFFFF
        if len(data) >= SMALL_TRIAL_MIN and incompressible_start(zlib, data, SMALL_TRIAL_SIZE):
            packed.append((crc, 0, data))
            continue
        compressor = zlib.compressobj(ZIP_DEFLATE_LEVEL, zlib.DEFLATED, -15)
        packed.append((crc, 8, compressor.compress(data) + compressor.flush()))
    return packed


class ZipMembersOnCores:
    """Gives a ZipWriter its members in order, deflated on the pool's threads.

    Small files are read whole and deflated in batches of about a block, so
    that a task is worth its overhead; a larger file is cut into blocks
    deflated apart, as in a tar.gz, its CRC counted here.  A file that
    cannot shrink, by its name or by a trial of its first bytes (a small
    one's from SMALL_TRIAL_MIN on, where it would be deflated), is not
    deflated: a small one is stored, its CRC and sizes in its local header;
    a large one goes in deflate's stored blocks (StoredBlocksWriter).
    """

    def __init__(self, writer, pool, warnings):
        self.writer = writer
        self.zlib = writer.zlib
        self.warnings = warnings
        self.results = OrderedResults(pool, None, pool.blocks_in_flight(GZIP_BLOCK_SIZE))
        self.batch = []  # (entry, status, data)
        self.batch_bytes = 0

    def add_folder(self, entry):
        self.results.after(lambda: self.writer.add_folder(entry))

    def add_file(self, entry, fileobj, status, data=None):
        """Add a file, open (fileobj) or already read (data)."""
        size = status.st_size
        method = zip_method(entry.name, size)
        if size < STORE_TRIAL_MIN and data is None:
            data = read_member(fileobj, size)
        if method == 8 and size < STORE_TRIAL_MIN:
            self.add_to_batch(entry, status, data)
            return
        if size < STORE_TRIAL_MIN:  # small, stored: read now, written in turn
            self.hand_out_batch()
            self.results.after(lambda: self.write_stored(entry, status, data))
            return
        if data is not None:
            fileobj = io.BytesIO(data)
        if method == 8:
            first = read_member(fileobj, STORE_TRIAL_SIZE)
            fileobj.seek(0)
            if incompressible_start(self.zlib, first):
                method = 0
        self.hand_out_batch()
        if method == 0:
            self.results.finish()  # the file is read now, while it is open
            done = self.writer.add_unshrinkable_file(entry, fileobj, status)
            self.check_size(entry, size, done)
        else:
            self.add_in_blocks(entry, fileobj, status)

    def add_to_batch(self, entry, status, data):
        self.batch.append((entry, status, data))
        self.batch_bytes += len(data)
        if self.batch_bytes >= GZIP_BLOCK_SIZE:
            self.hand_out_batch()

    def hand_out_batch(self):
        if not self.batch:
            return
        batch = self.batch
        self.results.add_then(lambda packed: self.write_batch(batch, packed), deflate_members,
                              self.zlib, [data for _, _, data in batch])
        self.batch, self.batch_bytes = [], 0

    def write_stored(self, entry, status, data):
        self.writer.add_read_file(entry, status, 0, self.zlib.crc32(data) & 0xFFFFFFFF, data,
                                  len(data))
        self.check_size(entry, status.st_size, len(data))

    def write_batch(self, batch, packed):
        for (entry, status, data), (crc, method, member_data) in zip(batch, packed):
            self.writer.add_read_file(entry, status, method, crc, member_data, len(data))
            self.check_size(entry, status.st_size, len(data))

    def add_in_blocks(self, entry, fileobj, status):
        """A file's data as deflate blocks, each primed with the window before it."""
        writer, size = self.writer, status.st_size
        started = []  # (member, offset of its data) once its header is written

        def begin():
            started.append((writer.begin_file(entry, status, 8), writer.offset))

        self.results.after(begin)
        crc, done, window, last = 0, 0, b"", False
        while not last:
            block = read_member(fileobj, min(GZIP_BLOCK_SIZE, size - done))
            crc = self.zlib.crc32(block, crc)
            done += len(block)
            last = done >= size or not block
            self.results.add_then(writer.emit, deflate_block, self.zlib, ZIP_DEFLATE_LEVEL,
                                  window, block, [(len(block), False)] if block else [], last)
            window = (window + block[-DEFLATE_WINDOW:])[-DEFLATE_WINDOW:]

        def end():
            member, data_offset = started[0]
            writer.end_member(member, crc & 0xFFFFFFFF, writer.offset - data_offset, done)
            self.check_size(entry, size, done)

        self.results.after(end)

    def check_size(self, entry, size, done):
        if done < size:
            self.warnings.short(entry, "ended early (it shrank or failed): the zip has what "
                                "was read")

    def finish(self):
        self.hand_out_batch()
        self.results.finish()


# ---------------------------------------------------------------------------
# Zip of known size: every member stored
#
# A zip whose members are all stored, none deflated, has a size known from
# the manifest, like the plain tar, and so gets Content-Length, an ETag and
# Range.  Only the CRC-32s wait for the data: each file says so (flag bit
# 3) and has its CRC in a data descriptor after its data (APPNOTE 4.3.9,
# 4.4.4), which the central directory repeats.  A span that needs the CRC
# of a file it does not send reads that file; CRCs found by any request are
# kept with the layout of the manifest's state, so that the parts of one
# download (aria2c -x4, curl -C -) read the folder about once.
# ---------------------------------------------------------------------------

ZIP_LOCAL_EXTRA64 = struct.pack("<HHQQ", 1, 16, 0, 0)  # sizes in the descriptor (4.5.3)
# A file's data is read for its CRC this much at a time, then sent with
# sendfile() while still in the page cache: one read from the disk, and no
# copy through Python on the way out.
ZIP_CRC_WINDOW = 1 << 20
ZIP_FOLDER_MODE = stat.S_IFDIR << 16 | 0x10  # 0x10: the MS-DOS folder bit
ZIP_FILE_MODE = stat.S_IFREG << 16


class StoredZipLayout:
    """Where each record of a stored zip starts, and the CRC-32s found so far.

    Per entry: two offsets and a CRC in arrays (20 bytes and a bit), so
    that a large tree's layout stays small.  zip64_from is the size and
    offset from which zip64 fields are used, as in ZipWriter.
    """

    def __init__(self, manifest, zip64_from=ZIP32_MAX):
        self.manifest = manifest
        self.entries = manifest.entries
        self.zip64_from = zip64_from
        self.starts = array.array("q")   # each local header, from the archive's start
        self.records = array.array("q")  # each central record, from the directory's start
        offset = directory = 0
        for entry in self.entries:
            self.starts.append(offset)
            self.records.append(directory)
            name_size = len(zip_name(entry)[0])
            directory += ZIP_CENTRAL.size + name_size + len(self.central_extra(entry, offset))
            offset += ZIP_LOCAL.size + name_size
            if self.is_zip64(entry):
                offset += len(ZIP_LOCAL_EXTRA64)
            offset += entry.size + self.descriptor_size(entry)
        self.directory_start = offset
        self.directory_size = directory
        self.end = self.end_records()
        self.size = offset + directory + len(self.end)
        self.crcs = array.array("I", [0]) * len(self.entries)
        self.known = bytearray((len(self.entries) + 7) // 8)
        self.lock = threading.Lock()

    def is_zip64(self, entry):
        return entry.kind == FILE and entry.size >= self.zip64_from

    def local_header(self, entry):
        """A member's local header (4.3.7); CRC and sizes are left to the descriptor."""
        name_field, flags = zip_name(entry)
        clock, date = dos_date_time(entry.mtime_ns / 1e9)
        if entry.kind != FILE:
            return ZIP_LOCAL.pack(0x04034b50, 20, flags, 0, clock, date, 0, 0, 0,
                                  len(name_field), 0) + name_field
        zip64 = self.is_zip64(entry)
        extra = ZIP_LOCAL_EXTRA64 if zip64 else b""
        unknown = ZIP32_MAX if zip64 else 0
        return ZIP_LOCAL.pack(0x04034b50, 45 if zip64 else 20, flags | ZIP_FLAG_DESCRIPTOR, 0,
                              clock, date, 0, unknown, unknown, len(name_field),
                              len(extra)) + name_field + extra

    def descriptor_size(self, entry):
        if entry.kind != FILE:
            return 0
        return ZIP_DESCRIPTOR64.size if self.is_zip64(entry) else ZIP_DESCRIPTOR.size

    def descriptor(self, entry, crc):
        """The data descriptor after a file's data (4.3.9), zip64 as its local header says."""
        if self.is_zip64(entry):
            return ZIP_DESCRIPTOR64.pack(0x08074b50, crc, entry.size, entry.size)
        return ZIP_DESCRIPTOR.pack(0x08074b50, crc, entry.size, entry.size)

    def central_extra(self, entry, header_offset):
        """The zip64 extra field of a central record, for what does not fit (4.5.3)."""
        extra = b""
        if self.is_zip64(entry):
            extra += struct.pack("<QQ", entry.size, entry.size)
        if header_offset >= self.zip64_from:
            extra += struct.pack("<Q", header_offset)
        return struct.pack("<HH", 1, len(extra)) + extra if extra else b""

    def central_record(self, index, crc, entry):
        """The record of entry number index in the central directory (4.3.12)."""
        name, flags = zip_name(entry)
        clock, date = dos_date_time(entry.mtime_ns / 1e9)
        header_offset = self.starts[index]
        extra = self.central_extra(entry, header_offset)
        size = ZIP32_MAX if self.is_zip64(entry) else entry.size
        if header_offset >= self.zip64_from:
            header_offset = ZIP32_MAX
        if entry.kind == FILE:
            flags |= ZIP_FLAG_DESCRIPTOR
            mode = ZIP_FILE_MODE | entry.mode << 16
        else:
            mode = ZIP_FOLDER_MODE | entry.mode << 16
        version = 45 if extra else 20
        return ZIP_CENTRAL.pack(0x02014b50, ZIP_MADE_BY_UNIX | version, version, flags, 0,
                                clock, date, crc, size, size, len(name), len(extra), 0, 0, 0,
                                mode, header_offset) + name + extra

    def end_records(self):
        """The zip64 end records where needed, and the end record (4.3.14 to 4.3.16)."""
        count, offset, size = len(self.entries), self.directory_start, self.directory_size
        end64 = b""
        if count >= ZIP_MAX_ENTRIES or offset >= self.zip64_from or size >= self.zip64_from:
            end64 = (ZIP_END64.pack(0x06064b50, ZIP_END64.size - 12, ZIP_MADE_BY_UNIX | 45, 45,
                                    0, 0, count, count, size, offset)
                     + ZIP_LOCATOR64.pack(0x07064b50, 0, offset + size, 1))
            count, size, offset = min(count, ZIP_MAX_ENTRIES), min(size, ZIP32_MAX), ZIP32_MAX
        return end64 + ZIP_END.pack(0x06054b50, 0, 0, count, count, size, offset, 0)

    def known_crc(self, index):
        """The CRC-32 of a file as listed, if a request found it; else None."""
        with self.lock:
            if self.known[index >> 3] & (1 << (index & 7)):
                return self.crcs[index]
        return None

    def keep_crc(self, index, crc):
        with self.lock:
            self.crcs[index] = crc
            self.known[index >> 3] |= 1 << (index & 7)


def file_crc(descriptor, count, zlib, out=None):
    """(CRC-32, bytes read) of an open file's first count bytes, written to out too if given."""
    crc = done = 0
    while done < count:
        data = read_at(descriptor, done, min(ARCHIVE_READ_SIZE, count - done))
        if not data:
            break
        crc = zlib.crc32(data, crc)
        if out is not None:
            out.write(data)
        done += len(data)
    return crc & 0xFFFFFFFF, done


def send_file_with_crc(sink, descriptor, count, zlib):
    """Send an open file's first count bytes; return (their CRC-32, how many were sent).

    Small files and TLS sockets (no sendfile) take the data through Python.
    """
    if count < SENDFILE_MIN or not sink.use_sendfile:
        return file_crc(descriptor, count, zlib, sink)
    sink.flush()
    buffer = bytearray(ARCHIVE_READ_SIZE)
    view = memoryview(buffer)
    crc = done = 0
    with os.fdopen(descriptor, "rb", buffering=0, closefd=False) as fileobj:
        while done < count:
            window = min(ZIP_CRC_WINDOW, count - done)
            fileobj.seek(done)
            read = 0
            while read < window:
                try:
                    got = fileobj.readinto(view[:min(len(buffer), window - read)])
                except OSError:
                    got = 0
                if not got:
                    break
                crc = zlib.crc32(view[:got], crc)
                read += got
            before = sink.sent
            try:
                sink.sendfile(fileobj, done, read)
            except ShortFile:
                return crc & 0xFFFFFFFF, done + sink.sent - before
            done += read
            if read < window:
                break
    return crc & 0xFFFFFFFF, done


def zeros_crc(count, zlib, crc=0):
    """The CRC-32 of crc's data followed by count zero bytes."""
    zeros = bytes(min(count, ARCHIVE_READ_SIZE))
    while count > 0:
        crc = zlib.crc32(zeros[:count], crc)
        count -= len(zeros)
    return crc & 0xFFFFFFFF


class StoredZipBody(SizedArchiveBody):
    """A zip of a manifest, every member stored, of exact size: any span can be sent.

    As with TarBody, a whole archive takes files as they are (changed sizes
    padded or cut, with a warning), where a part holds them as listed or is
    cut short: its CRCs must agree with the other parts'.
    """

    kind = "zip"

    def __init__(self, manifest, layout, warnings, zlib, resume_conflict=None, on_close=None,
                 read_ahead_pool=None):
        super().__init__(manifest, layout, warnings, resume_conflict, on_close, read_ahead_pool)
        self.zlib = zlib
        self.sent_crcs = {}  # {index: CRC} of files a whole archive sent other than as listed

    def write(self, sink, start, stop):
        self.partial = (start, stop) != (0, self.size)
        opener = MemberOpener(self.layout.manifest)
        try:
            directory_start = self.layout.directory_start
            if start < directory_start:
                self.write_members(sink, opener, start, min(stop, directory_start))
            if stop > directory_start:
                self.write_directory(sink, opener, max(start, directory_start), stop)
        finally:
            opener.close()

    GATHER = 256 << 10  # small members' bytes gathered before they go to the sink

    def write_members(self, sink, opener, start, stop):
        layout = self.layout
        starts, count = layout.starts, len(layout.entries)
        first = max(bisect.bisect_right(starts, start) - 1, 0)
        ahead, out = self.read_ahead(), bytearray()
        try:
            for index in range(first, count):
                member_start = starts[index]
                if member_start >= stop:
                    break
                ahead.reached(index)
                member_end = starts[index + 1] if index + 1 < count else layout.directory_start
                if start <= member_start and member_end <= stop:
                    whole = self.small_member(opener, index)
                    if whole is not None:
                        out += whole
                        if len(out) >= self.GATHER:
                            sink.write(out)
                            out = bytearray()
                        continue
                if out:
                    sink.write(out)
                    out = bytearray()
                self.write_member(sink, opener, index, start, stop)
            sink.write(out)
        finally:
            ahead.close()

    def small_member(self, opener, index):
        """A small file's whole member (header, data, data descriptor) when it is
        as listed, its CRC kept; else None, and write_member sends it."""
        manifest = self.layout.manifest
        size = manifest.sizes[index]
        if manifest.kinds[index] != FILE_CODE or not 0 < size < SENDFILE_MIN:
            return None
        try:
            descriptor, status = opener.open_member(index)
        except FileChanged:
            return None  # write_member tells what became of it
        try:
            if (status.st_size != size
                    or getattr(status, "st_mtime_ns", None) != manifest.mtimes[index]):
                return None
            data = read_at(descriptor, 0, size)
        finally:
            os.close(descriptor)
        if len(data) != size:
            return None
        crc = self.zlib.crc32(data) & 0xFFFFFFFF
        self.layout.keep_crc(index, crc)
        entry = manifest.entry(index)
        return b"".join((self.layout.local_header(entry), data,
                         self.layout.descriptor(entry, crc)))

    def write_member(self, sink, opener, index, start, stop):
        layout = self.layout
        entry = layout.entries[index]
        member_start = layout.starts[index]
        header = layout.local_header(entry)
        data_start = member_start + len(header)
        part = overlap(member_start, data_start, start, stop)
        if part:
            sink.write(header[part[0] - member_start:part[1] - member_start])
        if entry.kind != FILE:
            return
        descriptor_start = data_start + entry.size
        crc = None
        part = overlap(data_start, descriptor_start, start, stop)
        if part:
            crc = self.write_data(sink, opener, index, entry, part[0] - data_start,
                                  part[1] - part[0])
        part = overlap(descriptor_start, descriptor_start + layout.descriptor_size(entry),
                       start, stop)
        if part:
            if crc is None:
                crc = self.crc_of(opener, index, entry)
            descriptor = layout.descriptor(entry, crc)
            sink.write(descriptor[part[0] - descriptor_start:part[1] - descriptor_start])

    def write_data(self, sink, opener, index, entry, offset, count):
        """Send count bytes of a file's data; return its CRC when all of it went, else None."""
        whole = count == entry.size
        try:
            descriptor, status = opener.open_descriptor(entry)
        except FileChanged as error:
            if self.partial:
                raise
            self.warnings.short(entry, "could not be read (%s): sent as zeros" % error)
            write_zeros(sink, count)
            self.sent_crcs[index] = zeros_crc(count, self.zlib)
            return self.sent_crcs[index]
        try:
            mtime_ns = getattr(status, "st_mtime_ns", entry.mtime_ns)
            as_listed = (status.st_size, mtime_ns) == (entry.size, entry.mtime_ns)
            if self.partial and not as_listed:
                raise FileChanged("%s changed since it was listed: this part would not match "
                                  "the others" % printable_name(entry.name))
            if status.st_size != entry.size:
                self.warnings.short(entry, "changed size while offered: sent as listed")
            crc = self.layout.known_crc(index) if as_listed else None
            if crc is None and whole:
                crc, done = send_file_with_crc(sink, descriptor, count, self.zlib)
            else:
                done = send_file_span(sink, descriptor, offset, count)
            if done < count and not self.partial:
                # Neither a CRC found before nor one of bytes read but not
                # sent fits what went out: the file's first `done` bytes.
                crc = file_crc(descriptor, done, self.zlib)[0]
        finally:
            os.close(descriptor)
        if done < count:
            if self.partial:
                raise FileChanged("%s shrank while it was read: this part would not match "
                                  "the others" % printable_name(entry.name))
            self.warnings.short(entry, "ended early (it shrank or failed): padded with zeros")
            write_zeros(sink, count - done)
            crc = zeros_crc(count - done, self.zlib, crc)
            as_listed = False
        if not whole:
            return None
        if as_listed:
            self.layout.keep_crc(index, crc)
        else:
            self.sent_crcs[index] = crc
        return crc

    def crc_of(self, opener, index, entry):
        """A file's CRC-32: as sent, as found before, or read now from the file as listed."""
        crc = self.sent_crcs.get(index)
        if crc is None:
            crc = self.layout.known_crc(index)
        if crc is not None or entry.size == 0:
            return crc or 0
        descriptor, status = opener.open_descriptor(entry)
        try:
            mtime_ns = getattr(status, "st_mtime_ns", entry.mtime_ns)
            if (status.st_size, mtime_ns) != (entry.size, entry.mtime_ns):
                raise FileChanged("%s changed since it was listed: this part would not match "
                                  "the others" % printable_name(entry.name))
            crc, done = file_crc(descriptor, entry.size, self.zlib)
        finally:
            os.close(descriptor)
        if done < entry.size:
            raise FileChanged("%s shrank while it was read: this part would not match the "
                              "others" % printable_name(entry.name))
        self.layout.keep_crc(index, crc)
        return crc

    def write_directory(self, sink, opener, start, stop):
        layout = self.layout
        base = layout.directory_start
        first = max(bisect.bisect_right(layout.records, start - base) - 1, 0)
        ahead = self.read_ahead()  # for the files whose CRC must be read first
        try:
            for index in range(first, len(layout.entries)):
                record_start = base + layout.records[index]
                if record_start >= stop:
                    return
                entry = layout.entries[index]
                crc = 0
                if entry.kind == FILE:
                    if index not in self.sent_crcs and layout.known_crc(index) is None:
                        ahead.reached(index)
                    crc = self.crc_of(opener, index, entry)
                record = layout.central_record(index, crc, entry)
                part = overlap(record_start, record_start + len(record), start, stop)
                if part:
                    sink.write(record[part[0] - record_start:part[1] - record_start])
        finally:
            ahead.close()
        end_start = layout.size - len(layout.end)
        part = overlap(end_start, layout.size, start, stop)
        if part:
            sink.write(layout.end[part[0] - end_start:part[1] - end_start])


# ---------------------------------------------------------------------------
# Archive offer: folders and several paths as one download
#
# ArchiveOffer walks the offered paths for each request, sharing one walk
# among the requests that come while it runs, and hands each the body its
# format needs: one of known size (plain tar, stored zip) that a resume
# may continue, or one streamed, only so many at once.
# ---------------------------------------------------------------------------

# Compressed archives being made at once, by format; more wait their turn
# (and are answered 503 after ARCHIVE_TURN_WAIT seconds).  A compressor's
# state is about 0.3 MiB for deflate, 7.6 MiB for bzip2 -9 and 17 MiB for
# xz -2, so that clients that never read keep woof's memory bounded (the
# cores are busy with far fewer streams anyway).
ARCHIVE_STREAMS_AT_ONCE = {"gz": 32, "zip": 32, "bz2": 8, "xz": 4}
ARCHIVE_TURN_WAIT = 10

# A walk of the offered folders answers the HEAD requests that come within
# this many seconds of its end (or WALK_REUSE_FACTOR times its length, when
# longer), as long as the folders given keep their modification times:
# clients that poll with HEAD cost one walk now and then, not one each, and
# walks never take more than a small share of the time.  A GET takes a walk
# only within WALK_REUSE_SECONDS of its end (the download that follows
# woof's start takes the walk made at start), else walks again or joins a
# walk under way.  A file changed in place since shows in the next walk's
# ETag, so a resumed download never joins two states: its If-Range fails,
# and a part checks each file against the listing as it sends it.
WALK_REUSE_SECONDS = 1.0
WALK_REUSE_FACTOR = 5

# A HEAD of a plain tar or stored zip waits this long while one is being
# downloaded: each file costs the download's thread a few system calls,
# after each of which it must take back the interpreter's lock, and clients
# looping HEAD would keep that lock busy (8 of them made a download of 20,000 small
# files take 5 times as long, 2 times with no walk at all; waiting 20 ms,
# 1.6 to 1.9 times; 50 ms, 1.1 to 1.2 times).
HEAD_YIELD_SECONDS = 0.05


class StreamedArchiveBody(ResponseBody):
    """A compressed tar or a zip of a manifest, made while it is sent (size unknown)."""

    def __init__(self, manifest, compression, warnings, modules, zip64_from, turn=None,
                 pool=None, read_ahead_pool=None):
        self.manifest = manifest
        self.read_ahead_pool = read_ahead_pool
        self.compression = compression
        self.warnings = warnings
        self.modules = modules
        self.zip64_from = zip64_from
        self.turn = turn  # a semaphore this body holds, given back on close
        self.pool = pool or CompressionPool()

    def write(self, sink, start=0, stop=None):
        ahead = (self.read_ahead_pool.follow(self.manifest) if self.read_ahead_pool
                 else ReadAhead())
        try:
            if self.compression == "zip":
                write_zip_stream(self.manifest, sink, self.warnings, self.modules["zlib"],
                                 self.zip64_from, self.pool, ahead)
                return
            out = parallel_writer(sink, self.compression, self.modules, self.pool)
            write_tar_stream(self.manifest, out, self.warnings, ahead)
            out.finish()
        finally:
            ahead.close()

    def close(self):
        if self.turn is not None:
            self.turn.release()
            self.turn = None


COMPRESSION_MODULES = {"gz": ("zlib",), "bz2": ("bz2",), "xz": ("lzma",),
                       "zip": ("zlib",), "tar": ()}


def compression_modules(compression):
    """The modules a format needs, imported; WoofError when this Python lacks one."""
    modules = {}
    for name in COMPRESSION_MODULES[compression]:
        module = optional_module(name)
        if module is None:
            raise WoofError("this Python was built without the %s module, needed for "
                            "%s archives; choose another format" % (name, compression))
        modules[name] = module
    return modules


class ArchiveOffer:
    """Folders and files offered as one archive (tar, tar.gz, tar.bz2, tar.xz, zip).

    A download gets the folder as it is, as of its own walk or of one under
    way when it came (a HEAD may take one a little older).  Plain tar, and
    zip with store (every member stored, none deflated), can be resumed
    with Range, but a client whose first part came from the folder in
    another state would splice two different archives: the server refuses
    it a Range without If-Range, and a part that meets a file changed since
    the walk is cut short rather than sent.
    """

    def __init__(self, paths, compression="gz", log=None, name=None, zip64_from=ZIP32_MAX,
                 store=False):
        if store and compression != "zip":
            raise ValueError("only zip members can be stored")
        self.paths = list(paths)
        self.store = store
        self.offered = resolve_offered_paths(self.paths)
        self.walk_ended = None  # a Condition while a walk runs, None otherwise
        self.walk_failure = None  # why the last walk failed, for those who waited on it
        self.walked = (0, 0, None)  # the last walk's walk_times()
        self.compression = compression
        self.log = log or Log()
        self.zip64_from = zip64_from
        self.modules = compression_modules(compression)
        self.turns = None
        if compression in ARCHIVE_STREAMS_AT_ONCE:
            self.turns = threading.BoundedSemaphore(ARCHIVE_STREAMS_AT_ONCE[compression])
        self.pool = CompressionPool()  # shared by every stream of this offer
        self.read_ahead_pool = ReadAheadPool()  # and by every archive of it
        self.lock = threading.Lock()
        self.sending = 0  # plain tar bodies being sent
        started, marks = time.monotonic(), self.top_marks()
        manifest = walk_paths(self.offered, keep_links=compression != "zip")
        self.walked = self.walk_times(started, time.monotonic(), marks)
        self.current = self.adopt(manifest)
        self.name = name or archive_name(self.paths, compression)
        self.content_type = guess_content_type(self.name)

    def adopt(self, manifest):
        """(manifest, layout or None) for a manifest seen for the first time.

        The layout is a TarLayout or StoredZipLayout for archives of known
        size, None for those streamed.
        """
        for problem in manifest.problems:
            self.log.warn(problem)
        layout = None
        if self.compression == "tar":
            layout = TarLayout(manifest)
        elif self.store:
            layout = StoredZipLayout(manifest, self.zip64_from)
        return manifest, layout

    def top_marks(self):
        """What tells whether the paths given changed: their lstat, None where it fails.

        A name added, removed or renamed in a folder changes its mtime.
        """
        marks = []
        for item in self.offered:
            try:
                status = os.lstat(item.path)
            except OSError:
                marks.append(None)
                continue
            marks.append((status.st_dev, status.st_ino, status.st_size,
                          getattr(status, "st_mtime_ns", status.st_mtime),
                          getattr(status, "st_ctime_ns", status.st_ctime)))
        return marks

    def refresh(self, reuse_recent=False, reuse_fresh=True):
        """The manifest (and layout) of the tree as it is now.

        One walk at a time: a request made while one runs waits for it and
        takes its result.  With reuse_fresh, a walk that ended within
        WALK_REUSE_SECONDS, the paths given unchanged since, is taken too;
        with reuse_recent (a HEAD), one that ended within its longer reuse
        time.
        """
        with self.lock:
            if self.walk_ended is not None:
                ended = self.walk_ended
                while self.walk_ended is ended:
                    ended.wait()
                if self.walk_failure:
                    raise Unavailable(HTTPStatus.GONE, self.walk_failure)
                return self.current
            fresh_until, valid_until, marks = self.walked
            now = time.monotonic()
            until = valid_until if reuse_recent else fresh_until if reuse_fresh else 0
            if now < until and self.top_marks() == marks:
                return self.current
            self.walk_ended = threading.Condition(self.lock)
            known = self.current
        failure, current, walked = None, known, (0, 0, None)
        try:
            started, marks = time.monotonic(), self.top_marks()
            manifest = walk_paths(self.offered, self.compression != "zip", known[0])
            if manifest is not known[0]:
                current = self.adopt(manifest)
            walked = self.walk_times(started, time.monotonic(), marks)
        except WoofError as error:
            failure = str(error)
        finally:
            with self.lock:
                self.current, self.walked, self.walk_failure = current, walked, failure
                ended, self.walk_ended = self.walk_ended, None
                ended.notify_all()
        if failure:
            raise Unavailable(HTTPStatus.GONE, failure)
        return current

    @staticmethod
    def walk_times(started, finished, marks):
        """self.walked for a walk: until when a GET, and a HEAD, may take it; the marks."""
        reuse = max(WALK_REUSE_SECONDS, WALK_REUSE_FACTOR * (finished - started))
        return finished + WALK_REUSE_SECONDS, finished + reuse, marks

    def take_turn(self):
        """The semaphore of streams being compressed, once this one may join them.

        Raises Unavailable (503) when none frees up within ARCHIVE_TURN_WAIT.
        """
        if not self.turns.acquire(timeout=ARCHIVE_TURN_WAIT):
            raise Unavailable(HTTPStatus.SERVICE_UNAVAILABLE,
                              "too many archives are being made at once; try again soon",
                              RETRY_AFTER_SECONDS)
        return self.turns

    def open(self, sending_body=True, resuming=False):
        # A resumed download is checked against a walk of its own (or one
        # under way): the part it gets must join what it had, as it is now.
        manifest, layout = self.refresh(reuse_recent=not sending_body, reuse_fresh=not resuming)
        warnings = ArchiveWarnings(self.log)
        if layout is None:
            turn = self.take_turn() if sending_body else None
            return StreamedArchiveBody(manifest, self.compression, warnings, self.modules,
                                       self.zip64_from, turn, self.pool, self.read_ahead_pool)
        conflict = ("the folder changed since you got the first part, so resuming would "
                    "corrupt the archive; download it again from the start")
        on_close = None
        if not sending_body:
            self.yield_to_downloads()
        else:
            with self.lock:
                self.sending += 1
            on_close = self.body_closed
        if self.store:
            return StoredZipBody(manifest, layout, warnings, self.modules["zlib"], conflict,
                                 on_close, self.read_ahead_pool)
        return TarBody(manifest, layout, warnings, conflict, on_close, self.read_ahead_pool)

    def body_closed(self):
        with self.lock:
            self.sending -= 1

    def yield_to_downloads(self):
        """Let a download in flight run first (see HEAD_YIELD_SECONDS)."""
        if self.sending:
            time.sleep(HEAD_YIELD_SECONDS)


# ---------------------------------------------------------------------------
# Receiving: request bodies and the multipart reader
#
# A reader has readinto(view), which fills a writable buffer with the next
# bytes of a request body and returns their count, 0 once the body has all
# been read; it raises UploadRefused when the body is cut short, malformed
# or too large, and OSError when the connection fails.  Reading into one
# buffer again and again spares allocating (and faulting in) a new one for
# every megabyte.
# ---------------------------------------------------------------------------

class LengthReader:
    """A request body of a length given by Content-Length."""

    def __init__(self, stream, length):
        self.read_some = read_some_into(stream)
        self.length = length
        self.left = length

    @property
    def received(self):
        """Bytes of the body read so far."""
        return self.length - self.left

    def readinto(self, view):
        if self.left <= 0:
            return 0
        got = self.read_some(view[:min(len(view), self.left)])
        if not got:
            raise BodyCutOff(HTTPStatus.BAD_REQUEST, "the body ended after %s of %s"
                                % (format_size(self.length - self.left),
                                   format_size(self.length)))
        self.left -= got
        return got


class ChunkedReader:
    """A request body sent in chunks (RFC 7230, 4.1), decoded.

    With a `limit`, a body that grows beyond it is refused as soon as it does.
    """

    def __init__(self, stream, limit=None):
        self.stream = stream
        self.read_some = read_some_into(stream)
        self.limit = limit
        self.received = 0
        self.chunk_left = 0
        self.ended = False

    def readinto(self, view):
        # Gathering small chunks makes few writes; gathering large ones would
        # only hold the socket unread while the disk is written.
        filled = 0
        while filled < min(len(view), SMALL_WRITE_LIMIT) and not self.ended:
            if self.chunk_left == 0:
                self.chunk_left = self.next_chunk_size()
                if self.chunk_left == 0:
                    self.skip_trailers()
                    self.ended = True
                    break
            wanted = min(len(view) - filled, self.chunk_left)
            got = self.read_some(view[filled:filled + wanted])
            if not got:
                raise BodyCutOff(HTTPStatus.BAD_REQUEST, "the body ended inside a chunk")
            filled += got
            self.chunk_left -= got
            self.received += got
            if self.limit is not None and self.received > self.limit:
                raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                    "the upload is larger than %s" % format_size(self.limit))
            if self.chunk_left == 0 and self.stream.read(2) != b"\r\n":
                raise UploadRefused(HTTPStatus.BAD_REQUEST, "a chunk has no CRLF after it")
        return filled

    def read_line(self):
        line = self.stream.readline(MAX_CHUNK_LINE + 1)
        if not line.endswith(b"\n"):
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "a chunk line is cut off or too long")
        return line

    def next_chunk_size(self):
        # chunk-size [ chunk-ext ] CRLF; extensions carry nothing woof needs.
        digits = self.read_line().split(b";", 1)[0].strip()
        if not 0 < len(digits) <= 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "a chunk size is not hexadecimal")
        return int(digits, 16)

    def skip_trailers(self):
        for _ in range(MAX_TRAILER_LINES):
            if self.read_line() in (b"\r\n", b"\n"):
                return
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "too many trailer fields")


# ASCII digits only: str.isdigit() also takes "\u00b2", which int() refuses.
_CONTENT_LENGTH = re.compile(r"[0-9]{1,%d}\Z" % MAX_RANGE_DIGITS)


def declared_length(headers):
    """The body length a request's Content-Length gives, None without one.

    Raises ValueError when its lines disagree or one is not a number: the
    body's end is then unknown (RFC 9112, 6.3).
    """
    fields = headers.get_all("Content-Length")
    if not fields:
        return None
    values = {value.strip() for field in fields for value in field.split(",")}
    if len(values) > 1:
        raise ValueError("the request has two Content-Lengths")
    text = values.pop()
    if not _CONTENT_LENGTH.match(text):
        raise ValueError("the Content-Length is not a number")
    return int(text)


def transfer_codings(headers):
    """A request's transfer codings, lowercased, in order; None without any.

    All its Transfer-Encoding lines make one list (RFC 9112, 6.1; RFC 9110,
    5.3), so "chunked" and "gzip" on two lines read as on one; empty list
    elements are ignored (RFC 9110, 5.6.1.2).
    """
    lines = headers.get_all("Transfer-Encoding")
    if not lines:
        return None
    codings = [coding.strip().lower() for line in lines for coding in line.split(",")]
    return [coding for coding in codings if coding]


# A backslash before `"` or `\\` always pairs with it (RFC 7230, 3.2.6) and
# any other backslash stands alone: one way only to read each character, so
# an unclosed quote fails in linear time.  A backslash that could either
# pair or stand alone made the failure try every split of a run of
# backslashes, exponential, holding the interpreter lock meanwhile.
_PARAMETER = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\["\\]|\\(?!["\\]))*"|[^;]*)')
_QUOTED_PAIR = re.compile(r'\\(["\\])')


def header_parameters(value):
    """(value, {parameter: text}) of a header such as Content-Type (RFC 7231, 3.1.1.1).

    Parameter names are lower-cased.  A backslash escapes only `"` and `\\`
    so that Windows paths sent unescaped survive.  An extended parameter
    (name*, RFC 8187) is decoded and stored under its own name, star kept;
    one that cannot be decoded is left out.
    """
    main, _, rest = value.partition(";")
    parameters = {}
    for match in _PARAMETER.finditer(";" + rest):
        name, text = match.group(1).lower(), match.group(2).strip()
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            text = _QUOTED_PAIR.sub(r"\1", text[1:-1])
        if name.endswith("*"):
            text = decode_extended_value(text)
            if text is None:
                continue
        parameters.setdefault(name, text)
    return main.strip().lower(), parameters


def decode_extended_value(text):
    """The text of charset'language'percent-encoded (RFC 8187, 3.2), or None."""
    charset, quote, rest = text.partition("'")
    language, quote2, encoded = rest.partition("'")
    if not quote or not quote2 or charset.strip().lower() not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return urllib.parse.unquote_to_bytes(encoded).decode(charset.strip())
    except (UnicodeError, LookupError):
        return None


def form_file_name(parameters):
    """The file name of a form-data part, or None when the part is no file.

    filename* wins over filename (RFC 6266, 4.3).  Browsers write `"`, CR
    and LF in names as %22, %0D and %0A (HTML, 4.10.21.8); curl since 7.81
    does too; other clients escape `"` with a backslash instead.
    """
    if "filename*" in parameters:
        return parameters["filename*"]
    name = parameters.get("filename")
    if name is None:
        return None
    for escaped, char in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n")):
        name = name.replace(escaped, char)
    return name


def header_text(raw):
    """Header bytes as text: UTF-8 as browsers send it, else Latin-1 (RFC 7230, 3.2.4)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def form_boundary(content_type):
    """The boundary of a multipart/form-data Content-Type, as bytes; or None."""
    kind, parameters = header_parameters(content_type or "")
    boundary = parameters.get("boundary", "")
    if kind != "multipart/form-data" or not 0 < len(boundary) <= 70:
        return None
    try:
        return boundary.encode("ascii")
    except UnicodeError:
        return None


class FormPart(NamedTuple):
    """The headers of one part of a form: its field name and, for files, the file name."""

    field: str
    filename: Optional[str]


class MultipartReader:
    """The parts of a multipart/form-data body (RFC 7578; RFC 2046, 5.1), streamed.

    next_part() moves to the next part and returns its FormPart, or None
    after the closing delimiter; read() returns the next piece of the
    current part's content, empty at its end.  A piece is a memoryview of
    the reader's one buffer, valid until the next call: memory stays the
    same whatever the size of the parts.
    """

    def __init__(self, reader, boundary, read_size=COPY_BUFFER_SIZE):
        self.reader = reader
        self.read_size = read_size
        # Read as if the body began with CRLF, the first delimiter is like
        # all the others (RFC 2046, 5.1.1), and what comes before it (the
        # preamble) is the content of a part nobody asks for.
        self.delimiter = b"\r\n--" + boundary
        self.buffer = bytearray(read_size + MAX_PART_HEADER + 2 * len(self.delimiter) + 4)
        self.view = memoryview(self.buffer)
        self.view[:2] = b"\r\n"
        self.start, self.end = 0, 2
        self.in_part = True
        self.closed = False

    def fill(self):
        """Keep the unread bytes, moved to the front, and read more after them."""
        kept = self.end - self.start
        if self.start:
            self.view[:kept] = bytes(self.view[self.start:self.end])
            self.start, self.end = 0, kept
        got = self.reader.readinto(self.view[self.end:self.end + self.read_size])
        if not got:
            raise UploadRefused(HTTPStatus.BAD_REQUEST,
                                "the form data ended before its closing boundary")
        self.end += got

    def read(self):
        """The next piece of the current part's content; empty at its end."""
        while self.in_part:
            found = self.buffer.find(self.delimiter, self.start, self.end)
            if found >= 0:
                data = self.view[self.start:found]
                self.start = found + len(self.delimiter)
                self.in_part = False
                return data
            # Keep what could be the start of a delimiter split across reads.
            safe = self.end - (len(self.delimiter) - 1)
            if safe > self.start:
                data = self.view[self.start:safe]
                self.start = safe
                return data
            self.fill()
        return b""

    def next_part(self):
        """The FormPart of the next part, or None after the last one."""
        while self.read():
            pass
        if self.closed:
            return None
        while self.end - self.start < 2:
            self.fill()
        if self.buffer.startswith(b"--", self.start):
            self.closed = True
            return None
        part = self.read_part_headers()
        self.in_part = True
        return part

    def read_part_headers(self):
        while True:
            end = self.buffer.find(b"\r\n\r\n", self.start, self.end)
            if end >= 0:
                break
            if self.end - self.start > MAX_PART_HEADER:
                raise UploadRefused(HTTPStatus.BAD_REQUEST, "a part's headers are too long")
            self.fill()
        block = bytes(self.view[self.start:end])
        self.start = end + 4
        padding, _, lines = block.partition(b"\r\n")
        if padding.strip(b" \t"):
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "a boundary line has extra text")
        disposition = ""
        for line in lines.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == b"content-disposition":
                disposition = header_text(value)
        kind, parameters = header_parameters(disposition)
        if kind != "form-data":
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "a part is not form-data")
        return FormPart(parameters.get("name", ""), form_file_name(parameters))

    def drain_epilogue(self, limit=MAX_EPILOGUE):
        """Read what follows the closing delimiter; False if more than limit is left."""
        while limit > 0:
            got = self.reader.readinto(self.view[:min(self.read_size, limit)])
            if not got:
                return True
            limit -= got
        return False


# ---------------------------------------------------------------------------
# Receiving: safe names and safe saving
#
# A client names its files, but the names woof writes are its own: one
# component at a time, made safe, never an existing file or folder.  Data
# goes to hidden temporary files in the target folder, which get their
# final names only once the whole upload has arrived.
# ---------------------------------------------------------------------------

# Windows ignores spaces after a device name: "CON .txt" is the console.
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|conin\$|conout\$|com[0-9\u00b9\u00b2\u00b3]"
                               r"|lpt[0-9\u00b9\u00b2\u00b3]) *(\.|$)", re.I)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
# Characters that reorder text on screen, so that "gpj.exe" can pose as
# "exe.jpg" (Unicode TR 36, 2.1): they never help a file name.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def split_extension(name):
    """(stem, extension) of a name; long or leading-dot 'extensions' are part of the stem."""
    stem, extension = os.path.splitext(name)
    if len(extension.encode("utf-8")) > MAX_EXTENSION_BYTES:
        return name, ""
    return stem, extension


def fit_name(stem, ending=""):
    """stem + ending, the stem cut at a character so the whole fits MAX_NAME_BYTES."""
    room = MAX_NAME_BYTES - len(ending.encode("utf-8"))
    return stem.encode("utf-8")[:max(room, 0)].decode("utf-8", "ignore") + ending


def numbered_name(name, number, keep_extension=True):
    """The number-th other name to try when `name` is taken: 'name (1).ext'."""
    stem, extension = split_extension(name) if keep_extension else (name, "")
    return fit_name(stem, " (%d)%s" % (number, extension))


def encodable(char, encoding):
    try:
        char.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def windows_safe(name):
    """A name without what Windows refuses or silently changes."""
    name = _WINDOWS_FORBIDDEN.sub("_", name).rstrip(" .")
    return "_" + name if _WINDOWS_RESERVED.match(name) else name


def safe_name(name, top_level=True, windows=None, encoding=None):
    """One path component a client sent, made safe to create here; unicode is kept.

    Controls, NUL, bidi controls, unpaired surrogates and characters the
    file-system encoding (by default sys.getfilesystemencoding()) cannot
    write become "_"; empty, "." and ".." become UNNAMED_UPLOAD; a hidden
    name in the target folder itself gets a "_" in front, so no upload can
    become a dotfile there (~/.profile); the name is cut to MAX_NAME_BYTES
    keeping its extension.  With windows=True, characters and device names
    Windows refuses are avoided as well.
    """
    # Under LC_ALL=C, Python 3.6 encodes file names as ASCII: "caf\u00e9.txt"
    # would fail only once the upload is complete.
    encoding = encoding or sys.getfilesystemencoding()
    windows = WINDOWS_FILE_NAMES if windows is None else windows
    name = "".join("_" if unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_CONTROLS
                   or not encodable(char, encoding) else char for char in name).strip()
    if windows:
        name = windows_safe(name)
    if name in ("", ".", ".."):
        name = UNNAMED_UPLOAD
    if top_level and name.startswith("."):
        name = "_" + name
    stem, extension = split_extension(name)
    name = fit_name(stem, extension)
    if windows:
        # The cut can leave a space or dot at the end, which Windows drops.
        name = windows_safe(name)
    return name or UNNAMED_UPLOAD


def upload_path(client_name, windows=None):
    """The safe path components under which to save what a client named client_name.

    A clean relative path, as a folder upload sends ("photos/2024/a.jpg"),
    keeps its folders; any other path ("../../x", "/etc/passwd", "C:\\x"),
    or one too deep or too long to create, is reduced to its last component.
    """
    parts = client_name.split("/")
    clean = ("\\" not in client_name and len(parts) <= MAX_UPLOAD_DEPTH
             and len(client_name.encode("utf-8", "replace")) <= MAX_UPLOAD_PATH_BYTES
             and all(part.strip() not in ("", ".", "..") for part in parts))
    if not clean:
        parts = [re.split(r"[/\\]", client_name)[-1]]
    return [safe_name(part, index == 0, windows) for index, part in enumerate(parts)]


def storage_error(error):
    """The UploadRefused for an OSError met while writing to disk."""
    if error.errno in DISK_FULL_ERRNOS:
        return UploadRefused(HTTPStatus.INSUFFICIENT_STORAGE,
                             "no space left for the upload: %s" % (error.strerror or error))
    return UploadRefused(HTTPStatus.INTERNAL_SERVER_ERROR,
                         "cannot save the upload: %s" % (error.strerror or error))


def check_free_space(folder, length):
    """Refuse (507) a body of `length` bytes that cannot fit in folder's file system."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: writing will tell
    if length > free:
        raise UploadRefused(HTTPStatus.INSUFFICIENT_STORAGE,
                            "the upload needs %s but only %s is free"
                            % (format_size(length), format_size(free)))


def create_temporary(folder):
    """A new hidden, empty file in folder, created exclusively: (path, open file)."""
    for _ in range(MAX_NAME_TRIES):
        name = TEMPORARY_PREFIX + os.urandom(8).hex() + TEMPORARY_SUFFIX
        path = os.path.join(folder, name)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o666)
        except FileExistsError:
            continue
        return path, open(descriptor, "wb", buffering=0)
    raise WoofError("cannot create a temporary file in %s" % printable_name(folder))


def check_writable_folder(folder):
    """Raise WoofError unless uploads can be saved in folder."""
    if os.path.isfile(folder):
        raise WoofError("%s is not a folder: -U receives files into a folder; to send a "
                        "file to another woof, run woof.py URL FILE" % printable_name(folder))
    if not os.path.isdir(folder):
        raise WoofError("%s is not a folder" % printable_name(folder))
    try:
        path, handle = create_temporary(folder)
        handle.close()
        os.unlink(path)
    except OSError as error:
        raise WoofError("cannot save files in %s: %s"
                        % (printable_name(folder), error.strerror or error))


def write_fully(handle, data):
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


def remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone, or still open on Windows: nothing better to do


def claim_name(temporary, target):
    """Move a complete temporary file to target, unless target exists (FileExistsError).

    Any other error (the temporary file gone, the disk full) is raised
    with nothing left under target.
    """
    try:
        os.link(temporary, target)
    except (AttributeError, NotImplementedError):
        pass
    except OSError as error:
        if error.errno not in NO_HARD_LINK_ERRNOS:
            raise
    else:
        remove_quietly(temporary)
        return
    # Without hard links, claim the name with an exclusive empty file, then
    # move the data over it.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o666))
    try:
        os.replace(temporary, target)
    except BaseException:
        remove_quietly(target)
        raise


def link_unique(temporary, folder, name, next_numbers=None):
    """Give a temporary file a final name in folder that no file had; return that name.

    next_numbers, a dict kept across the files of one upload, remembers
    where to resume for each (folder, name): trying name, name (1), ...
    afresh for every file would make n files of one name cost n * n / 2.
    """
    if next_numbers is None:
        next_numbers = {}
    first = next_numbers.get((folder, name), 0)
    for number in range(first, first + MAX_NAME_TRIES):
        candidate = numbered_name(name, number) if number else name
        try:
            claim_name(temporary, os.path.join(folder, candidate))
        except FileExistsError:
            continue
        next_numbers[(folder, name)] = number + 1
        return candidate
    raise UploadRefused(HTTPStatus.CONFLICT, "too many files are named %s" % name)


def make_unique_folder(parent, name):
    """Create a new folder in parent, never entering an existing one; return its name."""
    for number in range(MAX_NAME_TRIES):
        candidate = numbered_name(name, number, keep_extension=False) if number else name
        try:
            os.mkdir(os.path.join(parent, candidate))
        except FileExistsError:
            continue
        return candidate
    raise UploadRefused(HTTPStatus.CONFLICT, "too many folders are named %s" % name)


def unmake(created):
    """Remove files and folders woof made, last made first: (path, is_folder) pairs."""
    for path, is_folder in reversed(created):
        try:
            if is_folder:
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # nothing better to do; the error being raised says what failed


class SavedFile(NamedTuple):
    """One file of an upload, under the name woof gave it (relative, with "/")."""

    name: str
    size: int
    seconds: float
    sha256: str = ""  # in hex


class UploadBatch:
    """The files of one upload, kept as hidden temporaries until all have arrived.

    Nothing appears under a final name before publish(); discard() removes
    the temporaries, so a failed upload leaves nothing behind.  Folders of
    a folder upload are created afresh for each upload ("photos (1)" when
    "photos" exists), so no file is ever written through an existing folder
    or symbolic link.
    """

    def __init__(self, folder, max_files=None):
        self.folder = folder
        self.max_files = MAX_UPLOAD_FILES if max_files is None else max_files
        self.received = []  # (temporary path, client's name, size, seconds, SHA-256)
        self.temporaries = {}  # path: its open file (Windows removes none open), or None
        self.discarded = False
        self.lock = threading.Lock()

    def receive(self, client_name, read):
        """Save the pieces read() returns until an empty one; return the size.

        An unnamed, empty file is what browsers send for a file input left
        empty (HTML, 4.10.21.8): it is dropped, and None returned.
        """
        with self.lock:
            # Created and noted under the lock, so discard() from another
            # thread cannot miss a file created just as woof stops.
            if self.discarded:
                raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof is stopping")
            if len(self.received) >= self.max_files:
                raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                    "an upload may hold at most %d files" % self.max_files)
            try:
                path, handle = create_temporary(self.folder)
            except OSError as error:
                raise storage_error(error)
            self.temporaries[path] = handle
        started = time.monotonic()
        size = 0
        digest = hashlib.sha256()
        try:
            with handle:
                while True:
                    data = read()
                    if not data:
                        break
                    digest.update(data)
                    try:
                        write_fully(handle, data)
                    except OSError as error:
                        raise storage_error(error)
                    except ValueError:  # closed by discard()
                        raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof is stopping")
                    size += len(data)
        except BaseException:
            self.forget(path)
            raise
        if size == 0 and not client_name:
            self.forget(path)
            return None
        self.received.append((path, client_name, size, time.monotonic() - started,
                              digest.hexdigest()))
        return size

    def forget(self, path):
        remove_quietly(path)
        with self.lock:
            self.temporaries.pop(path, None)

    def adopt(self, path, client_name, size, seconds, sha256):
        """Take a temporary written elsewhere (a resumable upload) as received."""
        with self.lock:
            self.temporaries[path] = None  # closed already
        self.received.append((path, client_name, size, seconds, sha256))

    def publish(self, folders=None):
        """Give every file received its final name; return the SavedFile list.

        All or nothing: when one file cannot be named, the files and folders
        named before it are removed again, and the error raised.  `folders`
        keeps the folders made across batches that are one upload (see
        name_all).
        """
        created = []  # (path, is_folder), in the order made
        try:
            saved = self.name_all(created, folders)
        except OSError as error:
            unmake(created)
            raise storage_error(error)
        except BaseException:
            unmake(created)
            raise
        self.received = []
        return saved

    def name_all(self, created, folders=None):
        """Name every file received; `folders` maps the folders made to (path, shown)."""
        folders = {} if folders is None else folders
        next_numbers = {}
        saved = []
        for path, client_name, size, seconds, sha256 in self.received:
            parts = upload_path(client_name)
            parent, shown = self.make_folders(parts[:-1], folders, created)
            final = link_unique(path, parent, parts[-1], next_numbers)
            created.append((os.path.join(parent, final), False))
            with self.lock:
                self.temporaries.pop(path, None)
            saved.append(SavedFile("/".join(shown + [final]), size, seconds, sha256))
        return saved

    def make_folders(self, parts, folders, created):
        """(path, shown parts) of the folder for safe components `parts`, each
        made afresh the first time this batch needs it."""
        parent, shown = self.folder, []
        for depth in range(len(parts)):
            key = tuple(parts[:depth + 1])
            if key not in folders:
                made = make_unique_folder(parent, parts[depth])
                created.append((os.path.join(parent, made), True))
                folders[key] = (os.path.join(parent, made), shown + [made])
            parent, shown = folders[key]
        return parent, shown

    def discard(self):
        """Remove every temporary file left (from any thread)."""
        with self.lock:
            left, self.temporaries = self.temporaries, {}
            self.discarded = True
        for path, handle in left.items():
            if handle is not None:
                handle.close()  # first: Windows removes no file that is still open
            remove_quietly(path)


# ---------------------------------------------------------------------------
# Receiving: resumable uploads
#
# A file can arrive in as many requests as the network needs: it gets an
# upload resource of its own (draft-ietf-httpbis-resumable-upload), whose
# URL holds an unguessable token, and what arrives is written to a hidden
# temporary at once, so a cut loses only what was still on its way.  The
# file is published, under a name of woof's making, only once all of it is
# there and, when the client told its SHA-256, that checks out.  Files the
# upload page sends apart are told to belong to one Send by a batch id: the
# Send counts as one upload when its last file is published.
# ---------------------------------------------------------------------------

# Unfinished uploads kept at once, in all and from one address; one that
# nobody appended to for PARTIAL_LIFETIME is removed, and when an address
# starts more, its least recently used one goes first.
MAX_PARTIALS = 256
MAX_PARTIALS_PER_CLIENT = 64
PARTIAL_LIFETIME = 3600
# Sends the page announced and not yet finished, in all and from one
# client, and finished uploads remembered so that a client whose last
# answer was lost, or a page reloaded mid-Send, learns the outcome.
MAX_OPEN_BATCHES = 256
MAX_OPEN_BATCHES_PER_CLIENT = 16
MAX_FINISHED_UPLOADS = 1024
# A request that finds another still appending to the same upload stops
# it, then waits this long for its last bytes to be written.
TAKE_OVER_SECONDS = 10.0
# Where upload resources live, below the base path, and their tokens' size.
UPLOAD_RESOURCE_PATH = ".uploads/"
UPLOAD_TOKEN_BYTES = 16


class PartialUpload:
    """One file being received, possibly over several requests.

    `offset` counts the bytes written to the temporary and hashed, in
    order; the SHA-256 object is the state of that hash.  Appending holds
    `appending`; `appender` is the handler of the request doing it, so that
    a client that reconnects can stop a request its network left hanging.
    """

    def __init__(self, key, name, length, batch, host, path):
        self.key = key
        self.name = name
        self.length = length       # the size the client declared, or None yet
        self.batch = batch         # the PageBatch it belongs to, or None
        self.host = host
        self.path = path           # the hidden temporary
        self.offset = 0
        self.saved = None          # the SavedFile, once published
        self.removed = False
        self.digest = hashlib.sha256()
        self.started = time.monotonic()
        self.touched = self.started
        self.appending = threading.Lock()
        self.appender = None

    def idle_for(self, now):
        return now - self.touched

    def take_over(self, handler):
        """Become the one request (handler) working on this upload; False when
        another one would not let go in time.

        A client that lost its connection retries while woof may still wait
        on the old one: stopping the old request is what the draft advises
        (section on concurrency), and it gives up only the bytes not yet
        received.
        """
        if self.appending.acquire(blocking=False):
            self.appender = handler
            return True
        old = self.appender
        if old is not None:
            old.stop_reading()
        if not self.appending.acquire(timeout=TAKE_OVER_SECONDS):
            return False
        self.appender = handler
        return True

    def let_go(self):
        self.appender = None
        self.touched = time.monotonic()
        self.appending.release()

    def append(self, read, limit, past_limit):
        """Write what read() returns, until an empty piece, to the temporary;
        at most `limit` bytes more (past_limit, an UploadRefused, is raised
        past it).  Every byte written counts, even when the request breaks
        off after it."""
        try:
            handle = open(self.path, "r+b", buffering=0)
        except OSError as error:
            raise storage_error(error)
        with handle:
            handle.seek(self.offset)
            handle.truncate()  # bytes of a write that failed half-way
            while True:
                data = read()
                if not data:
                    return
                if len(data) > limit:
                    raise past_limit
                try:
                    write_fully(handle, data)
                except OSError as error:
                    raise storage_error(error)
                self.digest.update(data)
                self.offset += len(data)
                self.touched = time.monotonic()
                limit -= len(data)


class PageBatch:
    """The files one Send of the upload page sends apart: one upload.

    Folders are made once for the whole Send, as for a form post.
    """

    def __init__(self, host, files):
        self.host = host
        self.files = files
        self.folders = {}
        self.saved = []
        self.touched = time.monotonic()


class ResumableUploads:
    """The unfinished uploads of one server, and the Sends they belong to.

    Everything here is guarded by self.lock; a PartialUpload's bytes are
    written only by the request holding its `appending` lock.
    """

    def __init__(self, folder, group=None):
        self.folder = folder
        # Who a host is, as far as the bounds go (an IPv6 /64 is one machine's).
        self.group = group or (lambda host: host)
        self.lock = threading.Lock()
        self.partials = {}   # SHA-256 of the token -> PartialUpload
        self.finished = collections.OrderedDict()  # the same, once published
        self.batches = {}    # batch id -> PageBatch
        self.closed = False

    @staticmethod
    def key_of(token):
        # Looked up by a digest of the token, so that a lookup's timing
        # tells nothing about the tokens held.
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def create(self, host, name, length, batch_id=None, batch_files=None):
        """A new PartialUpload and its token; UploadRefused when it cannot be
        kept.  `length` has been checked against --max-upload already."""
        token = secrets.token_urlsafe(UPLOAD_TOKEN_BYTES)
        key = self.key_of(token)
        with self.lock:
            if self.closed:
                raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof is stopping")
            removed = self.make_room(host)
            batch = self.join_batch(host, batch_id, batch_files)
            # Only this upload's own size: promises of others are no reservation
            # (one client could hold all the space), and a disk that fills
            # meanwhile gives 507 when it does.
            check_free_space(self.folder, length or 0)
            try:
                path, handle = create_temporary(self.folder)
            except OSError as error:
                raise storage_error(error)
            handle.close()
            partial = PartialUpload(key, name, length, batch, host, path)
            self.partials[key] = partial
        for old in removed:
            remove_quietly(old.path)
        return token, partial

    def find(self, token):
        """The unfinished upload a token names, or None."""
        key = self.key_of(token)
        with self.lock:
            partial = self.partials.get(key)
            if partial is not None and partial.idle_for(time.monotonic()) > PARTIAL_LIFETIME \
                    and not partial.appending.locked():
                self.forget(partial)
                remove_quietly(partial.path)
                return None
            return partial or self.finished.get(key)

    def make_room(self, host):
        """Forget uploads left too long, and make a place when they run out
        (lock held): one of this client's own when it holds its share, else
        one that has no byte yet or was left a while.  Returns those
        forgotten, whose files the caller removes; UploadRefused when no
        place can be made."""
        now = time.monotonic()
        removed = [partial for partial in self.partials.values()
                   if partial.idle_for(now) > PARTIAL_LIFETIME and not partial.appending.locked()]
        for partial in removed:
            self.forget(partial)
        group = self.group(host)
        mine = [partial for partial in self.partials.values() if self.group(partial.host) == group]
        if len(mine) >= MAX_PARTIALS_PER_CLIENT:
            candidates = mine
        elif len(self.partials) >= MAX_PARTIALS:
            candidates = [partial for partial in self.partials.values()
                          if partial.offset == 0 or partial.idle_for(now) > PARTIAL_LIFETIME / 6]
        else:
            return removed
        idle = [partial for partial in candidates if not partial.appending.locked()]
        if not idle:
            raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE,
                                "too many uploads are unfinished; try again later")
        oldest = min(idle, key=lambda partial: (partial.offset > 0, partial.touched))
        self.forget(oldest)
        removed.append(oldest)
        return removed

    def join_batch(self, host, batch_id, files):
        """The PageBatch of batch_id, made on its first file (lock held).

        A Send belongs to the client that began it; each client keeps at
        most MAX_OPEN_BATCHES_PER_CLIENT open, and a Send another client
        pushed out of the table could never be counted, so none is: when the
        table is full, only a Send with no file saved and none on its way
        gives way.
        """
        if batch_id is None:
            return None
        group = self.group(host)
        batch = self.batches.get(batch_id)
        if batch is not None and self.group(batch.host) != group:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "that Send belongs to another client")
        if batch is None:
            mine = [known for known, value in self.batches.items()
                    if self.group(value.host) == group]
            if len(mine) >= MAX_OPEN_BATCHES_PER_CLIENT:
                del self.batches[min(mine, key=lambda known: self.batches[known].touched)]
            elif len(self.batches) >= MAX_OPEN_BATCHES:
                busy = {partial.batch for partial in self.partials.values()}
                empty = [known for known, value in self.batches.items()
                         if not value.saved and value not in busy]
                if not empty:
                    raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE,
                                        "too many Sends are unfinished; try again later")
                del self.batches[min(empty, key=lambda known: self.batches[known].touched)]
            batch = self.batches[batch_id] = PageBatch(host, files)
        batch.touched = time.monotonic()
        return batch

    def forget(self, partial):
        """Drop partial from the table (lock held); its file is the caller's to remove."""
        partial.removed = True
        self.partials.pop(partial.key, None)

    def cancel(self, partial):
        """Remove an unfinished upload and its bytes (its appending lock held)."""
        with self.lock:
            self.forget(partial)
        remove_quietly(partial.path)

    def publish(self, partial, sha256):
        """Give a complete upload its final name (its appending lock held).

        Returns (SavedFile, the Send's files when this completed a Send or
        was no part of one, else None).
        """
        seconds = time.monotonic() - partial.started
        batch = partial.batch
        saving = UploadBatch(self.folder)
        saving.adopt(partial.path, partial.name, partial.offset, seconds, sha256)
        with self.lock:
            if partial.removed:
                raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof is stopping")
            folders = batch.folders if batch is not None else {}
            made_before = dict(folders)
            try:
                saved = saving.publish(folders)[0]
            except BaseException:
                folders.clear()
                folders.update(made_before)
                raise
            self.partials.pop(partial.key, None)
            partial.saved = saved
            self.finished[partial.key] = partial
            while len(self.finished) > MAX_FINISHED_UPLOADS:
                self.finished.popitem(last=False)
            if batch is None:
                return saved, [saved]
            batch.saved.append(saved)
            batch.touched = time.monotonic()
            if len(batch.saved) < batch.files:
                return saved, None
            for known, value in list(self.batches.items()):
                if value is batch:
                    del self.batches[known]
            return saved, batch.saved

    def discard(self):
        """Remove every unfinished upload's file: woof is stopping.  A request
        still appending finds its upload gone and ends."""
        with self.lock:
            self.closed = True
            left, self.partials = list(self.partials.values()), {}
        for partial in left:
            partial.removed = True
            remove_quietly(partial.path)


# ---------------------------------------------------------------------------
# Terminal: progress
#
# What the person running woof sees of each transfer: a line when it
# starts, then, on a terminal, a live line redrawn in place while it runs,
# and the request's log line once it ends.  The threads that transfer only
# count bytes, as they do anyway (ResponseSink.sent, a reader's received);
# one ticker thread reads those counts and draws, so that showing progress
# costs the transfers nothing.
# ---------------------------------------------------------------------------

PROGRESS_INTERVAL = 0.1          # seconds between redraws of the live lines
SPEED_WINDOW = 5.0               # seconds of samples the speed is measured over
MAX_LIVE_LINES = 8               # transfers shown live; the others are counted
NO_CONTACT_HINT_SECONDS = 30     # nobody connected by then: say what to check
MAX_NAMED_HOSTS = 4              # clients named in the line woof ends with


def people(hosts, most=MAX_NAMED_HOSTS):
    """Client addresses in a sentence: "A", "A and B", "A, B and 3 others"."""
    named = list(hosts[:most])
    if len(hosts) > most:
        named.append("%d others" % (len(hosts) - most))
    if len(named) == 1:
        return named[0]
    return "%s and %s" % (", ".join(named[:-1]), named[-1])


def format_elapsed(seconds):
    """A time for people, as a clock would round it: 0.4 s, 12 s, 2 min 05 s, 1 h 02 min."""
    if seconds < 10:
        return "%.1f s" % seconds
    whole = int(round(seconds))
    if whole < 60:
        return "%d s" % whole
    if whole < 3600:
        return "%d min %02d s" % divmod(whole, 60)
    return "%d h %02d min" % (whole // 3600, whole % 3600 // 60)


def format_rate(size, seconds):
    """An average speed: 5.0 MiB/s."""
    return "%s/s" % format_size(int(size / seconds)) if seconds > 0 else "instantly"


def char_width(char):
    """The columns a character takes on a terminal: two for wide East Asian
    characters (UAX #11), none for combining marks."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def display_width(text):
    return sum(char_width(char) for char in text)


def clipped(text, width):
    """text cut at its end to take at most `width` columns."""
    used = 0
    for index, char in enumerate(text):
        used += char_width(char)
        if used > width:
            return text[:index]
    return text


def shortened(text, width):
    """text cut in its middle with "..." to take at most `width` columns,
    keeping its end, where a file name's extension is."""
    widths = [char_width(char) for char in text]
    if sum(widths) <= width:
        return text
    marker = "..." if width >= 5 else ""
    room = max(width - len(marker), 0)
    tail_start, used = len(text), 0
    while marker and used + widths[tail_start - 1] <= room // 2:
        tail_start -= 1
        used += widths[tail_start]
    head_end = 0
    while head_end < tail_start and used + widths[head_end] <= room:
        used += widths[head_end]
        head_end += 1
    return text[:head_end] + marker + text[tail_start:]


def live_figures(done, size, speed):
    """What a live line says of a transfer: "1.2 GiB of 2.0 GiB", "60%",
    "5.0 MiB/s", "2 min 43 s left"; size None when unknown, speed None
    before there is one to tell."""
    figures = [format_size(done)]
    if size is not None:
        figures[0] += " of %s" % format_size(size)
        figures.append("%d%%" % (100 * min(done, size) // size if size else 100))
    if speed is not None:
        figures.append("%s/s" % format_size(int(speed)))
        if size is not None and speed > 0 and done < size:
            figures.append("%s left" % format_elapsed((size - done) / speed))
    return figures


class Transfer:
    """One download or upload in progress, as the progress display sees it.

    count_bytes() tells the bytes done so far; it only reads a counter that
    the transfer's own thread keeps.  `samples` belong to the ticker alone.
    """

    def __init__(self, who, name, size, count_bytes, receiving):
        self.who = who
        self.name = name          # an upload's changes as its files arrive
        self.size = size          # None when not known in advance
        self.count_bytes = count_bytes
        self.receiving = receiving
        self.started = time.monotonic()
        self.samples = []         # (time, bytes done), the last SPEED_WINDOW seconds

    def summary(self):
        """Bytes, time and average speed: "2.0 GiB in 6 min 50 s (5.0 MiB/s)"."""
        done = self.count_bytes()
        seconds = time.monotonic() - self.started
        return "%s in %s (%s)" % (format_size(done), format_elapsed(seconds),
                                  format_rate(done, seconds))

    def speed(self, now, done):
        """Bytes per second over the last SPEED_WINDOW seconds, or None at the very start."""
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= SPEED_WINDOW:
            del self.samples[0]
        first_time, first_done = self.samples[0]
        if len(self.samples) < 2:
            first_time, first_done = self.started, 0
        if now - first_time < PROGRESS_INTERVAL:
            return None
        return (done - first_done) / (now - first_time)

    def live_line(self, now, columns):
        """The live line: who, name, bytes done of all, percentage, speed, time left."""
        done = self.count_bytes()
        who = "  %s %s  " % ("from" if self.receiving else "to", self.who)
        numbers = "  " + "  ".join(live_figures(done, self.size, self.speed(now, done)))
        room = columns - 1 - display_width(who) - display_width(numbers)
        # A line wider than the terminal would wrap, and the next redraw
        # would then erase one line too few.
        return clipped(who + shortened(printable_name(self.name), room) + numbers, columns - 1)


class Progress:
    """The transfers in flight: a line when one starts and, on a terminal,
    their live lines, drawn by a ticker thread of its own (start, stop)."""

    def __init__(self, log):
        self.log = log
        self.lock = threading.Lock()
        self.transfers = []
        self.stopped = threading.Event()
        self.ticker = None
        self.started = time.monotonic()
        self.first_contact = None  # when the first client connected
        self.hint = None
        self.hint_after = NO_CONTACT_HINT_SECONDS

    def contacted(self):
        """Note that a client connected."""
        if self.first_contact is None:
            self.first_contact = time.monotonic()

    def begin(self, who, what, name, size, count_bytes, receiving=False):
        """Log `who what` and show a transfer of `size` bytes (None: unknown) until end()."""
        transfer = Transfer(who, name, size, count_bytes, receiving)
        with self.lock:
            self.transfers.append(transfer)
        self.log.info("%s %s" % (who, what))
        return transfer

    def end(self, transfer):
        with self.lock:
            if transfer in self.transfers:
                self.transfers.remove(transfer)

    def running(self):
        """How many transfers are in flight."""
        with self.lock:
            return len(self.transfers)

    def in_flight(self):
        """The transfers in flight, oldest first."""
        with self.lock:
            return list(self.transfers)

    def start(self, hint=None):
        """Start drawing, on a terminal only; `hint` is said once if nobody
        has connected `hint_after` seconds after the start."""
        if not self.log.live or self.ticker is not None:
            return
        self.hint = hint
        self.ticker = threading.Thread(target=self.tick, name="woof progress")
        self.ticker.daemon = True
        self.ticker.start()

    def stop(self):
        """Stop drawing and erase the live lines."""
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join(PROGRESS_INTERVAL * 10)
        self.log.show_live([])

    def tick(self):
        while not self.stopped.wait(PROGRESS_INTERVAL):
            now = time.monotonic()
            if self.hint and self.first_contact is None \
                    and now - self.started >= self.hint_after:
                self.log.info(self.hint)
                self.hint = None
            self.draw(now)

    def draw(self, now):
        columns = self.log.columns()
        with self.lock:
            shown = self.transfers[:MAX_LIVE_LINES]
            hidden = len(self.transfers) - len(shown)
        lines = [transfer.live_line(now, columns) for transfer in shown]
        if hidden:
            lines.append("  and %d more" % hidden)
        self.log.show_live(lines)


# ---------------------------------------------------------------------------
# Terminal: QR code
#
# The URL as a QR code (ISO/IEC 18004:2015, whose clauses are cited below)
# for a phone to read off the terminal: byte mode, error correction level
# M, the smallest version that holds the data, the mask with the fewest
# penalty points.
# ---------------------------------------------------------------------------

# Level M for versions 1 to 40 (Table 9): error correction codewords in
# each block, and the number of blocks.  The data codewords are shared out
# as evenly as possible, the blocks one codeword longer coming last.
QR_EC_PER_BLOCK = (10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28,
                   26, 26, 26, 26) + (28,) * 19
QR_BLOCKS = (1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
             17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49)
QR_MAX_VERSION = 40
QR_BYTE_MODE = 0b0100              # mode indicator (7.4.1, Table 2)
QR_PAD_CODEWORDS = (0xEC, 0x11)    # fill the data capacity, alternately (7.4.10)
QR_LEVEL_M = 0b00                  # the level's bits in the format information (Table 12)
QR_FORMAT_GENERATOR = 0b10100110111        # BCH (15, 5) code (7.9.1, Annex C)
QR_FORMAT_XOR = 0b101010000010010          # no format information is all light (7.9.1)
QR_VERSION_GENERATOR = 0b1111100100101     # BCH (18, 6) code (7.10, Annex D)
QR_FIELD_POLYNOMIAL = 0x11D        # x^8 + x^4 + x^3 + x^2 + 1, for GF(256) (7.5.2)
QR_QUIET_ZONE = 4                  # light modules around the symbol (6.3.8)

# The data masks (7.8.2, Table 10): whether the module at row i, column j
# of the encoding region is inverted.
QR_MASKS = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: i * j % 2 + i * j % 3 == 0,
    lambda i, j: (i * j % 2 + i * j % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + i * j % 3) % 2 == 0,
)

# Penalty rules 1 and 3 (7.8.3.1, Table 11) read rows and columns as
# bytes of b"0" (light) and b"1" (dark).
QR_SAME_COLOUR_RUN = re.compile(rb"0{5,}|1{5,}")
QR_FINDER_LIKE = re.compile(rb"(?=1011101)")
QR_DARK, QR_LIGHT = ord("1"), ord("0")

# Upper and lower module of a text cell, dark or not: the glyph that draws it.
QR_HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580",
                  (False, True): "\u2584", (True, True): "\u2588"}
# Black on white, whatever the terminal's own colours (ECMA-48 SGR).
QR_BLACK_ON_WHITE = "\x1b[30;47m"
QR_COLOUR_RESET = "\x1b[0m"


def qr_field_tables():
    """(exponents, logarithms) of the generator 2 in GF(256) (7.5.2)."""
    exponents, logarithms = [0] * 255, [0] * 256
    value = 1
    for power in range(255):
        exponents[power] = value
        logarithms[value] = power
        value <<= 1
        if value & 0x100:
            value ^= QR_FIELD_POLYNOMIAL
    return tuple(exponents), tuple(logarithms)


QR_EXPONENTS, QR_LOGARITHMS = qr_field_tables()


def qr_multiply(a, b):
    if a == 0 or b == 0:
        return 0
    return QR_EXPONENTS[(QR_LOGARITHMS[a] + QR_LOGARITHMS[b]) % 255]


def qr_generator_polynomial(degree):
    """Coefficients, highest power first, of (x - 2^0)(x - 2^1)...(x - 2^(degree-1)) (Annex A)."""
    polynomial = [1]
    for power in range(degree):
        root = QR_EXPONENTS[power]
        product = polynomial + [0]
        for index, coefficient in enumerate(polynomial):
            product[index + 1] ^= qr_multiply(coefficient, root)
        polynomial = product
    return polynomial


def qr_error_correction(block, count):
    """The count error correction codewords of a block: the remainder of
    block(x) * x^count divided by the generator polynomial (7.5.2)."""
    generator = qr_generator_polynomial(count)[1:]
    remainder = [0] * count
    for codeword in block:
        factor = codeword ^ remainder.pop(0)
        remainder.append(0)
        if factor:
            for index, coefficient in enumerate(generator):
                remainder[index] ^= qr_multiply(coefficient, factor)
    return bytes(remainder)


def qr_bch_code(value, generator):
    """value followed by the remainder of its polynomial divided by generator's."""
    degree = generator.bit_length() - 1
    remainder = value << degree
    for shift in range(value.bit_length() - 1, -1, -1):
        if remainder >> (shift + degree) & 1:
            remainder ^= generator << shift
    return value << degree | remainder


def qr_format_bits(mask):
    """The 15 bits of format information for level M and a mask (7.9.1)."""
    return qr_bch_code(QR_LEVEL_M << 3 | mask, QR_FORMAT_GENERATOR) ^ QR_FORMAT_XOR


def qr_size(version):
    return 17 + 4 * version


def qr_alignment_centres(version):
    """The rows (and columns) of alignment pattern centres (6.3.6, Annex E).

    They step back from the far side (size - 7) towards 6 by the smallest
    even step that leaves the gap next to 6 no wider than the others;
    Table E.1 steps version 32 by 26 all the same, leaving a gap of 28.
    """
    if version == 1:
        return ()
    count = version // 7 + 2
    last = qr_size(version) - 7
    half_step = -(-(last - 6) // (2 * (count - 1)))
    step = 26 if version == 32 else 2 * half_step
    return (6,) + tuple(last - step * index for index in range(count - 2, -1, -1))


def qr_data_modules(version):
    """How many modules carry codewords: all but the function patterns (6.3).

    Each finder with its separator takes 64 modules, the format information
    and the dark module 31, the version information 36 (version 7 up);
    alignment patterns on the timing patterns share 5 modules with them.
    """
    size = qr_size(version)
    centres = len(qr_alignment_centres(version))
    alignment = 25 * max(centres * centres - 3, 0) - 10 * max(centres - 2, 0)
    version_information = 36 if version >= 7 else 0
    return (size * size - 3 * 64 - 31 - 2 * (size - 16) - alignment
            - version_information)


def qr_data_capacity(version):
    """How many data codewords a level M symbol of this version holds."""
    index = version - 1
    return qr_data_modules(version) // 8 - QR_BLOCKS[index] * QR_EC_PER_BLOCK[index]


def qr_count_bits(version):
    """Length of the byte mode character count indicator (Table 3)."""
    return 8 if version < 10 else 16


def qr_header_bits(version, length):
    """Bits of the mode indicator, character count and length bytes (7.4.4)."""
    return 4 + qr_count_bits(version) + 8 * length


def qr_version(length):
    """The smallest version whose level M symbol holds length bytes."""
    for version in range(1, QR_MAX_VERSION + 1):
        if qr_header_bits(version, length) <= 8 * qr_data_capacity(version):
            return version
    most = (8 * qr_data_capacity(QR_MAX_VERSION) - qr_header_bits(QR_MAX_VERSION, 0)) // 8
    raise WoofError("the URL is too long for a QR code (%d bytes; at most %d)"
                    % (length, most))


def qr_data_codewords(data, version):
    """Mode, count, data, terminator and padding as codewords (7.4)."""
    bits = (format(QR_BYTE_MODE, "04b") + format(len(data), "0%db" % qr_count_bits(version))
            + "".join(format(byte, "08b") for byte in data))
    room = 8 * qr_data_capacity(version)
    bits += "0" * min(4, room - len(bits))
    bits += "0" * (-len(bits) % 8)
    codewords = bytearray(int(bits[start:start + 8], 2) for start in range(0, len(bits), 8))
    missing = room // 8 - len(codewords)
    return codewords + bytes(QR_PAD_CODEWORDS * missing)[:missing]


def qr_final_codewords(data, version):
    """The data split into blocks, each with its error correction, all
    interleaved one codeword of each block at a time (7.5.2, 7.6)."""
    blocks, per_block = QR_BLOCKS[version - 1], QR_EC_PER_BLOCK[version - 1]
    short, longer = divmod(len(data), blocks)
    pieces, start = [], 0
    for index in range(blocks):
        length = short + (index >= blocks - longer)
        pieces.append(data[start:start + length])
        start += length
    corrections = [qr_error_correction(piece, per_block) for piece in pieces]
    final = bytearray()
    for position in range(short + 1):
        final.extend(piece[position] for piece in pieces if position < len(piece))
    for position in range(per_block):
        final.extend(correction[position] for correction in corrections)
    return final


def qr_format_positions(size):
    """(row, column) of format bits 0 to 14, for each of the two copies (7.9.1)."""
    by_finder = ([(row, 8) for row in (0, 1, 2, 3, 4, 5, 7, 8)]
                 + [(8, column) for column in (7, 5, 4, 3, 2, 1, 0)])
    split = [(8, size - 1 - index) for index in range(8)] + [(size - 7 + index, 8)
                                                           for index in range(7)]
    return by_finder, split


def qr_function_patterns(version):
    """Rows of the symbol's function modules (True dark), None where codewords go.

    Finders and separators (6.3.3, 6.3.4), alignment patterns (6.3.6),
    timing patterns (6.3.5), the dark module, the version information
    (7.10), and the format information areas, light until a mask is chosen.
    """
    size = qr_size(version)
    grid = [[None] * size for _ in range(size)]
    for top, left in ((0, 0), (0, size - 7), (size - 7, 0)):
        for row in range(max(top - 1, 0), min(top + 8, size)):
            for column in range(max(left - 1, 0), min(left + 8, size)):
                ring = max(abs(row - top - 3), abs(column - left - 3))
                grid[row][column] = ring not in (2, 4)
    centres = qr_alignment_centres(version)
    for centre_row in centres:
        for centre_column in centres:
            if grid[centre_row][centre_column] is None:
                for row in range(centre_row - 2, centre_row + 3):
                    for column in range(centre_column - 2, centre_column + 3):
                        ring = max(abs(row - centre_row), abs(column - centre_column))
                        grid[row][column] = ring != 1
    for index in range(8, size - 8):
        grid[6][index] = grid[index][6] = index % 2 == 0
    for copy in qr_format_positions(size):
        for row, column in copy:
            grid[row][column] = False
    grid[size - 8][8] = True
    if version >= 7:
        bits = qr_bch_code(version, QR_VERSION_GENERATOR)
        for index in range(18):
            near, far = index // 3, size - 11 + index % 3
            grid[near][far] = grid[far][near] = bool(bits >> index & 1)
    return grid


def qr_codeword_positions(grid):
    """The free modules in the order codeword bits fill them (7.7.3): in
    two-module columns from the right, up then down, right module first;
    the vertical timing pattern's column is skipped."""
    size = len(grid)
    positions = []
    right = size - 1
    upward = True
    while right > 0:
        if right == 6:
            right = 5
        for row in (range(size - 1, -1, -1) if upward else range(size)):
            for column in (right, right - 1):
                if grid[row][column] is None:
                    positions.append((row, column))
        upward = not upward
        right -= 2
    return positions


def qr_same_colour_squares(rows):
    """How many 2 x 2 squares of one colour the rows hold (rule 2)."""
    values = [int(row, 2) for row in rows]
    everything = (1 << len(rows[0])) - 1
    count = 0
    for upper, lower in zip(values, values[1:]):
        dark = upper & lower
        light = everything & ~(upper | lower)
        count += bin(dark & dark >> 1).count("1") + bin(light & light >> 1).count("1")
    return count


def qr_finder_like_patterns(line):
    """Dark-light-dark-dark-dark-light-dark runs with 4 light modules before
    or after (rule 3); the quiet zone around the symbol is light."""
    padded = b"0000" + line + b"0000"
    count = 0
    for match in QR_FINDER_LIKE.finditer(padded):
        start = match.start()
        if padded[start - 4:start] == b"0000" or padded[start + 7:start + 11] == b"0000":
            count += 1
    return count


def qr_penalty(rows):
    """Penalty points of a complete symbol: the four rules of 7.8.3.1
    (Table 11), weighted N1 = 3, N2 = 3, N3 = 40, N4 = 10."""
    size = len(rows)
    rows = [bytes(row) for row in rows]
    lines = rows + [bytes(column) for column in zip(*rows)]
    runs = sum(len(run) - 2 for line in lines for run in QR_SAME_COLOUR_RUN.findall(line))
    squares = 3 * qr_same_colour_squares(rows)
    finder_like = 40 * sum(qr_finder_like_patterns(line) for line in lines)
    dark = sum(row.count(QR_DARK) for row in rows)
    # 10 points for each full 5% step between the dark share and 50%
    balance = 10 * (abs(20 * dark - 10 * size * size) // (size * size))
    return runs + squares + finder_like + balance


def qr_masked(unmasked, positions, mask):
    """The complete symbol with one mask: the encoding region inverted where
    the mask says, and the format information that names the mask."""
    rows = [bytearray(row) for row in unmasked]
    rule = QR_MASKS[mask]
    for row, column in positions:
        if rule(row, column):
            rows[row][column] ^= 1
    bits = format(qr_format_bits(mask), "015b")[::-1].encode("ascii")  # bit 0 first
    for copy in qr_format_positions(len(rows)):
        for (row, column), bit in zip(copy, bits):
            rows[row][column] = bit
    return rows


def qr_matrix(data):
    """The QR code of data (bytes), without quiet zone: a tuple of rows,
    each a tuple of modules, True for dark.

    Byte mode, level M, the smallest version that holds data (WoofError
    beyond version 40).  Of the eight masks, the one whose complete symbol
    has the fewest penalty points, the lowest numbered on a tie; the
    standard scores the complete symbol (7.8.3.1), so the format and
    version information count too.
    """
    version = qr_version(len(data))
    grid = qr_function_patterns(version)
    positions = qr_codeword_positions(grid)
    unmasked = [bytearray(QR_DARK if module else QR_LIGHT for module in row) for row in grid]
    codewords = qr_final_codewords(qr_data_codewords(data, version), version)
    bits = "".join(format(codeword, "08b") for codeword in codewords).encode("ascii")
    for (row, column), bit in zip(positions, bits):
        unmasked[row][column] = bit
    symbols = [qr_masked(unmasked, positions, mask) for mask in range(len(QR_MASKS))]
    best = min(symbols, key=qr_penalty)
    return tuple(tuple(module == QR_DARK for module in row) for row in best)


def qr_lines(matrix, colour):
    """Lines of text that draw the matrix and its quiet zone: two module
    rows a line, half blocks for dark modules (right on a light
    background).  With colour, each line forces black on white."""
    margin = (False,) * QR_QUIET_ZONE
    blank = (False,) * (len(matrix) + 2 * QR_QUIET_ZONE)
    rows = ([blank] * QR_QUIET_ZONE + [margin + tuple(map(bool, row)) + margin for row in matrix]
            + [blank] * (QR_QUIET_ZONE + 1))  # a light lower half for an odd last row
    lines = []
    for upper, lower in zip(rows[0::2], rows[1::2]):
        line = "".join(QR_HALF_BLOCKS[pair] for pair in zip(upper, lower))
        lines.append(QR_BLACK_ON_WHITE + line + QR_COLOUR_RESET if colour else line)
    return lines


# ---------------------------------------------------------------------------
# Security: the throwaway certificate
#
# For --https with no certificate of its own, woof makes a key and a
# self-signed certificate for the run: ECDSA over P-256, computed here in
# pure Python and written in DER by hand (X.690, profiled by RFC 5280), so
# that neither an openssl command nor a third-party module is needed.  An
# EC key is a random number, where an RSA key needs a search for large
# primes, slower and of uneven length in pure Python.  This arithmetic is
# not constant-time; it runs once per key, before anything is served, and
# every handshake then uses the key through OpenSSL alone.
# ---------------------------------------------------------------------------

def der_length(size):
    """Length octets (X.690, 8.1.3 and 10.1): short form below 128, else minimal long form."""
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def der_element(tag, content):
    return bytes([tag]) + der_length(len(content)) + content


def der_integer(value):
    """A non-negative INTEGER in the fewest octets that keep its sign bit clear (X.690, 8.3)."""
    return der_element(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_boolean(value):
    return der_element(0x01, b"\xff" if value else b"\x00")


def der_oid(dotted):
    """An OBJECT IDENTIFIER: the first two arcs in one number, each in base 128 (X.690, 8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    content = bytearray()
    for arc in [40 * arcs[0] + arcs[1]] + arcs[2:]:
        septets = [arc & 0x7F]
        arc >>= 7
        while arc:
            septets.append(0x80 | arc & 0x7F)
            arc >>= 7
        content.extend(reversed(septets))
    return der_element(0x06, bytes(content))


def der_sequence(*elements):
    return der_element(0x30, b"".join(elements))


def der_set(*elements):
    """A SET OF: DER orders its elements by their encodings (X.690, 11.6)."""
    return der_element(0x31, b"".join(sorted(elements)))


def der_bit_string(data):
    """A BIT STRING of whole octets: no unused bits (X.690, 8.6.2)."""
    return der_element(0x03, b"\x00" + data)


def der_octet_string(data):
    return der_element(0x04, data)


def der_utf8_string(text):
    return der_element(0x0C, text.encode("utf-8"))


def der_time(seconds):
    """UTCTime for years 1950 to 2049, GeneralizedTime otherwise (RFC 5280, 4.1.2.5)."""
    moment = time.gmtime(seconds)
    if 1950 <= moment.tm_year <= 2049:
        return der_element(0x17, time.strftime("%y%m%d%H%M%SZ", moment).encode("ascii"))
    return der_element(0x18, time.strftime("%Y%m%d%H%M%SZ", moment).encode("ascii"))


def der_explicit(number, content):
    """A constructed context-specific tag [number] around a whole element."""
    return der_element(0xA0 | number, content)


def der_implicit(number, content):
    """A primitive context-specific tag [number] replacing the element's own."""
    return der_element(0x80 | number, content)


def der_read(data, offset):
    """(tag, start, end) of the DER element at offset: its value is data[start:end].

    Only single-octet tags and minimal definite lengths are DER (X.690,
    10.1); anything else, or an element running past the data, is refused.
    """
    if offset + 2 > len(data):
        raise WoofError("malformed certificate: a DER element is cut short")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise WoofError("malformed certificate: unexpected DER tag 0x%02x" % tag)
    start = offset + 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        octets = data[start:start + count]
        if not 1 <= count <= 8 or len(octets) < count or octets[0] == 0:
            raise WoofError("malformed certificate: not a DER length")
        length = int.from_bytes(octets, "big")
        if length < 0x80:
            raise WoofError("malformed certificate: not a DER length")
        start += count
    if start + length > len(data):
        raise WoofError("malformed certificate: a DER element is cut short")
    return tag, start, start + length


def der_children(data, start, end):
    """(tag, offset, start, end) of each element between start and end.

    The element is data[offset:end], its value data[start:end].
    """
    children = []
    while start < end:
        tag, value_start, value_end = der_read(data, start)
        if value_end > end:
            raise WoofError("malformed certificate: a DER element is cut short")
        children.append((tag, start, value_start, value_end))
        start = value_end
    return children


def pem_text(label, der):
    """The PEM text of DER bytes: base64 in lines of 64 (RFC 7468, 2)."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[index:index + 64] for index in range(0, len(text), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


# P-256 (secp256r1): SEC 2 version 2, 2.4.2, and FIPS 186-4, D.1.2.3.  Its
# a is -3, which the doubling formulas rely on; b plays no part in them.
P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
          0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)

# A point (x, y, z) in Jacobian coordinates stands for (x/z^2, y/z^3), so
# that only the final conversion divides; z = 0 is the point at infinity.
P256_INFINITY = (1, 1, 0)

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_PRIME256V1 = "1.2.840.10045.3.1.7"
OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
OID_COMMON_NAME = "2.5.4.3"
OID_SUBJECT_ALT_NAME = "2.5.29.17"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
OID_EXTENDED_KEY_USAGE = "2.5.29.37"
OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"

THROWAWAY_COMMON_NAME = "woof.py throwaway"
# Valid from an hour ago, so that a receiver whose clock is a little behind
# does not see a certificate from the future.
CLOCK_SKEW = 3600


def p256_double(point):
    """2P, by the a = -3 doubling formulas (dbl-2001-b, Bernstein and Lange's EFD)."""
    x, y, z = point
    if not z or not y:
        return P256_INFINITY
    p = P256_P
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def p256_add_affine(point, affine):
    """P + Q for a Jacobian P and an affine Q (mixed addition, Cohen, Miyaji and Ono, 1998)."""
    x1, y1, z1 = point
    x2, y2 = affine
    if not z1:
        return x2, y2, 1
    p = P256_P
    z1z1 = z1 * z1 % p
    h = (x2 * z1z1 - x1) % p
    r = (y2 * z1 * z1z1 - y1) % p
    if not h:
        return p256_double(point) if not r else P256_INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def p256_multiply(scalar, affine=P256_G):
    """The affine point scalar * Q, for 0 < scalar < n (double and add)."""
    point = P256_INFINITY
    for bit in bin(scalar)[2:]:
        point = p256_double(point)
        if bit == "1":
            point = p256_add_affine(point, affine)
    x, y, z = point
    if not z:
        raise ValueError("the point at infinity has no affine coordinates")
    # Python 3.6 has no pow(z, -1, p); Fermat's little theorem gives the inverse.
    z_inverse = pow(z, P256_P - 2, P256_P)
    z_inverse_squared = z_inverse * z_inverse % P256_P
    return x * z_inverse_squared % P256_P, y * z_inverse_squared * z_inverse % P256_P


def rfc6979_nonces(private_key, digest):
    """ECDSA nonces for one message, derived from the key and its SHA-256 (RFC 6979, 3.2).

    Deterministic nonces cannot repeat for different messages nor leak the
    key through a weak random source, and a published test vector (RFC 6979,
    A.2.5) checks the whole signature.  For P-256 with SHA-256, qlen = hlen
    = 256, so bits2int is a plain conversion.
    """
    def mac(key, data):
        return hmac.new(key, data, hashlib.sha256).digest()

    key_octets = private_key.to_bytes(32, "big")
    digest_octets = (int.from_bytes(digest, "big") % P256_N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = mac(b"\x00" * 32, v + b"\x00" + key_octets + digest_octets)
    v = mac(k, v)
    k = mac(k, v + b"\x01" + key_octets + digest_octets)
    v = mac(k, v)
    while True:
        v = mac(k, v)
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < P256_N:
            yield candidate
        k = mac(k, v + b"\x00")
        v = mac(k, v)


def ecdsa_sign(private_key, message):
    """(r, s): the ECDSA signature of message with SHA-256 over P-256 (SEC 1 version 2, 4.1.3)."""
    digest = hashlib.sha256(message).digest()
    e = int.from_bytes(digest, "big")
    for nonce in rfc6979_nonces(private_key, digest):
        r = p256_multiply(nonce)[0] % P256_N
        s = pow(nonce, P256_N - 2, P256_N) * (e + r * private_key) % P256_N
        if r and s:
            return r, s


def p256_point_octets(point):
    """The uncompressed encoding of a point (SEC 1 version 2, 2.3.3)."""
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def subject_alt_name(host):
    """The GeneralName of one host (RFC 5280, 4.2.1.6): iPAddress or dNSName."""
    address = host.strip("[]").split("%")[0]
    try:
        return der_implicit(7, ipaddress.ip_address(address).packed)
    except ValueError:
        pass
    try:
        name = host.encode("idna")
    except UnicodeError:
        name = b""
    if not name:
        raise WoofError("%r cannot be named in a certificate" % host)
    return der_implicit(2, name)


def der_extension(oid, value, critical=False):
    """An Extension (RFC 5280, 4.1): critical is left out when false, as DER wants."""
    flag = der_boolean(True) if critical else b""
    return der_sequence(der_oid(oid), flag, der_octet_string(value))


def throwaway_extensions(hosts):
    names = []
    for host in hosts:
        name = subject_alt_name(host)
        if name not in names:
            names.append(name)
    extensions = [
        # An empty SEQUENCE: cA is FALSE, its default, so DER leaves it out.
        der_extension(OID_BASIC_CONSTRAINTS, der_sequence(), critical=True),
        # digitalSignature is bit 0; DER drops the 7 trailing zero bits (X.690, 11.2.2).
        der_extension(OID_KEY_USAGE, der_element(0x03, b"\x07\x80"), critical=True),
        der_extension(OID_EXTENDED_KEY_USAGE, der_sequence(der_oid(OID_SERVER_AUTH))),
    ]
    if names:
        extensions.insert(0, der_extension(OID_SUBJECT_ALT_NAME, der_sequence(*names)))
    return extensions


def throwaway_certificate(hosts, lifetime=86400):
    """(certificate_pem, key_pem): a new P-256 key and a self-signed certificate for it.

    hosts are IP addresses and DNS names, each made a subjectAltName; the
    certificate is valid from an hour ago until lifetime seconds from now.
    The key is PKCS#8 (RFC 5208) around an ECPrivateKey, which names its
    curve again (RFC 5915, 3).
    """
    private_key = secrets.randbelow(P256_N - 1) + 1
    public_key = p256_point_octets(p256_multiply(private_key))
    curve = der_sequence(der_oid(OID_EC_PUBLIC_KEY), der_oid(OID_PRIME256V1))
    # ECDSA signatures name no parameters (RFC 5758, 3.2).
    signature_algorithm = der_sequence(der_oid(OID_ECDSA_WITH_SHA256))
    name = der_sequence(der_set(der_sequence(
        der_oid(OID_COMMON_NAME), der_utf8_string(THROWAWAY_COMMON_NAME))))
    now = int(time.time())
    # A positive serial of at most 20 octets (RFC 5280, 4.1.2.2).
    serial = secrets.randbelow((1 << 159) - 1) + 1
    tbs_certificate = der_sequence(
        der_explicit(0, der_integer(2)),
        der_integer(serial),
        signature_algorithm,
        name,
        der_sequence(der_time(now - CLOCK_SKEW), der_time(now + lifetime)),
        name,
        der_sequence(curve, der_bit_string(public_key)),
        der_explicit(3, der_sequence(*throwaway_extensions(hosts))))
    r, s = ecdsa_sign(private_key, tbs_certificate)
    certificate = der_sequence(
        tbs_certificate, signature_algorithm,
        der_bit_string(der_sequence(der_integer(r), der_integer(s))))
    ec_private_key = der_sequence(
        der_integer(1), der_octet_string(private_key.to_bytes(32, "big")),
        der_explicit(0, der_oid(OID_PRIME256V1)), der_explicit(1, der_bit_string(public_key)))
    private_key_info = der_sequence(der_integer(0), curve, der_octet_string(ec_private_key))
    return pem_text("CERTIFICATE", certificate), pem_text("PRIVATE KEY", private_key_info)


def public_key_pin(certificate_der):
    """The SHA-256 of the certificate's SubjectPublicKeyInfo, as "sha256//BASE64".

    This is what curl --pinnedpubkey checks (and HPKP pinned, RFC 7469,
    2.4), for a key of any type.  The SubjectPublicKeyInfo is the seventh
    field of tbsCertificate, the sixth when the optional [0] version is
    absent (RFC 5280, 4.1).
    """
    data = bytes(certificate_der)
    tag, start, end = der_read(data, 0)
    if tag != 0x30 or end != len(data):
        raise WoofError("malformed certificate: not one DER SEQUENCE")
    fields = der_children(data, start, end)
    if not fields or fields[0][0] != 0x30:
        raise WoofError("malformed certificate: no tbsCertificate")
    tbs_fields = der_children(data, fields[0][2], fields[0][3])
    if tbs_fields and tbs_fields[0][0] == 0xA0:
        tbs_fields = tbs_fields[1:]
    if len(tbs_fields) < 6 or tbs_fields[5][0] != 0x30:
        raise WoofError("malformed certificate: no SubjectPublicKeyInfo")
    _, key_offset, _, key_end = tbs_fields[5]
    digest = hashlib.sha256(data[key_offset:key_end]).digest()
    return "sha256//" + base64.b64encode(digest).decode("ascii")


def certificate_fingerprint(certificate_der):
    """The SHA-256 of the whole certificate, as browsers show it: "AB:CD:..."."""
    digest = hashlib.sha256(bytes(certificate_der)).digest()
    return ":".join("%02X" % octet for octet in digest)


# ---------------------------------------------------------------------------
# Security: the secret link, the password, and who may be asked for
# ---------------------------------------------------------------------------

def new_secret_token():
    """A fresh URL-safe token of SECRET_TOKEN_BYTES random bytes."""
    return secrets.token_urlsafe(SECRET_TOKEN_BYTES)


def strip_secret(path, token):
    """The path inside /<token>, or None when it does not start with the token.

    The token is compared in constant time: how far a guess matches shows
    in nothing the client can measure.
    """
    segment, slash, rest = path[1:].partition("/")
    matches = hmac.compare_digest(name_bytes(segment), token.encode("ascii"))
    return "/" + rest if matches and path.startswith("/") else None


def password_digest(password):
    """What woof keeps of a password: its SHA-256, compared in constant time."""
    return hashlib.sha256(password.encode("utf-8")).digest()


def basic_password(header):
    """The password in an Authorization: Basic header, or None (RFC 7617, 2).

    Any user name is accepted; the password is what follows the first
    colon, so it may hold colons itself.  Credentials are UTF-8 (2.1).
    """
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    user, colon, password = decoded.partition(":")
    return password if colon else None


class PasswordGuard:
    """Checks passwords and slows down guessing: after a few wrong passwords,
    each further try must wait, twice as long after each failure (429,
    Retry-After).  A try that must wait is refused before its password is
    looked at, so a 429 says nothing about the password; the right one
    waits like any other.

    Failures count against the client's address and, for IPv6, against its
    /64 too with a larger allowance: one machine may pick its addresses from
    a whole /64.  Only an address's free tries count against its /64, so one
    neighbour failing on and on (it waits for itself) never makes the others
    wait; a machine rotating through its /64 spends the /64's allowance and
    then waits with every address in it that has not yet given the right
    password.  An address that has is held back by its own failures only,
    never by its neighbours'.  The wait, the comparison and the record
    happen under one lock, so requests racing in together get one try.  At
    most MAX_TRACKED_CLIENTS sources are remembered; the oldest go first.
    """

    def __init__(self, expected_digest, clock=time.monotonic):
        self.expected = expected_digest
        self.clock = clock
        self.lock = threading.Lock()
        self.records = {}  # source -> [failures, clock time it may try again]
        self.trusted = collections.OrderedDict()  # addresses that gave the password

    def attempt(self, host, given):
        """Check the password host gave (None: none); return (right, seconds to wait)."""
        sources = guessing_sources(host)
        with self.lock:
            now = self.clock()
            if host in self.trusted:
                sources = sources[:1]
            wait = max(self.wait_left(source, now) for source, _ in sources)
            if wait or given is None:
                return False, wait
            if hmac.compare_digest(password_digest(given), self.expected):
                self.records.pop(host, None)
                self.trust(host)
                return True, 0.0
            if self.records.get(host, [0])[0] >= FREE_PASSWORD_TRIES:
                sources = sources[:1]  # past its free tries, its failures are its own
            return False, max(self.failed(source, free, now) for source, free in sources)

    def trust(self, host):
        self.trusted.pop(host, None)
        self.trusted[host] = True
        while len(self.trusted) > MAX_TRACKED_CLIENTS:
            self.trusted.popitem(last=False)

    def wait_left(self, source, now):
        record = self.records.get(source)
        return max(0.0, record[1] - now) if record else 0.0

    def failed(self, source, free_tries, now):
        """Note a failure from source (lock held); return how long it must now wait."""
        failures = self.records.pop(source, [0, 0.0])[0] + 1
        wait = 0.0
        if failures > free_tries:
            wait = float(min(MAX_PASSWORD_DELAY, 2 ** min(failures - free_tries - 1, 32)))
        self.records[source] = [failures, now + wait]
        while len(self.records) > MAX_TRACKED_CLIENTS:
            del self.records[next(iter(self.records))]
        return wait


_PATH_PIECE = re.compile(r"[^\s/?#'\"()]+")


def hide_secret(text, token):
    """text with every piece that spells the token, percent-encoded or not,
    written <secret> instead: woof's log never holds the token."""
    def hidden(match):
        piece = match.group(0)
        return "<secret>" if token in urllib.parse.unquote(piece) else piece
    return _PATH_PIECE.sub(hidden, text)


def address_group(host):
    """The one client host stands for as far as woof can tell: its IPv6 /64
    (one machine may pick any address in it, RFC 4291, 2.5.1; IPv6 privacy
    addresses do), or the address itself."""
    if ":" in host:
        try:
            return str(ipaddress.ip_network(host.split("%")[0] + "/64", strict=False))
        except ValueError:
            pass
    return host


def guessing_sources(host):
    """(source, free tries) that wrong passwords from host count against."""
    sources = [(host, FREE_PASSWORD_TRIES)]
    group = address_group(host)
    if group != host:
        sources.append((group, FREE_PASSWORD_TRIES * PREFIX_PASSWORD_TRIES_FACTOR))
    return sources


def host_name(host_header):
    """The host part of a Host header, lowercased, without port or final dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":")[0]
    return host.rstrip(".")


def is_ip_literal(name):
    try:
        ipaddress.ip_address(name.split("%")[0])  # an IPv6 zone is not part of the address
        return True
    except ValueError:
        return False


def local_host_names(extra=(), domains=None):
    """Names a browser may use for this machine: localhost, its host name,
    that name with .local (mDNS) and under each domain its resolver appends
    to short names (vm.lan, vm.fritz.box: the router's DNS answers them),
    its fully qualified name, and those the user allowed.  domains: the
    resolver's (own_domains()) unless given."""
    names = {"localhost"}
    own = socket.gethostname().lower().rstrip(".")
    if own:
        short = own.split(".")[0]
        names.update((own, short, short + ".local"))
        for domain in own_domains() if domains is None else domains:
            names.add(short + "." + domain)
    fully_qualified = socket.getfqdn().lower().rstrip(".")
    if "." in fully_qualified:
        names.add(fully_qualified)
    names.update(name.lower().rstrip(".") for name in extra)
    return frozenset(names)


def host_allowed(host_header, names):
    """True when a request's Host is one woof answers to.

    A page that a DNS name under someone else's control points at this
    machine (DNS rebinding) arrives with that name as Host; IP literals and
    this machine's own names cannot be rebound.  HTTP/1.0 clients may send
    no Host at all; browsers always do.
    """
    if host_header is None:
        return True
    name = host_name(host_header)
    return is_ip_literal(name) or name in names


# RFC 9112, 3.2 and RFC 3986, 3.2.2-3.2.3: an IP literal in brackets (an
# IPv6 zone as %25 and a name, RFC 6874) or a registered name, then an
# optional colon and digits.
_HOST_FIELD = re.compile(r"(?:\[[0-9a-f:.]+(?:%25[0-9a-z._~-]+)?\]"
                         r"|[0-9a-z._~!$&'()*+,;=%-]*)(?::[0-9]*)?\Z", re.I)


def host_field_problem(values, target):
    """Why a request's Host lines and target do not name one host, or None.

    RFC 9112, 3.2 wants a 400 for more than one Host line or one that is
    not a host and port; a target in absolute form (3.2.2) must name the
    same authority as Host, or the two checks could look at different hosts.
    """
    if len(values) > 1:
        return "the request has more than one Host header"
    host = values[0].strip() if values else None
    if host is not None and not _HOST_FIELD.match(host):
        return "the Host header is not a host name or address and a port"
    scheme, separator, rest = target.partition("://")
    if separator and not target.startswith("/"):
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
        if host is None or authority.lower() != host.lower():
            return "the request target names another host than the Host header"
    return None


def foreign_subresource(headers):
    """True for a request another site's page makes in passing: an image, a
    script, a frame, a fetch (Fetch Metadata, sent by browsers since 2020).

    A link followed from another site (a top-level navigation) is not one,
    nor is anything from a client that sends no Sec-Fetch-Site (curl, wget,
    older browsers).  Same-site counts as foreign: another port of the same
    address, or another name under the same domain, is another page.
    """
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    if site not in ("cross-site", "same-site"):
        return False
    mode = (headers.get("Sec-Fetch-Mode") or "").strip().lower()
    destination = (headers.get("Sec-Fetch-Dest") or "").strip().lower()
    return not (mode == "navigate" and destination in ("document", ""))


def same_origin(origin, scheme, host_header):
    """True when an Origin header names woof itself, as the client reached it."""
    if host_header is None:
        return False
    default_port = 443 if scheme == "https" else 80
    try:
        parts = urllib.parse.urlsplit(origin.strip().lower())
        own = urllib.parse.urlsplit("%s://%s" % (scheme, host_header.strip().lower()))
        return (parts.scheme == scheme and parts.hostname == own.hostname
                and (parts.port or default_port) == (own.port or default_port))
    except ValueError:
        return False


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.I)


def parse_duration(text):
    """Seconds in a duration people write: 90, 90s, 15m, 2h, 1d, 1.5h."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("%r is not a duration" % text)
    number, unit = match.groups()
    return float(number) * DURATION_UNITS[unit.lower()]


def read_password(environ):
    """The password from WOOF_PASSWORD, or asked twice on the terminal without echo."""
    password = environ.get("WOOF_PASSWORD")
    if password is None:
        if not terminal_available():
            raise WoofError("--password needs a terminal to ask for it, or the password "
                            "in the WOOF_PASSWORD environment variable")
        password = getpass.getpass("Password for this woof: ")
        if getpass.getpass("The same again: ") != password:
            raise WoofError("the two passwords differ")
    if not password:
        raise WoofError("the password is empty")
    return password


class TlsSetup(NamedTuple):
    """An HTTPS server context, and what the receiver can check it by."""

    context: object
    pin: str
    fingerprint: str


def tls_setup(settings, hosts):
    """The TLS context for --cert/--key, or a throwaway certificate for hosts.

    A throwaway key is written to a private folder only long enough for ssl
    to load it (ssl loads keys from files only), then removed.
    """
    ssl = tls_module()
    if settings.certificate:
        certificate, key = settings.certificate, settings.key
        return tls_context(ssl, certificate, key, describe=certificate)
    import tempfile
    certificate_pem, key_pem = throwaway_certificate(hosts, THROWAWAY_CERTIFICATE_LIFETIME)
    folder = tempfile.mkdtemp(prefix="woof-tls-")
    try:
        certificate = os.path.join(folder, "certificate.pem")
        key = os.path.join(folder, "key.pem")
        for path, text in ((certificate, certificate_pem), (key, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(text)
        return tls_context(ssl, certificate, key, describe="the throwaway certificate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tls_context(ssl, certificate, key, describe):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certificate, key)
        with open(certificate, encoding="ascii", errors="replace") as handle:
            der = ssl.PEM_cert_to_DER_cert(first_pem_certificate(handle.read()))
    except ssl.SSLError as error:  # OpenSSL says only "PEM lib" for a file it cannot read
        raise WoofError(pem_problem(certificate, key) or "cannot use %s: %s"
                        % (printable_name(describe), error.reason or error))
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        raise WoofError("cannot use %s: %s" % (printable_name(describe), reason))
    return TlsSetup(context, public_key_pin(der), certificate_fingerprint(der))


def pem_problem(certificate, key):
    """What is wrong, in words, with files OpenSSL refused, or None."""
    try:
        with open(certificate, encoding="ascii", errors="replace") as handle:
            certificate_text = handle.read()
        key_text = certificate_text
        if key:
            with open(key, encoding="ascii", errors="replace") as handle:
                key_text = handle.read()
    except OSError:
        return None
    if "-----BEGIN CERTIFICATE-----" not in certificate_text:
        return ("%s is not a PEM certificate (text from -----BEGIN CERTIFICATE-----); "
                "from a DER file, openssl x509 -inform der -in FILE -out cert.pem makes one"
                % printable_name(certificate))
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_text):
        if not key:
            return ("%s holds no PEM private key; give the key's file with --key FILE"
                    % printable_name(certificate))
        return "%s is not a PEM private key" % printable_name(key)
    return None


_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]+\Z")


def answer_plain_http(sock, port, host_names, deadline, timeout):
    """Tell a plain HTTP client that reached the HTTPS port where to go instead.

    Its request head is read (a bounded amount, by the head's deadline) so
    that closing does not reset the connection before the client has read
    the answer.
    """
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_PLAIN_HEAD:
        set_timeout_by(sock, deadline, timeout)
        data = sock.recv(MAX_PLAIN_HEAD - len(head))
        if not data:
            break
        head += data
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1] if lines[0].count(" ") == 2 else "/"
    host = next((line.split(":", 1)[1].strip() for line in lines[1:]
                 if line.lower().startswith("host:")), None)
    if not target.startswith("/") or any(ord(char) <= 32 or ord(char) > 126 for char in target):
        target = "/"
    if host is None or not _PLAIN_HOST.match(host) or not host_allowed(host, host_names):
        host = "THIS-HOST:%d" % port
    text = ("This woof speaks HTTPS only: open https://%s%s instead.\n"
            % (host, target)).encode("latin-1", "replace")
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 b"X-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (len(text), text))


def first_pem_certificate(text):
    """The first certificate of a PEM file (a chain holds several)."""
    end = "-----END CERTIFICATE-----"
    start = text.find("-----BEGIN CERTIFICATE-----")
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate in it")
    return text[start:stop + len(end)] + "\n"


# ---------------------------------------------------------------------------
# Connection gate: who gets one of the places
# ---------------------------------------------------------------------------

class Place:
    """One connection's place among the MAX_CONNECTIONS: whose it is (its
    address group), since when it waits for a request head (None while a
    request is answered), and a duplicate of its socket, by which the gate
    ends it when a newcomer takes the place (the handler's own socket may be
    a TLS socket not made yet)."""

    def __init__(self, host, sock):
        self.host = host
        self.group = address_group(host)
        self.waiting_since = time.monotonic()
        self.handle = sock.dup()

    def end(self):
        """Close the connection under whoever serves it: its reads see the end."""
        try:
            self.handle.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # it has ended already


class ConnectionGate:
    """The MAX_CONNECTIONS places: who holds them, by address group, who
    gets one (a newcomer may take an idle connection's place), and one log
    line a minute per address about those refused or cut off.

    It shares the server's lock (a Condition), by which everything that
    changes while serving is guarded.
    """

    def __init__(self, lock, log):
        self.lock = lock
        self.log = log
        self.connections = 0
        self.connections_by_client = {}  # address group -> connections it holds
        self.places = set()
        self.refusals_logged = {}  # host -> (monotonic time of its last line, left out since)

    def enter(self, host, sock):
        """A place for a new connection from host: (place, None), or (None, why not).

        The idle connection whose place it takes, if any, is ended here.
        """
        place = taken = None
        with self.lock:
            refusal = self.connection_refusal(address_group(host))
            if refusal is not None:
                taken = self.idle_place_for(address_group(host))
                if taken is not None:
                    self.give_back(taken)
                    refusal = None
            if refusal is None:
                try:
                    place = Place(host, sock)
                    self.places.add(place)
                    self.count_connection(place.group, 1)
                except OSError:  # no descriptor left for the duplicate
                    refusal = "woof cannot hold another connection"
        if taken is not None:
            taken.end()
            self.log_refusal(taken.host, "connection closed while idle: its place went "
                                         "to an address holding fewer")
        return place, refusal

    def leave(self, place):
        """Give a connection's place back, once its thread is done or never began."""
        with self.lock:
            self.give_back(place)
        place.handle.close()

    def connection_refusal(self, group):
        """Why a new connection from an address group cannot be served (lock
        held), or None.

        While more than RESERVED_CONNECTIONS places are free, a group may
        take as many as it likes: a class behind one NAT address, a download
        manager's parallel connections.  The last places go only to groups
        holding fewer than MAX_CONNECTIONS_PER_CLIENT, so that one address,
        however many connections it opens, leaves room for everyone else.
        """
        if self.connections >= MAX_CONNECTIONS:
            return "woof holds %d connections, its most" % self.connections
        held = self.connections_by_client.get(group, 0)
        if held >= MAX_CONNECTIONS_PER_CLIENT \
                and self.connections >= MAX_CONNECTIONS - RESERVED_CONNECTIONS:
            return ("this address holds %d connections and the last places are kept "
                    "for others" % held)
        return None

    def idle_place_for(self, group):
        """The place a refused newcomer from group may take (lock held), or None.

        Several addresses together can fill every place, and one machine
        holds a whole IPv6 /64: so a group holding fewer than FEW_CONNECTIONS
        takes the place of the connection waiting longest for a request head
        among those of the group holding the most, if that group holds more.
        A request being answered is never cut off.
        """
        held = self.connections_by_client.get(group, 0)
        if held >= FEW_CONNECTIONS:
            return None
        chosen, rank = None, None
        for place in self.places:
            most = self.connections_by_client[place.group]
            if place.waiting_since is None or most <= held:
                continue
            if rank is None or (-most, place.waiting_since) < rank:
                chosen, rank = place, (-most, place.waiting_since)
        return chosen

    def give_back(self, place):
        """Free a place (lock held); False if it was free already."""
        if place not in self.places:
            return False
        self.places.discard(place)
        self.count_connection(place.group, -1)
        return True

    def place_waits(self, place, waiting):
        """Note that a connection waits for a request head, or has one."""
        if place is not None:
            with self.lock:
                place.waiting_since = time.monotonic() if waiting else None

    def count_connection(self, group, change):
        """Count a connection taken (1) or given back (-1); lock held."""
        held = self.connections_by_client.get(group, 0) + change
        if held:
            self.connections_by_client[group] = held
        else:
            self.connections_by_client.pop(group, None)
        self.connections += change

    def log_refusal(self, host, text):
        """Log a refused or cut-off connection, one line a minute at most per
        address: a flood of connections must not flood the log too.  The next
        line says how many were left out."""
        now = time.monotonic()
        with self.lock:
            last, left_out = self.refusals_logged.pop(host, (None, 0))
            if last is not None and now - last < REFUSAL_LOG_SECONDS:
                self.refusals_logged[host] = (last, left_out + 1)
                return
            self.refusals_logged[host] = (now, 0)
            while len(self.refusals_logged) > MAX_TRACKED_CLIENTS:
                del self.refusals_logged[next(iter(self.refusals_logged))]
        if left_out:
            text += " (and %d more like it not logged)" % left_out
        self.log.info("%s %s" % (host, text))


def answer_busy(sock, reason):
    """Answer 503 on a plain connection just accepted, without a thread.

    What has arrived of the request is read first, so that closing does
    not reset the connection before the client reads the answer.
    """
    text = ("woof is busy: %s. Try again in a moment.\n" % reason).encode("utf-8")
    answer = (b"HTTP/1.1 503 Service Unavailable\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: %d\r\nRetry-After: %d\r\nConnection: close\r\n\r\n%s"
              % (len(text), RETRY_AFTER_SECONDS, text))
    try:
        sock.setblocking(False)  # a fresh socket's buffers take this at once
        sock.recv(MAX_PLAIN_HEAD)
    except OSError:
        pass  # nothing has arrived yet
    try:
        sock.send(answer)
    except OSError:
        pass  # the client has gone already


# ---------------------------------------------------------------------------
# Delivery ledger: what each client received, of which state
# ---------------------------------------------------------------------------

class ClientParts(NamedTuple):
    """What one client address was sent of one state (ETag) of the offer."""

    etag: Optional[str]
    spans: list  # (start, stop) of the bytes it received, merged


class DeliveryLedger:
    """What each client address was sent of which state (ETag) of the offer:
    whether the parts it received make a whole download, and whether a
    Range it asks for continues bytes of the same state.

    It shares the server's lock (a Condition): the server counts a
    download in the same hold as add_received() that made it whole.
    """

    def __init__(self, lock):
        self.lock = lock
        self.parts_by_client = collections.OrderedDict()  # least recently used first
        self.states_sent = set()  # ETags bytes went out of; two tell "more than one"

    def note_sending(self, client_address, body):
        """Note that a client is being sent bytes of body's state (before the first byte).

        Parts of another state received before are forgotten: they could
        not make a download together with these.
        """
        if body.size is None:
            return
        with self.lock:
            host = client_host(client_address)
            parts = self.parts_by_client.get(host)
            if parts is None or parts.etag != body.etag:
                parts = ClientParts(body.etag, [])
            self.remember_parts(host, parts)
            if len(self.states_sent) < 2:
                self.states_sent.add(body.etag)

    def may_resume(self, client_address, etag):
        """Whether a client's earlier bytes, as far as woof can tell, are of the state etag.

        For an address woof does not know (never sent to, or forgotten),
        only when no other state ever went out to anyone.
        """
        with self.lock:
            parts = self.parts_by_client.get(client_host(client_address))
            if parts is not None:
                return parts.etag == etag
            return self.states_sent <= {etag}

    def remember_parts(self, host, parts):
        """Keep a client's parts (lock held), forgetting the least recent client.

        At most MAX_CLIENTS_REMEMBERED, however many addresses ask (an IPv6
        /64 has plenty).
        """
        self.parts_by_client[host] = parts
        self.parts_by_client.move_to_end(host)
        while len(self.parts_by_client) > MAX_CLIENTS_REMEMBERED:
            self.parts_by_client.popitem(last=False)

    def add_received(self, host, body, start, received):
        """Add bytes [start, start + received) of body that host received (lock
        held); True when what it holds of body's state now makes all of it."""
        parts = self.parts_by_client.get(host)
        current = parts is None or parts.etag == body.etag
        earlier = parts.spans if parts is not None and current else []
        spans = merge_spans(earlier + [(start, start + received)])
        if covers(spans, body.size):
            if current:
                self.remember_parts(host, ClientParts(body.etag, []))
            return True
        if current:
            # Bounded, so a client sending endless scattered ranges cannot
            # grow woof's memory; such a client never completes a download.
            self.remember_parts(host, ClientParts(body.etag, spans[:MAX_SPANS_PER_CLIENT]))
        return False


# ---------------------------------------------------------------------------
# HTTP handlers: the base every handler shares
# ---------------------------------------------------------------------------

class BaseHandler(BaseHTTPRequestHandler):
    """What every woof handler does: the connection's plumbing (deadlines,
    a body left unread), who may be answered, the one log line of each
    request, and small answers.  Settings live on self.server; the
    download and upload handlers derive from it and add the methods."""

    protocol_version = "HTTP/1.1"
    # Older Pythons answer a request line they cannot parse as HTTP/0.9,
    # without a status line; no client of woof speaks 0.9.
    default_request_version = "HTTP/1.0"
    server_version = "woof.py/" + __version__
    disable_nagle_algorithm = True

    responses = dict(BaseHTTPRequestHandler.responses)
    responses[int(MISDIRECTED_REQUEST)] = ("Misdirected Request",
                                           "This server does not answer for that host name")

    def __init__(self, request, client_address, server, head_deadline=None, place=None):
        self.head_deadline = head_deadline  # of the first request, set when accepted
        self.place = place  # in the server's connection gate
        super().__init__(request, client_address, server)

    def setup(self):
        self.timeout = self.server.settings.timeout
        self.body_unread = False  # the connection closes with a request body left unread
        self.drain_limit = DRAIN_LIMIT  # how much of it linger() reads
        super().setup()
        self.rfile.close()
        self.reader = HeadReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def finish(self):
        super().finish()
        if self.body_unread:
            self.linger()

    def stop_reading(self):
        """Make this connection's reads see the end, from another thread (a
        newer request took over what this one was doing)."""
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # it has ended already
        if CLOSE_WAKES_READER:
            # Every handle of the socket must close before a read wakes.
            for sock in (getattr(self.place, "handle", None), self.connection):
                if sock is not None:
                    sock.close()

    def linger(self):
        """Let a client still sending a body read the answer before the close.

        A connection closed with data unread is reset, and a reset can wipe
        the answer from the client's side before it is read: stop writing,
        then read (a bounded amount, for a bounded time) until the client
        stops.  A TLS socket's shutdown() would drop the encryption for
        whatever came next: there, only read.
        """
        try:
            if self.server.tls is None:
                self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + DRAIN_SECONDS
            left = self.drain_limit
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.connection.settimeout(remaining)
                data = self.connection.recv(min(left, COPY_BUFFER_SIZE))
                if not data:
                    return
                left -= len(data)
        except OSError:
            pass  # the client has gone; there is nobody left to tell

    def handle_one_request(self):
        self.status = None
        self.body_sent = None
        self.transfer = None
        self.note = ""
        self.logged = False
        self.admitted = None
        self.inner_path = "/"
        deadline = self.head_deadline or time.monotonic() + self.server.head_seconds
        self.head_deadline = None
        self.server.gate.place_waits(self.place, True)
        self.reader.start_head(deadline)
        try:
            super().handle_one_request()
        finally:
            self.log_outcome()
        if self.reader.cut:
            self.server.gate.log_refusal(client_host(self.client_address),
                                         "connection closed: no whole request head within %g s"
                                         % self.server.head_seconds)

    # Who may be answered: checked once the head is parsed, before any
    # "100 Continue" and before the method runs.

    def parse_request(self):
        self.server.gate.place_waits(self.place, False)
        admitted = super().parse_request() and self.admit()
        self.reader.end_head()
        return admitted

    def handle_expect_100(self):
        if not (self.admit() and self.before_continue()):
            return False
        # Only a body that will be read is asked for (RFC 9110, 10.1.1).
        return super().handle_expect_100() if self.reads_body() else True

    def before_continue(self):
        """Checks a request body must pass before the client is asked to send it."""
        return True

    def admit(self):
        """True when the request may be answered; otherwise the refusal is sent."""
        if self.admitted is None:
            self.admitted = self.settle_body() and self.check_access()
        return self.admitted

    def reads_body(self):
        """Whether the method reads a request body: none does here (uploads do)."""
        return False

    def settle_body(self):
        """See that a body no method reads is never taken for the next request.

        A small one is read and dropped, by the head's deadline; after one
        of unknown length, a larger one, or one the client waits to be asked
        for (100-continue), the connection closes with the answer.  False
        once a 400 was sent for a length that cannot be read.
        """
        if self.reads_body():
            return True
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self.body_unread = True
            return True
        try:
            length = declared_length(self.headers)
        except ValueError as error:
            return self.refuse_access(HTTPStatus.BAD_REQUEST, str(error))
        if not length:
            return True
        if length > MAX_IGNORED_BODY or "Expect" in self.headers \
                or len(self.rfile.read(length)) < length:
            self.close_connection = True
            self.body_unread = True
        return True

    def check_access(self):
        """Host first (one, well formed, then DNS rebinding), then the secret
        (a 404 like any unknown path, so a wrong link learns nothing), a page
        of another site fetching in passing, the password, and the Origin of
        uploads (no other web site may push files here)."""
        server = self.server
        settings = server.settings
        problem = host_field_problem(self.headers.get_all("Host") or [], self.path)
        if problem:
            return self.refuse_access(HTTPStatus.BAD_REQUEST, problem)
        host = self.headers.get("Host")
        if not host_allowed(host, server.host_names):
            return self.refuse_access(MISDIRECTED_REQUEST,
                                      "woof answers only to this machine's addresses and "
                                      "names, not to %r (allow a name with --allow-host)"
                                      % host_name(host))
        try:
            path = request_path(self.path)
        except ValueError:  # urlsplit's "Invalid IPv6 URL", as in http://[/x
            return self.refuse_access(HTTPStatus.BAD_REQUEST,
                                      "the request target cannot be read")
        if settings.secret:
            path = strip_secret(path, settings.secret)
            if path is None:
                return self.refuse_access(HTTPStatus.NOT_FOUND)
        self.inner_path = path
        if foreign_subresource(self.headers):
            # Else any page a person on this network visits could take the
            # download with an <img> (a guessable address without --secret).
            return self.refuse_access(HTTPStatus.FORBIDDEN,
                                      "another web site's page asked for this; "
                                      "open the link itself")
        if settings.password_digest and not self.check_password():
            return False
        origin = self.headers.get("Origin")
        if self.command in UPLOAD_METHODS and origin is not None \
                and not same_origin(origin, server.scheme, host):
            return self.refuse_access(HTTPStatus.FORBIDDEN,
                                      "uploads from another web site are refused")
        return True

    def check_password(self):
        """Basic authentication (RFC 7617), slowed down after repeated failures."""
        given = basic_password(self.headers.get("Authorization"))
        right, wait = self.server.password_guard.attempt(client_host(self.client_address), given)
        if right:
            return True
        if wait:
            return self.refuse_access(HTTPStatus.TOO_MANY_REQUESTS,
                                      "too many wrong passwords; try again later",
                                      ("Retry-After", str(int(wait) + 1)))
        challenge = 'Basic realm="%s", charset="UTF-8"' % AUTH_REALM
        return self.refuse_access(HTTPStatus.UNAUTHORIZED,
                                  "no password given" if given is None else "wrong password",
                                  ("WWW-Authenticate", challenge))

    def refuse_access(self, status, text=None, *headers):
        """Answer a refused request with a short text and close; return False.

        The connection closes because a body the client may be sending is
        never read.
        """
        if status == HTTPStatus.NOT_FOUND:
            # Exactly what an unknown path gets; only a body left unread closes.
            self.close_connection = self.close_connection or self.command in UPLOAD_METHODS
            self.send_not_found()
            return False
        self.close_connection = True
        self.note = text
        self.send_small(status, text + "\n", ("Connection", "close"), *headers)
        return False

    def send_not_found(self):
        """The one 404 for every path woof does not serve: nothing tells them apart."""
        self.send_small(HTTPStatus.NOT_FOUND, "Not found.\n")

    # Logging: everything goes through log_outcome() and log_message().

    def log_request(self, code="-", size="-"):
        self.status = int(code) if isinstance(code, int) else code

    def log_error(self, format, *args):
        pass  # send_error() keeps its message as the note; timeouts need no line

    def send_error(self, code, message=None, explain=None):
        # Our message goes in the page, not the status line, which must stay
        # the standard reason phrase (and latin-1).
        self.note = message or ""
        super().send_error(code, None, message if explain is None else explain)

    def log_message(self, format, *args):
        self.server.log.info("%s %s" % (client_host(self.client_address), format % args))

    def log_outcome(self):
        """Log the request's one line, once, if it got a response."""
        if self.status is None or self.logged:
            return
        self.logged = True
        request = printable_name(getattr(self, "requestline", "") or "-")
        parts = ['"%s"' % request, str(self.status)]
        if self.transfer is not None:
            parts.append(self.transfer.summary())
        elif self.body_sent is not None:
            parts.append(format_size(self.body_sent))
        if self.note:
            parts.append(self.painted_note())
        line = " ".join(parts)
        if self.server.settings.secret:
            line = hide_secret(line, self.server.settings.secret)
        self.log_message("%s", line)

    def painted_note(self):
        """The note, its outcome in colour on a terminal: complete, or aborted."""
        log = self.server.log
        if self.note.startswith("aborted"):
            return log.paint(self.note, SGR_ABORTED)
        if self.note.endswith("complete"):
            return log.paint(self.note, SGR_COMPLETE)
        return self.note

    def redirect(self, location):
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_small(self, status, text, *headers, content_type="text/plain; charset=utf-8"):
        """Answer with a short text (plain unless told) and any extra (name, value) headers."""
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def repr_digest(sha256):
    """The Repr-Digest field of a representation with this SHA-256 (RFC 9530,
    3): a dictionary of structured fields whose value is a byte sequence."""
    return "sha-256=:%s:" % base64.b64encode(sha256).decode("ascii")


def counted_text(counted):
    """A completion (n, count) as people read it: "2 of 3", or "2" without a limit."""
    number, count = counted
    return "%d of %d" % counted if count else "%d" % number


def describe_transfer_error(error):
    """Why a transfer stopped, in a few words."""
    if isinstance(error, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        return "the client went away"
    if isinstance(error, socket.timeout):
        return "the client stopped reading"
    return getattr(error, "strerror", None) or str(error)


def describe_tls_error(error):
    """Why a TLS handshake failed, in a few words."""
    if isinstance(error, socket.timeout):
        return "the client did not finish it in time"
    return getattr(error, "reason", None) or describe_transfer_error(error)


# ---------------------------------------------------------------------------
# HTTP handler for downloads
# ---------------------------------------------------------------------------

class DownloadHandler(BaseHandler):
    """Answers GET and HEAD with the server's offer: ranges, validators,
    and each delivery recorded (what counts as a download)."""

    # Methods

    def do_GET(self):
        self.answer_download(sending_body=True)

    def do_HEAD(self):
        self.answer_download(sending_body=False)

    def do_POST(self):
        self.refuse_method()

    def do_PUT(self):
        self.refuse_method()

    def refuse_method(self):
        self.close_connection = True
        self.send_small(HTTPStatus.METHOD_NOT_ALLOWED,
                        "woof is offering a download here: only GET and HEAD work.\n",
                        ("Allow", "GET, HEAD"), ("Connection", "close"))

    # Downloads

    def answer_download(self, sending_body):
        server = self.server
        if not server.begin_response():
            self.close_connection = True
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished")
            return
        try:
            self.answer_offer(sending_body)
        finally:
            self.log_outcome()  # before woof may exit: the last line is never lost
            server.end_response()

    def answer_offer(self, sending_body):
        server = self.server
        path = self.inner_path
        if is_side_request(path):
            self.send_not_found()
            return
        if path != "/" + server.offer.name:
            self.redirect(server.offer_path)
            return
        try:
            body = server.offer.open(sending_body, self.headers.get("Range") is not None)
        except Unavailable as error:
            if error.retry_after is not None:
                self.note = str(error)
                self.send_small(error.status, str(error) + "\n",
                                ("Retry-After", str(error.retry_after)))
            else:
                self.send_error(error.status, str(error))
            return
        try:
            span = self.send_head(body, sending_body)
            if span is not None and sending_body:
                self.send_body(body, span)
        finally:
            body.close()

    def send_head(self, body, sending_body=True):
        """Send the status line and headers for `body`.

        Returns the span (start, stop) of the body to send, or None when the
        answer has no body (304, 409, 416).  The caller sends the body, if any,
        and closes `body`.
        """
        if self.not_modified(body):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_validators(body)
            self.end_headers()
            return None
        span = (0, body.size)
        status = HTTPStatus.OK
        range_header = self.headers.get("Range")
        # An empty body has no byte to select; answering 416 would leave a
        # client that always asks for "bytes=0-" unable ever to finish.
        if range_header and body.size and self.range_allowed(body):
            try:
                asked = parse_range(range_header, body.size)
            except UnsatisfiableRange:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", "bytes */%d" % body.size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            conflict = self.resume_conflict(body, asked)
            if conflict:
                # The client holds part of another archive (RFC 9110, 15.5.10).
                self.send_error(HTTPStatus.CONFLICT, conflict)
                return None
            if asked is not None:
                span, status = asked, HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", self.server.offer.content_type)
        self.send_header("Content-Disposition", content_disposition(self.server.offer.name))
        self.send_header("X-Content-Type-Options", "nosniff")
        # A cached copy would be revalidated (304), which never counts: a
        # browser fetching twice for -c 2 must get the bytes twice.
        self.send_header("Cache-Control", "no-store")
        self.send_validators(body)
        self.send_length(body, span, status)
        if sending_body:
            # Before the headers go: aria2c opens its other connections as
            # soon as it has them, and their ranges must find this noted.
            self.server.ledger.note_sending(self.client_address, body)
        self.end_headers()
        return span

    def send_validators(self, body):
        if body.etag:
            self.send_header("ETag", body.etag)
        if body.mtime is not None:
            self.send_header("Last-Modified", http_date(body.mtime))
        digest = body.digest
        if digest is not None:
            self.send_header("Repr-Digest", repr_digest(digest))

    def send_length(self, body, span, status):
        if body.size is None:
            self.send_header("Accept-Ranges", "none")
            if self.request_version == "HTTP/1.1":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.close_connection = True
                self.send_header("Connection", "close")
            return
        self.send_header("Accept-Ranges", "bytes")
        start, stop = span
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, stop - 1, body.size))
        self.send_header("Content-Length", str(stop - start))

    def not_modified(self, body):
        """True when the client's cached copy is current (RFC 7232, 3.2 and 3.3)."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            if not body.etag:
                return False
            tags = [tag.strip() for tag in if_none_match.split(",")]
            weak_etag = "W/" + body.etag
            return "*" in tags or body.etag in tags or weak_etag in tags
        since = parse_http_date(self.headers.get("If-Modified-Since", ""))
        if since is None or since > time.time():  # a future date is invalid (RFC 7232, 3.3)
            return False
        return body.mtime is not None and int(body.mtime) <= since

    def resume_conflict(self, body, span):
        """Why a span must not be sent to this client, or None.

        Only a span that the client would join to bytes it got before, of
        another state of the offer, without If-Range to tell: the whole
        body, or a validated span, joins nothing that could mismatch.
        """
        conflict = body.resume_conflict
        if (not conflict or span is None or span == (0, body.size)
                or self.headers.get("If-Range") is not None):
            return None
        if self.server.ledger.may_resume(self.client_address, body.etag):
            return None
        return conflict

    def range_allowed(self, body):
        """Whether If-Range lets the Range header apply (RFC 7233, 3.2)."""
        if_range = self.headers.get("If-Range")
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith(('"', "W/")):
            return bool(body.etag) and if_range == body.etag
        return body.mtime is not None and if_range == http_date(body.mtime)

    def send_body(self, body, span):
        start, stop = span
        chunked = body.size is None and self.request_version == "HTTP/1.1"
        sink = ResponseSink(self.connection, chunked,
                            use_sendfile=HAS_OS_SENDFILE and self.server.tls is None)
        server = self.server
        complete = False
        received = 0
        self.transfer = server.progress.begin(
            client_host(self.client_address), downloading(server.offer.name, span, body.size),
            server.offer.name, None if body.size is None else stop - start, sink.received)
        try:
            body.write(sink, start, stop)
            sink.finish()
            lacking = sink.wait_for_delivery(server.settings.timeout)
            received = sink.sent - lacking
            complete = not lacking
            if lacking:
                self.close_connection = True
                self.note = "aborted: the client did not receive the last %s" % format_size(lacking)
        except (OSError, WoofError) as error:
            received = sink.received()
            self.close_connection = True
            self.note = "aborted: %s" % describe_transfer_error(error)
        finally:
            server.progress.end(self.transfer)
            self.body_sent = sink.sent
            counted = server.record_delivery(self.client_address, body, start, received, complete)
        if counted:
            self.note = "download %s complete" % counted_text(counted)
        elif complete:
            self.note = "complete" if (start, stop) == (0, body.size) else "part complete"
        if server.finished.is_set():
            self.close_connection = True


def downloading(name, span, size):
    """What a download is, for the line that says it began."""
    start, stop = span
    if size is None:
        return "is downloading %s" % printable_name(name)
    if (start, stop) == (0, size):
        return "is downloading %s (%s)" % (printable_name(name), format_size(size))
    return "is downloading %s of %s (%s), from byte %d" % (
        format_size(stop - start), printable_name(name), format_size(size), start)


# ---------------------------------------------------------------------------
# Upload page: one self-contained page, its script, what it says
# ---------------------------------------------------------------------------

# One self-contained page: no external resource, so it works offline and
# under a strict Content-Security-Policy.  Without JavaScript the form posts
# as it is (one request, one upload); with it, each file goes on its own,
# resumable requests, and one Send is still one upload.
UPLOAD_PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Send files with woof</title>
<style>
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fbfbfd;--soft:#5f6368;--line:#c4c7cc;--accent:#0a5cc2;
--pale:#e8eef8}
@media (prefers-color-scheme:dark){:root{--fg:#ececf0;--bg:#17181b;--soft:#a8acb3;--line:#4a4d55;
--accent:#7fb2ff;--pale:#262b35}}
body{font:1rem/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);
max-width:38rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
*{box-sizing:border-box}
fieldset{border:2px dashed var(--line);border-radius:.8rem;padding:1rem;display:grid;gap:.8rem;
margin:0;min-width:0}
fieldset.over{border-color:var(--accent)}
fieldset:disabled{opacity:.6}
legend{padding:0 .3rem}
.pick{display:grid;gap:.3rem}
.pick[hidden]{display:none}
label{font-weight:600;order:-1}
input{max-width:100%;font:inherit}
button,.js .pick label{font:inherit;font-weight:600;padding:.7rem 1.2rem;border-radius:.6rem;
justify-self:start;cursor:pointer;min-height:2.75rem}
button{border:0;background:var(--accent);color:var(--bg);padding:.7rem 1.6rem}
button:disabled{opacity:.5;cursor:default}
.js .pick{grid-template-columns:auto 1fr;align-items:center;gap:.8rem}
.js .pick label{border:2px solid var(--accent);color:var(--accent);background:var(--pale)}
.js .native{position:absolute;width:1px;height:1px;opacity:0;overflow:hidden}
.js .native:focus-visible+label{outline:3px solid var(--accent);outline-offset:2px}
.chosen{color:var(--soft);overflow-wrap:anywhere}
ul{list-style:none;padding:0}
li{margin:.6rem 0;overflow-wrap:anywhere}
progress{display:block;width:100%;height:.7rem;accent-color:var(--accent)}
small,.hint{color:var(--soft)}
#status{white-space:pre-line;font-weight:600}
#left.over{color:var(--fg);font-weight:600}
li.verified small{color:#1a7f37}
li.failed small{color:#c5221f}
@media (prefers-color-scheme:dark){li.verified small{color:#6fdd8b}li.failed small{color:#ff8a80}}
</style></head><body>
<h1>Send files</h1>
"""

UPLOAD_FORM = """<form id="form" method="post" enctype="multipart/form-data">
<fieldset id="drop"><legend class="hint" id="hint">Choose files, or a folder, to send.</legend>
<div class="pick"><input id="files" class="native" type="file" name="file" multiple>
<label for="files">Choose files</label><span class="chosen" id="files-chosen"></span></div>
<div class="pick"><input id="folder" class="native" type="file" name="file" webkitdirectory multiple>
<label for="folder">Choose a folder</label><span class="chosen" id="folder-chosen"></span></div>
<button id="send">Send</button>
</fieldset></form>
<p class="hint" id="left">%(left_text)s</p>
<p class="hint" id="awake" hidden>Keep this screen on until sending ends: a phone that locks
stops sending, and woof goes on where it stopped when you come back.</p>
<p id="status" role="status" aria-live="polite"></p>
<ul id="list"></ul>
"""

# The page's script: each file on requests of its own, resumable (see the
# section "HTTP handler for resumable uploads"), its SHA-256 computed in a
# worker as it goes and compared with woof's.
UPLOAD_SCRIPT = r"""(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var form = $("form"), drop = $("drop"), list = $("list"), status = $("status"),
      inputs = [$("files"), $("folder")];
  var canDrop = window.matchMedia && matchMedia("(hover: hover) and (pointer: fine)").matches;
  // The interop version of the resumable upload draft spoken; files sent
  // at once; the waits between retries, in seconds.
  var INTEROP = "8", AT_ONCE = 3, WAITS = [1, 2, 5, 10, 20, 30];
  // How long a request may show no sign of life before it is given up and
  // tried again, in seconds: while its body goes out, and once all of it is
  // handed to the system (a slow link may take a while to carry what the
  // system buffered).  A network that vanishes without a reset (a phone
  // that changes networks) leaves a request hanging otherwise.  A test can
  // set window.woofQuietSeconds before the page runs, to wait less.
  var QUIET = window.woofQuietSeconds || {sending: 30, answering: 120};
  var wakeLock = null, sending = 0;
  document.documentElement.className = "js";
  if (canDrop) $("hint").textContent = "Choose files, or a folder, or drop them here.";
  if (!("webkitdirectory" in $("folder"))) $("folder").parentNode.hidden = true;

  // Words and numbers

  function size(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < 4) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function duration(s) {
    if (!isFinite(s)) return "\u2026";
    return s < 60 ? Math.ceil(s) + " s" : Math.floor(s / 60) + " min " + Math.ceil(s % 60) + " s";
  }
  function percent(part, whole) { return whole ? Math.floor(100 * part / whole) + "%" : "100%"; }
  function byName(a, b) { return a.name.localeCompare(b.name, undefined, {numeric: true}); }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function randomId() {
    var bytes = new Uint8Array(12), text = "";
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    for (var i = 0; i < bytes.length; i++) text += ("0" + bytes[i].toString(16)).slice(-2);
    return text;
  }
  function hexOfBase64(text) {
    var raw = atob(text), hex = "";
    for (var i = 0; i < raw.length; i++) hex += ("0" + raw.charCodeAt(i).toString(16)).slice(-2);
    return hex;
  }
  function base64OfHex(hex) {
    var raw = "";
    for (var i = 0; i < hex.length; i += 2) raw += String.fromCharCode(parseInt(hex.substr(i, 2), 16));
    return btoa(raw);
  }

  // SHA-256 (FIPS 180-4), fed a piece at a time.  Its source also runs in
  // a worker; crypto.subtle hashes only whole buffers, and only in a secure
  // context.

  function sha256Code() {
    var K = new Int32Array([0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2]);
    function Sha256() {
      this.state = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f,
                                   0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
      this.words = new Int32Array(64);
      this.pending = new Uint8Array(64);
      this.filled = 0;
      this.length = 0;
    }
    Sha256.prototype.compress = function (bytes, at) {
      var w = this.words, s = this.state, t, x, y;
      for (t = 0; t < 16; t++, at += 4) {
        w[t] = bytes[at] << 24 | bytes[at + 1] << 16 | bytes[at + 2] << 8 | bytes[at + 3];
      }
      for (t = 16; t < 64; t++) {
        x = w[t - 15]; y = w[t - 2];
        w[t] = ((x >>> 7 | x << 25) ^ (x >>> 18 | x << 14) ^ x >>> 3)
             + ((y >>> 17 | y << 15) ^ (y >>> 19 | y << 13) ^ y >>> 10) + w[t - 16] + w[t - 7];
      }
      var a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
      for (t = 0; t < 64; t++) {
        x = h + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7))
              + (e & f ^ ~e & g) + K[t] + w[t] | 0;
        y = ((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10))
              + (a & b ^ a & c ^ b & c) | 0;
        h = g; g = f; f = e; e = d + x | 0; d = c; c = b; b = a; a = x + y | 0;
      }
      s[0] = s[0] + a | 0; s[1] = s[1] + b | 0; s[2] = s[2] + c | 0; s[3] = s[3] + d | 0;
      s[4] = s[4] + e | 0; s[5] = s[5] + f | 0; s[6] = s[6] + g | 0; s[7] = s[7] + h | 0;
    };
    Sha256.prototype.update = function (bytes) {
      var at = 0, n = bytes.length;
      this.length += n;
      if (this.filled) {
        at = Math.min(64 - this.filled, n);
        this.pending.set(bytes.subarray(0, at), this.filled);
        this.filled += at;
        if (this.filled < 64) return;
        this.compress(this.pending, 0);
        this.filled = 0;
      }
      for (; at + 64 <= n; at += 64) this.compress(bytes, at);
      this.pending.set(bytes.subarray(at), 0);
      this.filled = n - at;
    };
    Sha256.prototype.hex = function () {
      var bits = this.length * 8, tail = new Uint8Array(this.filled < 56 ? 64 : 128), i;
      tail.set(this.pending.subarray(0, this.filled));
      tail[this.filled] = 0x80;
      for (i = 0; i < 8; i++) tail[tail.length - 1 - i] = Math.floor(bits / Math.pow(2, 8 * i)) & 255;
      for (i = 0; i < tail.length; i += 64) this.compress(tail, i);
      var hex = "";
      for (i = 0; i < 8; i++) hex += ("0000000" + (this.state[i] >>> 0).toString(16)).slice(-8);
      return hex;
    };
    return Sha256;
  }

  // In the worker: hash one file, a slice at a time, saying how far it got.
  function hashWorker(Sha256) {
    self.onmessage = function (event) {
      var file = event.data, reader = new FileReaderSync(), hash = new Sha256(), at = 0;
      while (at < file.size) {
        var piece = new Uint8Array(reader.readAsArrayBuffer(file.slice(at, at + (4 << 20))));
        hash.update(piece);
        at += piece.length;
        self.postMessage({done: at});
      }
      self.postMessage({hex: hash.hex()});
    };
  }

  var Sha256 = sha256Code();
  var workerUrl = (function () {
    try {
      var source = "(" + hashWorker + ")((" + sha256Code + ")());";
      return URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
    } catch (error) { return null; }
  })();

  // The SHA-256 of a file, in hex: in a worker where the browser has them,
  // else here, a slice at a time between other work.
  function hashFile(file) {
    return hashInWorker(file).catch(function () { return hashHere(file); });
  }
  function hashInWorker(file) {
    return new Promise(function (resolve, reject) {
      if (!workerUrl || !window.Worker) { reject(new Error("no worker")); return; }
      var worker = new Worker(workerUrl);
      worker.onmessage = function (event) {
        if (event.data.hex) { worker.terminate(); resolve(event.data.hex); }
      };
      worker.onerror = function (event) { event.preventDefault(); worker.terminate(); reject(new Error("worker")); };
      worker.postMessage(file);
    });
  }
  function hashHere(file) {
    return new Promise(function (resolve, reject) {
      var hash = new Sha256(), at = 0;
      (function next() {
        if (at >= file.size) { resolve(hash.hex()); return; }
        var reader = new FileReader();
        reader.onload = function () {
          hash.update(new Uint8Array(reader.result));
          at += reader.result.byteLength;
          setTimeout(next, 0);
        };
        reader.onerror = function () { reject(reader.error); };
        reader.readAsArrayBuffer(file.slice(at, at + (1 << 20)));
      })();
    });
  }
  window.woofSha256 = Sha256;  // for the tests

  // The screen stays on while files go: a phone that locks stops sending.

  function keepAwake() {
    sending++;
    if (!navigator.wakeLock) {
      $("awake").hidden = false;
      return;
    }
    if (wakeLock) return;
    navigator.wakeLock.request("screen").then(function (lock) {
      wakeLock = lock;
      lock.addEventListener("release", function () { wakeLock = null; });
    }, function () { $("awake").hidden = false; });
  }
  function mayRest() {
    sending = Math.max(0, sending - 1);
    if (sending || !wakeLock) return;
    wakeLock.release();
    wakeLock = null;
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !sending) return;
    sending--;
    keepAwake();
    retryNow();
  });

  // Remembered uploads, so that a reload and the same files picked again
  // continue where woof has them.

  function recall(key) {
    try { return localStorage.getItem(key); } catch (error) { return null; }
  }
  function keep(key, value) {  // a value of null forgets
    try {
      if (value) localStorage.setItem(key, value);
      else localStorage.removeItem(key);
    } catch (error) { /* private browsing: no resume after a reload */ }
  }
  function fileKey(item) {
    return "woof " + location.pathname + " " + item.name + " " + item.file.size + " "
      + item.file.lastModified;
  }
  // The same files sent again after a reload are the same Send: same id,
  // so that woof counts them as one upload and sends none twice.
  function sendKey(files) {
    return "woof send " + location.pathname + " " + files.map(function (item) {
      return item.name + " " + item.file.size + " " + item.file.lastModified;
    }).join("/");
  }

  // Requests

  function request(method, url, headers, body, onProgress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest(), watch = giveUpWhenQuiet(xhr);
      xhr.open(method, url);
      xhr.setRequestHeader("Accept", "text/plain");
      xhr.setRequestHeader("Upload-Draft-Interop-Version", INTEROP);
      Object.keys(headers).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
      xhr.upload.onprogress = function (event) {
        watch(event.loaded < event.total ? QUIET.sending : QUIET.answering);
        if (onProgress) onProgress(event.loaded);
      };
      xhr.onprogress = function () { watch(QUIET.answering); };
      xhr.onload = function () { resolve(xhr); };
      xhr.onerror = xhr.ontimeout = xhr.onabort = function () { resolve(null); };
      xhr.onloadend = function () { watch(0); };
      xhr.send(body === undefined ? null : body);
      watch(QUIET.sending);
    });
  }
  // watch(seconds): abort xhr unless something moves within that long;
  // watch(0): stop watching.
  function giveUpWhenQuiet(xhr) {
    var timer = null;
    return function watch(seconds) {
      clearTimeout(timer);
      timer = seconds ? setTimeout(function () { xhr.abort(); }, seconds * 1000) : null;
    };
  }
  // Answers to files sent at once can arrive in any order: the count woof
  // still takes only goes down, so the lowest one seen is the news.
  var fewestLeft = Infinity;
  function uploadsLeft(xhr) {
    var left = parseInt(xhr && xhr.getResponseHeader("Woof-Uploads-Left"), 10);
    if (isNaN(left) || left >= fewestLeft) return;
    fewestLeft = left;
    showLeft(left);
  }
  // A failure worth trying again: no answer, or woof busy for a while.
  function passing(xhr) {
    return !xhr || xhr.status === 0 || (xhr.status >= 500 && xhr.status !== 507 && !finished(xhr));
  }
  function finished(xhr) { return /has finished/.test(xhr.responseText || ""); }
  function failure(xhr) {
    return "Not saved (" + xhr.status + "): " + (xhr.responseText || xhr.statusText).trim();
  }

  // One file, resumable: created empty, its bytes appended from wherever
  // woof has them, then completed with the SHA-256 the page computed.

  function createUpload(item, batch) {
    var url = form.action.replace(/\/?$/, "/")
      + item.name.split("/").map(encodeURIComponent).join("/");
    return request("POST", url, {"Upload-Complete": "?0", "Upload-Length": String(item.file.size),
                                 "Woof-Batch": batch.id, "Woof-Batch-Files": String(batch.files)})
      .then(function (xhr) {
        uploadsLeft(xhr);
        if (xhr && xhr.status === 201 && xhr.getResponseHeader("Location")) {
          item.url = new URL(xhr.getResponseHeader("Location"), location.href).href;
          keep(fileKey(item), item.url);
          item.offset = 0;
          item.known = true;
          return true;
        }
        if (passing(xhr)) return false;
        throw new Error(failure(xhr));
      });
  }
  // Ask woof how much of the file it has: true with item.offset set, false
  // to retry later; a forgotten upload starts again.
  function findOffset(item) {
    return request("HEAD", item.url, {}).then(function (xhr) {
      if (xhr && xhr.status >= 200 && xhr.status < 300) {
        item.offset = parseInt(xhr.getResponseHeader("Upload-Offset"), 10) || 0;
        item.complete = xhr.getResponseHeader("Upload-Complete") === "?1";
        item.serverHash = digestOf(xhr);
        item.known = true;
        if (item.offset > 0 && !item.complete) {
          item.resumed = "resumed at " + percent(item.offset, item.file.size);
          note(item, item.resumed);
        }
        return true;
      }
      if (xhr && xhr.status === 409) return false;  // the old request is still letting go
      if (xhr && xhr.status === 404) {
        item.url = null;
        keep(fileKey(item), null);
        return true;
      }
      if (passing(xhr)) return false;
      throw new Error(failure(xhr));
    });
  }
  function appendRest(item) {
    var from = item.offset;
    item.offsetAtStart = from;
    item.started = Date.now();
    return request("PATCH", item.url, {"Upload-Complete": "?0", "Upload-Offset": String(from),
                                       "Content-Type": "application/partial-upload"},
                   item.file.slice(from), function (loaded) { showSending(item, from + loaded); })
      .then(function (xhr) {
        uploadsLeft(xhr);
        if (xhr && xhr.status >= 200 && xhr.status < 300) {
          item.offset = item.file.size;
          return true;
        }
        if (xhr && xhr.status === 409) return false;  // woof has other bytes: ask again
        if (passing(xhr)) return false;
        throw new Error(failure(xhr));
      });
  }
  function complete(item) {
    return item.hash.then(function (hex) {
      return request("PATCH", item.url, {"Upload-Complete": "?1", "Upload-Offset": String(item.offset),
                                         "Content-Type": "application/partial-upload",
                                         "Repr-Digest": "sha-256=:" + base64OfHex(hex) + ":"});
    }).then(function (xhr) {
      uploadsLeft(xhr);
      if (xhr && xhr.status >= 200 && xhr.status < 300) {
        item.serverHash = digestOf(xhr);
        item.saved = xhr.responseText;
        return true;
      }
      if (xhr && xhr.status === 422) {
        keep(fileKey(item), null);
        throw new Error("Not saved: the bytes woof received differ from this file's. Send it again.");
      }
      if (xhr && xhr.status === 409) return false;
      if (passing(xhr)) return false;
      throw new Error(failure(xhr));
    });
  }
  function digestOf(xhr) {
    var match = /sha-256=:([A-Za-z0-9+\/=]+):/.exec(xhr.getResponseHeader("Repr-Digest") || "");
    return match ? hexOfBase64(match[1]) : null;
  }

  // One file, until it is saved: each move either advances or, when the
  // network is away, waits and asks woof where it stands; what woof has is
  // never sent again.
  function sendFile(item, batch) {
    item.hash = hashFile(item.file);
    return untilSaved(item, batch).then(function () { return verify(item); });
  }
  // After a reload, woof is asked where each file sent before stands
  // before any file goes on: the last file saved ends woof, which answers
  // nobody after, so a file saved before the reload would never hear back.
  function askWhereEachStands(items) {
    items.forEach(function (item) {
      item.url = recall(fileKey(item));
      item.known = false;
    });
    return fewAtOnce(items.filter(function (item) { return item.url; }), learnWhereItStands);
  }
  // Asked until woof answers (a network away now and then is waited for),
  // as another file may end woof the moment this one goes on; a refusal is
  // met again, and shown, when the file's turn comes.
  function learnWhereItStands(item) {
    return findOffset(item).then(function (known) {
      return known || retryAfterWait(item).then(function () { return learnWhereItStands(item); });
    }, function () { return false; });
  }
  // work(item) for each item, AT_ONCE of them at a time.
  function fewAtOnce(items, work) {
    var left = items.slice(), runs = [];
    function next() {
      var item = left.shift();
      return item ? work(item).then(next) : Promise.resolve();
    }
    for (var i = 0; i < Math.min(AT_ONCE, items.length); i++) runs.push(next());
    return Promise.all(runs);
  }
  function untilSaved(item, batch) {
    return advance(item, batch).then(function (saved) {
      if (saved) return null;
      item.known = false;
      return retryAfterWait(item).then(function () { return untilSaved(item, batch); });
    });
  }
  // The next move: create, learn the offset, append the rest, complete.
  // True once saved, false after a failure worth a retry.
  function advance(item, batch) {
    var move;
    if (!item.url) move = createUpload(item, batch);
    else if (!item.known) move = findOffset(item);
    else if (item.complete) return Promise.resolve(true);
    else if (item.offset < item.file.size) move = appendRest(item);
    else return complete(item);
    return move.then(function (moved) { return moved && advance(item, batch); });
  }

  var waiting = [];
  function retryAfterWait(item) {
    var seconds = WAITS[Math.min(item.retries || 0, WAITS.length - 1)];
    item.retries = (item.retries || 0) + 1;
    return new Promise(function (resolve) {
      var timer, left = seconds, gone = false;
      function go() {  // once: by its timer, or sooner when the network is back
        if (gone) return;
        gone = true;
        clearInterval(timer);
        waiting.splice(waiting.indexOf(go), 1);
        resolve();
      }
      waiting.push(go);
      note(item, "connection lost, retrying in " + left + " s");
      timer = setInterval(function () {
        left--;
        if (left <= 0) go();
        else note(item, "connection lost, retrying in " + left + " s");
      }, 1000);
    });
  }
  function retryNow() { waiting.slice().forEach(function (go) { go(); }); }
  window.addEventListener("online", retryNow);

  function verify(item) {
    return item.hash.then(function (hex) {
      item.retries = 0;
      item.bar.value = item.bar.max;
      if (item.serverHash === hex) {
        item.row.className = "verified";
        note(item, "verified: SHA-256 " + hex.slice(0, 16) + "\u2026 on both sides"
          + (item.resumed ? " (" + item.resumed + ")" : ""));
        item.verified = true;
      } else {
        item.row.className = "failed";
        note(item, "saved, but woof did not confirm its SHA-256");
      }
    });
  }

  // What the person sees of each file

  function note(item, text) { item.note.textContent = text; }
  function showSending(item, done) {
    var seconds = Math.max((Date.now() - item.started) / 1000, 0.001),
        rate = (done - item.offsetAtStart) / seconds;
    item.bar.value = item.file.size ? done : 1;
    item.retries = 0;
    note(item, (item.resumed ? item.resumed + "; " : "") + percent(done, item.file.size) + ", "
      + size(rate) + "/s, " + duration((item.file.size - done) / rate) + " left");
  }
  function addRow(item) {
    var row = document.createElement("li"), bar = document.createElement("progress"),
        small = document.createElement("small");
    bar.max = item.file.size || 1; bar.value = 0;
    bar.setAttribute("aria-label", item.name);
    row.append(item.name + " (" + size(item.file.size) + ") ", small, bar);
    list.append(row);
    item.row = row; item.bar = bar; item.note = small;
  }
  function chosen() {
    inputs.forEach(function (input) {
      var files = input.files, label = $(input.id + "-chosen");
      if (!files.length) { label.textContent = ""; return; }
      var folder = files[0].webkitRelativePath && files[0].webkitRelativePath.split("/")[0];
      label.textContent = folder ? folder + " (" + plural(files.length, "file") + ")"
        : files.length === 1 ? files[0].name : plural(files.length, "file");
    });
  }
  function showLeft(left) {
    if (left === null || isNaN(left)) return;
    if (left <= 0) {
      $("left").textContent = "woof has finished receiving: nothing more can be sent. "
        + "You can close this page.";
      $("left").className = "over";
      drop.disabled = true;
      return;
    }
    $("left").textContent = left === 1 ? "woof takes one more upload: choose everything, "
      + "then Send." : "woof takes " + left + " more uploads; each Send is one.";
  }

  // A Send: every file on its own requests, a few at once.

  function send(files) {
    if (!files.length) { status.textContent = "Choose a file first."; return; }
    var queue = files.slice().sort(byName), failed = 0, verified = 0,
        batch = {id: recall(sendKey(queue)) || randomId(), files: files.length};
    keep(sendKey(queue), batch.id);
    list.textContent = "";
    queue.forEach(function (item) {
      item.batch = batch; item.offset = 0; item.offsetAtStart = 0;
      addRow(item);
    });
    drop.disabled = true;
    keepAwake();
    status.textContent = "Sending " + plural(files.length, "file") + "\u2026";
    function sendOne(item) {
      return sendFile(item, batch).then(function () {
        if (item.verified) verified++;
      }, function (error) {
        failed++;
        item.row.className = "failed";
        note(item, error.message);
      });
    }
    askWhereEachStands(queue).then(function () {
      return fewAtOnce(queue, sendOne);
    }).then(function () {
      mayRest();
      if ($("left").className !== "over") drop.disabled = false;
      status.textContent = failed ? plural(files.length - failed, "file") + " saved, "
        + failed + " not saved:" : "Saved " + plural(files.length, "file")
        + (verified === files.length ? ", each verified:" : ":");
      if (failed) return;
      // Done: sending the same files again is a new Send.
      files.forEach(function (item) { keep(fileKey(item), null); });
      keep(sendKey(queue), null);
      form.reset();
      chosen();
    });
  }

  inputs.forEach(function (input) { input.addEventListener("change", chosen); });
  form.addEventListener("submit", function (event) {
    var files = [];
    event.preventDefault();
    inputs.forEach(function (input) {
      [].forEach.call(input.files, function (f) {
        files.push({file: f, name: f.webkitRelativePath || f.name});
      });
    });
    send(files);
  });
  if (!canDrop) return;
  function walk(entry, path, out) {
    return new Promise(function (done) {
      if (entry.isFile) {
        entry.file(function (f) { out.push({file: f, name: path + f.name}); done(); }, done);
        return;
      }
      var reader = entry.createReader(), children = [];
      (function more() {
        reader.readEntries(function (some) {
          if (some.length) { children = children.concat([].slice.call(some)); more(); return; }
          Promise.all(children.map(function (c) {
            return walk(c, path + entry.name + "/", out);
          })).then(done);
        }, done);
      })();
    });
  }
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    var items = [].slice.call(event.dataTransfer.items || []), files = [];
    event.preventDefault();
    drop.classList.remove("over");
    var entries = items.map(function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); })
                       .filter(Boolean);
    if (!entries.length) {
      [].forEach.call(event.dataTransfer.files, function (f) { files.push({file: f, name: f.name}); });
    }
    Promise.all(entries.map(function (e) { return walk(e, "", files); }))
      .then(function () { send(files); });
  });
})();
"""

UPLOAD_PAGE_TAIL = "</body></html>\n"

# The page runs its own inline script and posts to woof only.
UPLOAD_PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "worker-src blob:; child-src blob:; "
                      "connect-src 'self'; form-action 'self'; base-uri 'none'; "
                      "frame-ancestors 'none'")

# The uploads woof still takes, in every answer to an upload page or an
# upload, so the page can say how many are left and when it is over.
UPLOADS_LEFT_FIELD = "Woof-Uploads-Left"


def upload_page(saved=None, finished=False, left=None):
    """The upload page; after a form post, with the files saved, sorted by
    name.  `left`: the uploads woof still takes, None for no limit."""
    parts = [UPLOAD_PAGE_HEAD]
    if saved:
        items = "".join("<li>%s <small>(%s)</small></li>\n"
                        % (html.escape(item.name), format_size(item.size))
                        for item in sorted(saved, key=lambda item: item.name))
        parts.append('<p role="status">Saved:</p>\n<ul>\n%s</ul>\n' % items)
    if finished:
        parts.append("<p>woof has finished receiving; nothing more can be sent.</p>\n")
    else:
        parts.append(UPLOAD_FORM % {"left_text": uploads_left_text(left)})
        parts.append("<script>\n%s</script>\n" % UPLOAD_SCRIPT)
    parts.append(UPLOAD_PAGE_TAIL)
    return "".join(parts)


def uploads_left_text(left):
    """What the page says of the uploads left, before its script takes over."""
    if left == 1:
        return "woof takes one more upload: choose everything, then Send."
    if left:
        return "woof takes %d more uploads; each Send is one." % left
    return ""


def saved_text(saved):
    """The plain-text answer to an upload: one `saved NAME (SIZE, SHA-256 HEX)` line per file."""
    return "".join("saved %s (%s, SHA-256 %s)\n" % (item.name, format_size(item.size), item.sha256)
                   for item in saved)


def wants_html(headers):
    """True for browsers: their Accept header names text/html."""
    return "text/html" in (headers.get("Accept") or "").lower()


# ---------------------------------------------------------------------------
# HTTP handler for uploads: the page, form posts and PUT
# ---------------------------------------------------------------------------

class FormUploadHandler(BaseHandler):
    """Receives files into settings.upload_dir: the upload page, form posts and PUT."""

    def do_GET(self):
        self.answer_page(sending_body=True)

    def do_HEAD(self):
        self.answer_page(sending_body=False)

    def do_POST(self):
        self.receive_upload(self.read_form)

    def do_PUT(self):
        self.receive_upload(self.read_put)

    def answer_page(self, sending_body):
        if self.server.finished.is_set():
            self.close_connection = True
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished")
            return
        path = self.inner_path
        if is_side_request(path):
            self.send_not_found()
        elif path != "/":
            self.redirect(self.server.base_path)
        else:
            self.send_html(HTTPStatus.OK, upload_page(left=self.server.uploads_left()))

    def end_headers(self):
        left = self.server.uploads_left()
        if left is not None:
            self.send_header(UPLOADS_LEFT_FIELD, str(left))
        super().end_headers()

    def send_html(self, status, text):
        # "same-origin", not "no-referrer": under no-referrer a browser sends
        # "Origin: null" with the form's post, which woof must refuse.
        self.send_small(status, text, ("Content-Security-Policy", UPLOAD_PAGE_POLICY),
                        ("X-Content-Type-Options", "nosniff"),
                        ("Referrer-Policy", "same-origin"), ("Cache-Control", "no-store"),
                        UPLOAD_MARKER, content_type="text/html; charset=utf-8")

    # Checks made before the body is read, and before "100 Continue" is sent
    # (RFC 7231, 5.1.1), so that a client told no never sends its body.

    def reads_body(self):
        return self.command in ("POST", "PUT")

    def before_continue(self):
        if self.reads_body():
            try:
                self.check_request()
            except UploadRefused as refusal:
                self.refuse(refusal, body_coming=False)
                return False
        return True

    def check_request(self):
        """Raise UploadRefused unless the request could be received; return its body length."""
        length = self.check_body()
        if self.command == "POST" and form_boundary(self.headers.get("Content-Type")) is None:
            raise UploadRefused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                "send files as multipart/form-data (curl -F file=@NAME URL) "
                                "or PUT them (curl -T NAME URL)")
        return length

    def check_body(self):
        """Raise UploadRefused unless a body of this request's length could be
        taken now; return the length (None: chunked)."""
        settings = self.server.settings
        if self.server.finished.is_set():
            raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished")
        length = self.body_length()
        if length is not None and settings.max_upload is not None \
                and length > settings.max_upload:
            raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                "the upload is %s, more than the %s allowed"
                                % (format_size(length), format_size(settings.max_upload)))
        if length:
            check_free_space(settings.upload_dir, length)
        return length

    def body_length(self):
        """The Content-Length, or None for a chunked body (RFC 7230, 3.3.3)."""
        codings = transfer_codings(self.headers)
        if codings is not None:
            if codings != ["chunked"]:
                raise UploadRefused(HTTPStatus.NOT_IMPLEMENTED,
                                    "only the chunked transfer coding is understood")
            return None
        try:
            length = declared_length(self.headers)
        except ValueError as error:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, str(error))
        if length is None:
            raise UploadRefused(HTTPStatus.LENGTH_REQUIRED,
                                "send a Content-Length or a chunked body")
        return length

    def open_body(self, length):
        if length is None:
            # Both framings given means the message cannot be trusted to end
            # where the client thinks (RFC 7230, 3.3.3): never reuse it.
            if "Content-Length" in self.headers:
                self.close_connection = True
            return ChunkedReader(self.rfile, self.server.settings.max_upload)
        return LengthReader(self.rfile, length)

    # Receiving

    def receive_upload(self, read_files):
        """Check, read and save one upload, then answer; count it when complete."""
        server = self.server
        try:
            length = self.check_request()
        except UploadRefused as refusal:
            self.refuse(refusal)
            return
        if not server.begin_response():
            self.refuse(UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished"))
            return
        try:
            self.save_and_answer(read_files, length)
        finally:
            self.log_outcome()  # before woof may exit: the last line is never lost
            server.end_response()

    def save_and_answer(self, read_files, length):
        """Save one upload as a batch, count it and answer, or leave no file behind."""
        server = self.server
        reader = self.open_body(length)
        batch = UploadBatch(server.settings.upload_dir)
        server.track_batch(batch, True)
        name = self.put_name() if self.command == "PUT" else "files"
        self.transfer = server.progress.begin(
            client_host(self.client_address), "is sending %s%s" % (
                printable_name(name), " (%s)" % format_size(length) if length else ""),
            name, length, lambda: reader.received, receiving=True)
        saved = None
        try:
            saved = self.save_upload(read_files, reader, batch)
        finally:
            server.progress.end(self.transfer)
            batch.discard()
            server.track_batch(batch, False)
        if saved:
            self.answer_saved(saved, server.count_upload(self.client_address, saved))

    def save_upload(self, read_files, reader, batch):
        """Read and publish the files of one upload; the SavedFile list, or None."""
        try:
            read_files(reader, batch)
            saved = batch.publish()
            if not saved:
                raise UploadRefused(HTTPStatus.BAD_REQUEST, "the request holds no file")
            return saved
        except UploadRefused as refusal:
            self.note = "aborted: %s" % refusal
            self.refuse(refusal)
        except WoofError as error:
            self.refuse(UploadRefused(HTTPStatus.INTERNAL_SERVER_ERROR, str(error)))
        except socket.timeout:
            self.note = "aborted: the client stopped sending"
            self.refuse(UploadRefused(HTTPStatus.REQUEST_TIMEOUT, "the client stopped sending"),
                        body_coming=False)
        except OSError as error:
            self.close_connection = True
            self.note = "aborted: %s" % describe_transfer_error(error)
        except Exception as error:
            # A defect of woof's own: one line, no file left, and woof serves on.
            self.server.log.warn("an upload failed: %s: %s" % (type(error).__name__, error))
            self.refuse(UploadRefused(HTTPStatus.INTERNAL_SERVER_ERROR,
                                      "woof failed to save the upload"))
        return None

    def read_form(self, reader, batch):
        parts = MultipartReader(reader, form_boundary(self.headers.get("Content-Type")))
        while True:
            part = parts.next_part()
            if part is None:
                break
            if part.filename is not None:
                self.transfer.name = part.filename
                batch.receive(part.filename, parts.read)
        if not parts.drain_epilogue():
            self.close_connection = True

    def put_name(self):
        """The name a PUT gives its file: the path, as the client sent it."""
        return name_bytes(self.inner_path).decode("utf-8", "replace").lstrip("/")

    def read_put(self, reader, batch):
        view = memoryview(bytearray(COPY_BUFFER_SIZE))
        batch.receive(self.put_name(), lambda: view[:reader.readinto(view)])

    def answer_saved(self, saved, counted):
        who = client_host(self.client_address)
        for item in saved:
            self.server.log.info("%s saved %s (%s in %s, %s, SHA-256 %s)"
                                 % (who, printable_name(item.name), format_size(item.size),
                                    format_elapsed(item.seconds),
                                    format_rate(item.size, item.seconds), item.sha256))
        files = "%d files" % len(saved) if len(saved) > 1 else "1 file"
        self.note = "%s, %s" % (files, format_size(sum(item.size for item in saved)))
        if counted:
            self.note += "; upload %s complete" % counted_text(counted)
        finished = self.server.finished.is_set()
        if finished:
            self.close_connection = True
        if self.command == "PUT":
            location = self.server.base_path + urllib.parse.quote(saved[0].name.encode("utf-8"),
                                                                  safe="/")
            self.send_small(HTTPStatus.CREATED, saved_text(saved), ("Location", location))
        elif wants_html(self.headers):
            self.send_html(HTTPStatus.OK, upload_page(saved, finished, self.server.uploads_left()))
        else:
            self.send_small(HTTPStatus.OK, saved_text(saved))

    def refuse(self, refusal, body_coming=True):
        """Answer a refused or failed upload, and close the connection.

        A client still sending its body is let read the answer before the
        close (see linger).
        """
        self.close_connection = True
        self.body_unread = self.body_unread or body_coming
        if not self.note:
            self.note = str(refusal)
        try:
            self.send_small(refusal.status, str(refusal) + "\n", ("Connection", "close"))
            self.wfile.flush()
        except OSError:
            pass  # the client has gone; there is nobody left to tell


# ---------------------------------------------------------------------------
# HTTP handler for resumable uploads
# ---------------------------------------------------------------------------

# The interop versions of draft-ietf-httpbis-resumable-upload woof speaks:
# 6 (draft 05, which tus-js-client 4 speaks as "ietf-draft-05"), 7 (draft
# 06 to 08) and 8 (draft 09 and later, the latest).  The 104 interim
# answer goes only to a client that names one of them (draft, "Interop
# Version").
RESUMABLE_INTEROP_VERSIONS = ("6", "7", "8")
RESUMABLE_UPLOAD_TYPE = "application/partial-upload"
UPLOAD_RESUMPTION_SUPPORTED = 104
# Problem types (RFC 9457) of the draft's "Problem Types" section.
PROBLEM_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
PROBLEM_LENGTH = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
# What the upload page sends with each file of a Send: its id, and how many
# files the Send holds.
BATCH_FIELD = "Woof-Batch"
BATCH_FILES_FIELD = "Woof-Batch-Files"
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}\Z")
UPLOAD_TOKEN_IN_PATH = re.compile(r"(/%s)[^ /?#]+" % re.escape(UPLOAD_RESOURCE_PATH))


# An Integer of RFC 8941, 3.3.1, as woof takes it: not negative, 15 digits at most.
STRUCTURED_INTEGER = re.compile(r"[0-9]{1,15}\Z")


def structured_boolean(value):
    """A structured-field Boolean (RFC 8941, 3.3.6), parameters ignored:
    True, False, or None when absent or malformed."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    return {"?1": True, "?0": False}.get(item)


def structured_integer(value):
    """A non-negative structured-field Integer (RFC 8941, 3.3.1), or None."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    if not STRUCTURED_INTEGER.match(item):
        return None
    return int(item)


def upload_limit(max_upload, lifetime):
    """The Upload-Limit field: the size cap, if any, and how long an
    unfinished upload is kept (as max-age since draft 06, as expires
    before; each version ignores the key it does not know)."""
    limits = ["max-size=%d" % max_upload] if max_upload is not None else ["min-size=0"]
    limits.extend(["max-age=%d" % lifetime, "expires=%d" % lifetime])
    return ", ".join(limits)


def digest_from_field(value):
    """The SHA-256 (hex) a Repr-Digest field (RFC 9530, 3) gives, or None."""
    for member in (value or "").split(","):
        key, _, item = member.strip().partition("=")
        if key.strip().lower() == "sha-256" and item.startswith(":") and item.endswith(":"):
            try:
                raw = base64.b64decode(item[1:-1], validate=True)
            except (ValueError, TypeError):
                return None
            return raw.hex() if len(raw) == 32 else None
    return None


def resumed_text(offset, length):
    """How much of an upload a request begins with, for its first line."""
    if offset == 0:
        return " (%s)" % format_size(length) if length else ""
    if length:
        return ", resumed at %s of %s (%d%%)" % (format_size(offset), format_size(length),
                                                 100 * offset // length)
    return ", resumed at %s" % format_size(offset)


def problem_json(kind, title, **members):
    """An application/problem+json body (RFC 9457)."""
    import json
    problem = collections.OrderedDict([("type", kind), ("title", title)])
    problem.update(sorted(members.items()))
    return json.dumps(problem) + "\n"


def batch_fields(headers):
    """(batch id, files in it) the upload page sends, or (None, None)."""
    batch = headers.get(BATCH_FIELD)
    if batch is None:
        return None, None
    files = structured_integer(headers.get(BATCH_FILES_FIELD))
    if not BATCH_ID_PATTERN.match(batch) or not files or files > MAX_UPLOAD_FILES:
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "%s needs an id and %s a count of "
                            "at most %d" % (BATCH_FIELD, BATCH_FILES_FIELD,
                                            MAX_UPLOAD_FILES))
    return batch, files


def declared_upload_length(headers, offset, complete, known, max_upload):
    """The upload's length as this request declares it (draft, "Length"),
    None when it does not; UploadRefused when its indications disagree."""
    lengths = set()
    upload_length = headers.get("Upload-Length")
    if upload_length is not None:
        value = structured_integer(upload_length)
        if value is None:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "Upload-Length is not a number")
        lengths.add(value)
    body = declared_length(headers)
    if complete and body is not None and "Transfer-Encoding" not in headers:
        lengths.add(offset + body)
    if known is not None:
        lengths.add(known)
    if len(lengths) > 1:
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "the upload's length is given as %s"
                            % " and ".join(str(value) for value in sorted(lengths)))
    length = lengths.pop() if lengths else None
    if length is not None and max_upload is not None and length > max_upload:
        raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            "the upload is %s, more than the %s allowed"
                            % (format_size(length), format_size(max_upload)))
    return length


def check_append(partial, length, body, settings):
    """Refuse an append that would pass the upload's length, --max-upload or the free space."""
    if body is None:
        return
    end = partial.offset + body
    if length is not None and end > length:
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "the body runs past the upload's "
                            "length (%d bytes)" % length)
    max_upload = settings.max_upload
    if max_upload is not None and end > max_upload:
        raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            "the upload would pass the %s allowed" % format_size(max_upload))
    check_free_space(settings.upload_dir, body)


def append_limit(partial, max_upload):
    """(how many more bytes partial may take, the refusal past that): its
    length (400, draft "Length") or --max-upload (413), whichever is nearer."""
    limit, refusal = float("inf"), None
    if partial.length is not None:
        limit = partial.length - partial.offset
        refusal = UploadRefused(HTTPStatus.BAD_REQUEST, "the body runs past the upload's "
                                "length (%d bytes)" % partial.length)
    if max_upload is not None and max_upload - partial.offset < limit:
        limit = max_upload - partial.offset
        refusal = UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                "the upload grew past the %s allowed" % format_size(max_upload))
    return limit, refusal


class ResumableUploadHandler(FormUploadHandler):
    """Adds to FormUploadHandler the creation of resumable uploads
    (draft-ietf-httpbis-resumable-upload) and the taking of bytes into
    them: a POST or PUT that carries Upload-Complete makes an upload
    resource below base_path + UPLOAD_RESOURCE_PATH; UploadHandler
    answers on that resource.
    """

    responses = dict(FormUploadHandler.responses)
    responses[UPLOAD_RESUMPTION_SUPPORTED] = ("Upload Resumption Supported",
                                              "The upload can be resumed")

    def handle_one_request(self):
        self.location = None
        self.extra_fields = []  # sent with the final answer
        super().handle_one_request()

    def end_headers(self):
        for name, value in self.extra_fields:
            self.send_header(name, value)
        self.extra_fields = []
        super().end_headers()

    def log_outcome(self):
        # The token of an upload resource is what proves a client's right
        # to it: never in the log.
        line = getattr(self, "requestline", "")
        if UPLOAD_RESOURCE_PATH in line:
            self.requestline = UPLOAD_TOKEN_IN_PATH.sub(lambda found: found.group(1) + "\u2026",
                                                        line)
        super().log_outcome()

    def do_POST(self):
        if self.starts_resumable():
            self.create_upload()
        else:
            super().do_POST()

    def do_PUT(self):
        if self.starts_resumable():
            self.create_upload()
        else:
            super().do_PUT()

    def answer_page(self, sending_body):
        # Upload-Limit tells woof.py's client mode (and others) that uploads
        # here resume (draft, "Limits").
        self.extra_fields = [("Upload-Limit", self.upload_limit())]
        super().answer_page(sending_body)

    def send_empty(self, *headers):
        """A 204: no Content-Length, no body (RFC 9110, 8.6 and 15.3.5)."""
        self.send_response(HTTPStatus.NO_CONTENT)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def starts_resumable(self):
        return "Upload-Complete" in self.headers

    def check_request(self):
        # A resumable request's body is no multipart form, whatever its method.
        if self.command == "PATCH" or self.starts_resumable():
            return self.check_body()
        return super().check_request()

    def body_length(self):
        # A resumable request without Content-Length or Transfer-Encoding has
        # no body (RFC 9112, 6.3): an empty creation or append.
        if (self.command == "PATCH" or self.starts_resumable()) \
                and "Content-Length" not in self.headers \
                and "Transfer-Encoding" not in self.headers:
            return 0
        return super().body_length()

    def interop_version(self):
        """The draft interop version the client named, if woof speaks it."""
        version = (self.headers.get("Upload-Draft-Interop-Version") or "").strip()
        return version if version in RESUMABLE_INTEROP_VERSIONS else None

    def upload_limit(self):
        return upload_limit(self.server.settings.max_upload, PARTIAL_LIFETIME)

    def resource_location(self, token):
        return self.server.base_path + UPLOAD_RESOURCE_PATH + token

    def send_upload_state(self, status, partial, *headers):
        """An answer about an upload resource: its offset, whether complete, its limits."""
        fields = [("Upload-Offset", str(partial.offset)),
                  ("Upload-Complete", "?1" if partial.saved is not None else "?0"),
                  ("Upload-Limit", self.upload_limit()), ("Cache-Control", "no-store")]
        if partial.length is not None:
            fields.append(("Upload-Length", str(partial.length)))
        if partial.saved is not None:
            fields.append(("Repr-Digest", repr_digest(bytes.fromhex(partial.saved.sha256))))
        fields.extend(headers)
        if status == HTTPStatus.NO_CONTENT:
            self.send_empty(*fields)
        else:
            self.send_small(status, "", *fields)

    def create_upload(self):
        """POST or PUT with Upload-Complete: make an upload resource, then
        take the body as its first bytes."""
        server = self.server
        complete = structured_boolean(self.headers.get("Upload-Complete"))
        try:
            if complete is None:
                raise UploadRefused(HTTPStatus.BAD_REQUEST, "Upload-Complete must be ?0 or ?1")
            self.check_request()
            batch, files = batch_fields(self.headers)
            length = declared_upload_length(self.headers, 0, complete, None,
                                            self.server.settings.max_upload)
            token, partial = server.uploads.create(client_host(self.client_address),
                                                  self.put_name(), length, batch, files)
        except UploadRefused as refusal:
            self.refuse(refusal)
            return
        if not server.begin_response():
            server.uploads.cancel(partial)
            self.refuse(UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished"))
            return
        try:
            partial.take_over(self)
            try:
                self.location = self.resource_location(token)
                self.announce_resumable()
                self.receive_into(partial, complete)
            finally:
                partial.let_go()
                if partial.removed and partial.saved is None:
                    remove_quietly(partial.path)
        finally:
            try:
                self.log_outcome()
            finally:
                server.end_response()

    def announce_resumable(self):
        """The 104 interim answer, for a client that named a version woof speaks
        (never to HTTP/1.0, which has no interim answers: RFC 9110, 15.2)."""
        version = self.interop_version()
        if version is None or self.request_version != "HTTP/1.1":
            return
        self.send_response_only(UPLOAD_RESUMPTION_SUPPORTED)
        self.send_header("Location", self.location)
        self.send_header("Upload-Draft-Interop-Version", version)
        self.send_header("Upload-Limit", self.upload_limit())
        BaseHTTPRequestHandler.end_headers(self)  # an interim answer: none of woof's fields
        self.wfile.flush()

    def receive_into(self, partial, complete):
        """Append this request's body to partial, then answer: the saved file
        once complete, else the offset reached."""
        server = self.server
        try:
            length = declared_upload_length(self.headers, partial.offset, complete,
                                            partial.length, self.server.settings.max_upload)
            body = self.body_length()
            check_append(partial, length, body, self.server.settings)
        except UploadRefused as refusal:
            self.refuse(refusal)
            return
        partial.length = length
        reader = self.open_body(body)
        started = partial.offset
        if body == 0:
            self.finish_append(partial, complete, length)
            return
        self.transfer = server.progress.begin(
            client_host(self.client_address), "is sending %s%s" % (
                printable_name(partial.name), resumed_text(started, length)),
            partial.name, None if length is None else length - started,
            lambda: partial.offset - started, receiving=True)
        view = memoryview(bytearray(COPY_BUFFER_SIZE))
        try:
            partial.append(lambda: view[:reader.readinto(view)],
                           *append_limit(partial, self.server.settings.max_upload))
        except BodyCutOff:
            self.close_connection = True
            self.status = "-"  # no answer: nobody is left to read it
            self.note = "aborted at %s: the client went away; kept for a resume" % (
                format_size(partial.offset))
            return
        except UploadRefused as refusal:
            self.note = "aborted at %s: %s" % (format_size(partial.offset), refusal)
            self.refuse(refusal)
            return
        except (socket.timeout, OSError) as error:
            self.close_connection = True
            self.status = "-"
            self.note = "aborted at %s: %s; kept for a resume" % (
                format_size(partial.offset), describe_transfer_error(error))
            return
        finally:
            server.progress.end(self.transfer)
        self.finish_append(partial, complete, length)

    def finish_append(self, partial, complete, length):
        """Answer a request whose body was taken whole."""
        if complete or (self.interop_version() == "6" and partial.offset == length):
            # tus-js-client's "ietf-draft-05" mode may end a file read in
            # pieces with Upload-Complete: ?0; under draft 05 the length
            # it declared tells as much.
            self.finish_upload(partial)
        else:
            self.note = "%s of %s so far" % (format_size(partial.offset),
                                            printable_name(partial.name))
            status = HTTPStatus.CREATED if self.command != "PATCH" else HTTPStatus.NO_CONTENT
            extra = [("Location", self.location)] if self.command != "PATCH" else []
            if self.command != "PATCH":
                self.close_connection = True  # as after a HEAD (see tell_offset)
                extra.append(("Connection", "close"))
            self.send_upload_state(status, partial, *extra)

    def finish_upload(self, partial):
        """All of the file is here: check it against the client's SHA-256,
        publish it, count it, answer."""
        server = self.server
        if partial.length is not None and partial.offset != partial.length:
            self.refuse(UploadRefused(HTTPStatus.BAD_REQUEST, "the upload ended at %d of its "
                                      "%d bytes" % (partial.offset, partial.length)))
            return
        sha256 = partial.digest.hexdigest()
        expected = digest_from_field(self.headers.get("Repr-Digest"))
        if expected is not None and expected != sha256:
            server.uploads.cancel(partial)
            self.note = "aborted: %s arrived with SHA-256 %s, not the sender's %s" % (
                printable_name(partial.name), sha256, expected)
            self.refuse(UploadRefused(HTTPStatus.UNPROCESSABLE_ENTITY, "%s arrived changed: "
                                      "its SHA-256 is %s, not %s; nothing was saved"
                                      % (partial.name, sha256, expected)))
            return
        try:
            saved, upload = server.uploads.publish(partial, sha256)
        except UploadRefused as refusal:
            server.uploads.cancel(partial)
            self.refuse(refusal)
            return
        counted = server.count_upload(self.client_address, upload) if upload else None
        self.extra_fields = self.finished_fields(partial)
        self.answer_saved([saved], counted)

    def finished_fields(self, partial):
        return [("Upload-Offset", str(partial.offset)), ("Upload-Complete", "?1"),
                ("Repr-Digest", repr_digest(bytes.fromhex(partial.saved.sha256)))]


class UploadHandler(ResumableUploadHandler):
    """Receives files into settings.upload_dir: the page, form posts, PUT and
    resumable uploads, whose resources it answers: HEAD tells the offset,
    PATCH appends, DELETE cancels, OPTIONS tells the limits.
    """

    def do_HEAD(self):
        if self.upload_token() is None:
            super().do_HEAD()
        else:
            self.on_upload_resource(self.tell_offset)

    def do_PATCH(self):
        self.on_upload_resource(self.append_upload)

    def do_DELETE(self):
        self.on_upload_resource(self.cancel_upload)

    def do_OPTIONS(self):
        self.send_empty(("Allow", "GET, HEAD, POST, PUT, OPTIONS"),
                        ("Upload-Limit", self.upload_limit()))

    def reads_body(self):
        return self.command in ("POST", "PUT", "PATCH")

    def before_continue(self):
        if self.command == "PATCH" and self.upload_token() is None:
            return True  # a path that is no upload: 404 once the method runs
        return super().before_continue()

    def upload_token(self):
        """The token of the upload resource the path names, or None."""
        path = self.inner_path
        prefix = "/" + UPLOAD_RESOURCE_PATH
        if not path.startswith(prefix):
            return None
        token = path[len(prefix):]
        return token if 0 < len(token) <= 64 and "/" not in token else None

    def on_upload_resource(self, action):
        """Run action(partial) for the upload resource the path names, or answer 404."""
        server = self.server
        token = self.upload_token()
        partial = server.uploads.find(token) if token is not None else None
        if partial is None:
            if self.command == "PATCH":
                self.refuse(UploadRefused(HTTPStatus.NOT_FOUND, "no such upload; it may have "
                                          "expired or been cancelled"))
            else:
                self.send_not_found()
            return
        if not server.begin_response():
            self.refuse(UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "woof has finished"))
            return
        try:
            if not partial.take_over(self):
                self.refuse(UploadRefused(HTTPStatus.CONFLICT,
                                          "another request is still sending this file"))
                return
            try:
                action(partial)
            finally:
                partial.let_go()
                if partial.removed and partial.saved is None:
                    remove_quietly(partial.path)  # woof stopped while it was open
        finally:
            try:
                self.log_outcome()
            finally:
                server.end_response()

    def tell_offset(self, partial):
        # The append that follows gets a connection of its own: a browser
        # resends a request cut on a reused connection by itself, and would
        # send the whole body again only to meet a 409.
        self.close_connection = True
        self.send_upload_state(HTTPStatus.NO_CONTENT, partial, ("Connection", "close"))

    def cancel_upload(self, partial):
        if partial.saved is None:
            self.server.uploads.cancel(partial)
            self.note = "cancelled %s" % printable_name(partial.name)
        self.send_empty()

    def append_upload(self, partial):
        """PATCH: append the body at the offset the client names."""
        complete = structured_boolean(self.headers.get("Upload-Complete"))
        offset = structured_integer(self.headers.get("Upload-Offset"))
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if complete is None or offset is None or media != RESUMABLE_UPLOAD_TYPE:
            self.refuse(UploadRefused(HTTPStatus.BAD_REQUEST,
                                      "an append needs Upload-Complete, Upload-Offset and "
                                      "Content-Type: " + RESUMABLE_UPLOAD_TYPE))
            return
        if partial.saved is not None:
            self.answer_finished(partial)
            return
        if offset != partial.offset:
            self.refuse_offset(partial, offset)
            return
        self.receive_into(partial, complete)

    def refuse_offset(self, partial, offset):
        self.note = "offset %d, not %d" % (offset, partial.offset)
        self.close_connection = True
        self.body_unread = True
        # A little is read, so that a short body does not turn the close into
        # a reset; a long one is cut short, or the client would send it all
        # for nothing (it asks for the offset next).
        self.drain_limit = MAX_IGNORED_BODY
        self.send_small(HTTPStatus.CONFLICT, problem_json(
            PROBLEM_OFFSET, "the offset does not match the upload's",
            **{"expected-offset": partial.offset, "provided-offset": offset}),
            ("Upload-Offset", str(partial.offset)), ("Upload-Complete", "?0"),
            ("Connection", "close"), content_type="application/problem+json")

    def answer_finished(self, partial):
        """A repeated final request (its answer was lost): the same answer again."""
        self.note = "already saved as %s" % printable_name(partial.saved.name)
        self.close_connection = True
        self.body_unread = True
        self.extra_fields = self.finished_fields(partial)
        self.send_small(HTTPStatus.OK, saved_text([partial.saved]), ("Connection", "close"))


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------

class Settings(NamedTuple):
    """Everything the user chose; built once by main() and never changed."""

    ip: Optional[str] = None
    port: int = DEFAULT_PORT
    count: int = DEFAULT_COUNT
    quiet: bool = False
    timeout: float = DEFAULT_TIMEOUT
    compression: str = "gz"
    upload_dir: Optional[str] = None
    max_upload: Optional[int] = None
    secret: Optional[str] = None             # the token of --secret
    password_digest: Optional[bytes] = None  # SHA-256 of the --password
    https: bool = False                      # a throwaway certificate
    certificate: Optional[str] = None
    key: Optional[str] = None
    expire: Optional[float] = None           # seconds
    allowed_hosts: tuple = ()                # --allow-host names
    qr: bool = False


class Tally:
    """What was taken: each completed download of the offer (with no offer,
    each upload received), by whom, of how many bytes, and when the last was;
    and the lines that say so.

    It has no lock of its own: the server's lock guards it, held for add()
    in the same hold as the delivery ledger's add_received() that made a
    download whole, so that a delivery is recorded and counted at once.
    """

    def __init__(self, count, offer):
        self.count = count  # 0: no limit
        self.offer = offer  # None: uploads are counted
        self.completed = 0
        self.takers = []  # (client, bytes, files) for each completed download or upload
        self.last_taken = None

    def add(self, host, size, files=1):
        """Count one download or upload (lock held) by host, of size bytes;
        return (n, count), count 0 meaning no limit; None past the count."""
        if self.count and self.completed >= self.count:
            return None
        self.completed += 1
        self.takers.append((host, size, files))
        self.last_taken = time.monotonic()
        return (self.completed, self.count)

    def uploads_left(self):
        """How many uploads woof still takes; None without a limit."""
        return None if not self.count else max(self.count - self.completed, 0)

    def taken_text(self):
        """How much was taken: "1 of 1 downloads complete", "3 uploads received"."""
        count = self.count
        taken = "%d of %d" % (self.completed, count) if count else "%d" % self.completed
        return taken + (" uploads received" if self.offer is None else " downloads complete")

    def summary(self, since):
        """One line on what was delivered or received, to or from whom, in how
        long from since (a time.monotonic())."""
        if not self.takers:
            return "nothing was %s" % ("received" if self.offer is None else "sent")
        hosts = []
        for host, _, _ in self.takers:
            if host not in hosts:
                hosts.append(host)
        size = sum(taken[1] for taken in self.takers)
        seconds = self.last_taken - since
        if self.offer is None:
            files = sum(taken[2] for taken in self.takers)
            what = "received %d file%s (%s) from %s" % (
                files, "" if files == 1 else "s", format_size(size), people(hosts))
        else:
            times = len(self.takers)
            what = "sent %s (%s)%s to %s" % (
                printable_name(self.offer.name), format_size(size // times),
                "" if times == 1 else " %d times," % times, people(hosts))
        return "%s in %s" % (what, format_elapsed(seconds))


class Waker:
    """How any thread wakes the serving thread from its wait for a
    connection, so that woof ends as soon as it is done: a byte on a socket
    pair, watched by the same selector as the listening socket."""

    def __init__(self):
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.reader, selectors.EVENT_READ)

    def watch(self, sock):
        self.selector.register(sock, selectors.EVENT_READ)

    def wake(self):
        try:
            self.writer.send(b"\0")
        except OSError:
            pass  # its buffer is full: a wake-up is already waiting

    def wait(self, timeout):
        """Wait up to timeout seconds; return the watched sockets ready to be
        read, [] when woken (the wake-up is taken) or when the time is up."""
        ready = []
        for key, _ in self.selector.select(timeout):
            if key.fileobj is self.reader:
                try:
                    self.reader.recv(64)
                except OSError:
                    pass
            else:
                ready.append(key.fileobj)
        return ready

    def close(self):
        self.selector.close()
        self.reader.close()
        self.writer.close()


class ServingEnd:
    """When woof takes no more requests, and why: the count reached, --expire
    run out, a one-shot stream lost, or a stop; and the responses in flight
    it lets finish first.  The server's lock guards it; end_serving() wakes
    the serving thread (Waker) to see the end at once.
    """

    def __init__(self, lock, waker, expire):
        self.lock = lock
        self.waker = waker
        self.finished = threading.Event()
        self.expired = False
        self.failure = None
        self.deadline = None if expire is None else time.monotonic() + expire
        self.in_flight = 0

    def begin_response(self):
        """Take a place among the responses in flight; False once woof has finished.

        serve_until_done() waits for every place to be given back, so a
        response begun before the end is never cut off by the exit.
        """
        with self.lock:
            if self.finished.is_set():
                return False
            self.in_flight += 1
            return True

    def end_response(self):
        with self.lock:
            self.in_flight -= 1
            self.lock.notify_all()

    def wait_until_idle(self):
        """Wait while responses are in flight; return False once woof has finished."""
        with self.lock:
            while self.in_flight and not self.finished.is_set():
                self.lock.wait(POLL_INTERVAL)
            return not self.finished.is_set()

    def end_serving(self):
        """Take no more requests, and wake the serving thread to see it."""
        self.finished.set()
        self.waker.wake()

    def expire_if_due(self):
        """End the offer if --expire has run out; True if it has."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.expire_now()
            return True
        return False

    def expire_now(self):
        """End the offer because --expire ran out; transfers in flight finish."""
        with self.lock:
            if self.finished.is_set():
                return
            self.expired = True
            self.end_serving()

    def fail_stream(self, sent, read_failed=False):
        """End woof once a one-shot stream is lost (lock held), saying which
        side ended it."""
        if read_failed:
            self.failure = ("standard input could not be read after %s had been sent; "
                            "it cannot be sent again" % format_size(sent))
        else:
            self.failure = ("the download of standard input broke off after %s reached the "
                            "client; standard input cannot be sent again" % format_size(sent))
        self.end_serving()

    def wait_for_transfers(self, progress, log, taken_text):
        """Let the responses in flight finish, saying how many transfers are
        left each time one ends (taken_text() says what was taken)."""
        told = 0
        with self.lock:
            while self.in_flight:
                running = progress.running()
                if running and running != told:
                    log.info("%s%d transfer%s still running; Ctrl-C stops %s"
                             % ("" if told else taken_text() + "; ", running,
                                "" if running == 1 else "s",
                                "it" if running == 1 else "them"))
                told = running or told
                self.lock.wait(POLL_INTERVAL)


class ConnectionStart:
    """How a new connection is begun, before a handler reads from it: refused
    in the accepting thread, or, with TLS, taken through the handshake in its
    own thread.  The server's shutdown_request() closes what it opened.
    """

    def __init__(self, server):
        self.server = server

    def refuse(self, sock, host, reason):
        """Answer 503 and close, in the accepting thread: no thread is spent on
        it.  Before a TLS handshake there is no way to answer: the connection
        is only closed."""
        server = self.server
        if server.tls is None:
            answer_busy(sock, reason)
        server.shutdown_request(sock)
        server.gate.log_refusal(host, "connection refused (503): %s" % reason)

    def answer_over_tls(self, sock, client_address, head_deadline, place):
        """Shake hands, then answer the connection, in its own thread."""
        server = self.server
        secured = self.start_tls(sock, client_address, head_deadline)
        if secured is None:
            return
        try:
            server.RequestHandlerClass(secured, client_address, server, head_deadline, place)
        finally:
            server.shutdown_request(secured)

    def start_tls(self, sock, client_address, head_deadline):
        """The TLS socket for a new connection, or None once it was answered or lost."""
        server = self.server
        timeout = server.settings.timeout
        try:
            set_timeout_by(sock, head_deadline, timeout)
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS handshake record (RFC 8446, 5.1)
                answer_plain_http(sock, server.port, server.host_names, head_deadline, timeout)
                return None
            if not first:
                return None
            # The timeout bounds the whole handshake, not each read of it
            # (CPython's ssl module counts it down across the reads).
            set_timeout_by(sock, head_deadline, timeout)
            return server.tls.context.wrap_socket(sock, server_side=True)
        except OSError as error:  # ssl.SSLError is an OSError
            server.gate.log_refusal(client_host(client_address),
                                    "TLS handshake failed: %s" % describe_tls_error(error))
            return None


class WoofServer(HTTPServer):
    """An HTTP server, one thread per connection, that stops once its offer has
    been taken `count` times, or, with UploadHandler and no offer, once it has
    received `count` uploads.

    What changes while serving (uploads in flight; in self.ending the
    responses in flight and the end; in self.tally, self.ledger and
    self.gate what was taken, what each client was sent and the connections
    each holds) is guarded by self.lock, which they all share.
    """

    allow_reuse_address = REUSE_ADDRESS_IS_SAFE
    request_queue_size = 64
    timeout = POLL_INTERVAL  # how often handle_request() returns to check for the end

    def __init__(self, settings, offer, log=None, handler=DownloadHandler):
        self.settings = settings
        self.offer = offer
        self.log = log or Log(settings.quiet)
        self.base_path = "/%s/" % settings.secret if settings.secret else "/"
        self.offer_path = self.base_path
        if offer is not None:
            self.offer_path = self.base_path[:-1] + url_path_for(offer.name)
        self.host_names = local_host_names(settings.allowed_hosts)
        self.password_guard = PasswordGuard(settings.password_digest)
        self.tls = None
        self.scheme = "http"
        self.connection_start = ConnectionStart(self)
        self.lock = threading.Condition()
        self.tally = Tally(settings.count, offer)
        self.ledger = DeliveryLedger(self.lock)
        self.gate = ConnectionGate(self.lock, self.log)
        self.head_seconds = min(settings.timeout, MAX_HEAD_SECONDS)
        self.batches = set()
        self.uploads = ResumableUploads(settings.upload_dir, address_group)
        self.progress = Progress(self.log)
        self.soon = []    # what other threads asked the serving thread to do
        family, address = resolve_bind_address(settings.ip, settings.port)
        self.address_family = family
        self.waker = Waker()
        self.ending = ServingEnd(self.lock, self.waker, settings.expire)
        try:
            HTTPServer.__init__(self, address, handler)
        except OSError as error:
            self.waker.close()
            raise WoofError(describe_bind_error(error, settings))
        self.waker.watch(self.socket)
        if settings.https or settings.certificate:
            try:
                self.tls = tls_setup(settings, self.certificate_hosts())
            except BaseException:
                self.server_close()
                raise
            self.scheme = "https"

    def certificate_hosts(self):
        """The names a throwaway certificate is made for: every printed address,
        and this machine's names."""
        hosts = [host for host, _ in advertised_hosts(self.server_address[0])]
        hosts.extend(("127.0.0.1", "::1"))
        hosts.extend(sorted(self.host_names))
        unique = []
        for host in hosts:
            if host not in unique:
                unique.append(host)
        return unique

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, IPV6_V6ONLY, 0)
            except OSError:
                pass  # IPv6 only, then; IPv4 clients use -i
        socketserver.TCPServer.server_bind(self)
        # HTTPServer would look up the host's FQDN here, which can hang for
        # seconds on a machine without DNS; woof never uses that name.
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    @property
    def port(self):
        return self.server_address[1]

    def urls(self):
        """(URL, note) pairs to give the other side, best first (advertised_hosts)."""
        return [("%s://%s:%d%s" % (self.scheme, url_host(host), self.port, self.offer_path), note)
                for host, note in advertised_hosts(self.server_address[0])]

    def url(self):
        """The best URL to give the other side: the first of urls()."""
        return self.urls()[0][0]

    def verify_request(self, request, client_address):
        self.progress.contacted()
        return True

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        self.log.info("%s connection failed: %s" % (client_host(client_address),
                                                    describe_transfer_error(error)))

    # Connections: who gets a place, and a thread

    def process_request(self, request, client_address):
        """Serve a new connection in a thread of its own, or refuse it.

        Its first request head, TLS handshake included, must arrive within
        head_seconds of now, however slowly it trickles in.
        """
        head_deadline = time.monotonic() + self.head_seconds
        host = client_host(client_address)
        place, refusal = self.gate.enter(host, request)
        if refusal is not None:
            self.connection_start.refuse(request, host, refusal)
            return
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address, head_deadline, place))
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError:  # the system has no thread left to give
            self.gate.leave(place)
            self.connection_start.refuse(request, host, "woof cannot start another thread")

    def process_request_thread(self, request, client_address, head_deadline, place=None):
        try:
            self.finish_request(request, client_address, head_deadline, place)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            if place is not None:
                self.gate.leave(place)

    def finish_request(self, request, client_address, head_deadline=None, place=None):
        """Answer one connection, in its own thread; with TLS, the handshake
        happens here too, so a client that connects and says nothing holds up
        no one but itself, and only until the head's deadline."""
        head_deadline = head_deadline or time.monotonic() + self.head_seconds
        if self.tls is None:
            self.RequestHandlerClass(request, client_address, self, head_deadline, place)
            return
        self.connection_start.answer_over_tls(request, client_address, head_deadline, place)

    # What changes while serving

    @property
    def finished(self):
        return self.ending.finished

    @property
    def expired(self):
        return self.ending.expired

    @property
    def failure(self):
        return self.ending.failure

    @property
    def in_flight(self):
        return self.ending.in_flight

    def begin_response(self):
        return self.ending.begin_response()

    def end_response(self):
        self.ending.end_response()

    def wait_until_idle(self):
        return self.ending.wait_until_idle()

    def record_delivery(self, client_address, body, start, received, complete):
        """Record bytes a client received; return (n, count) if that made a download."""
        with self.lock:
            if body.size is None:
                if not complete:
                    if body.one_shot and not body.give_back_unreached():
                        self.ending.fail_stream(received, body.read_failed)
                    return None
                return self.count_completion(client_host(client_address), received)
            host = client_host(client_address)
            if self.ledger.add_received(host, body, start, received):
                return self.count_completion(host, body.size)
            return None

    @property
    def completed(self):
        """How many downloads or uploads were taken (Tally)."""
        return self.tally.completed

    def uploads_left(self):
        return self.tally.uploads_left()

    def count_upload(self, client_address, saved):
        """Count one completed upload (a list of SavedFile); return (n, count)."""
        with self.lock:
            return self.count_completion(client_host(client_address),
                                         sum(item.size for item in saved), len(saved))

    def track_batch(self, batch, receiving):
        """Note an UploadBatch in progress, or one that is done."""
        with self.lock:
            if receiving:
                self.batches.add(batch)
            else:
                self.batches.discard(batch)

    def discard_uploads(self):
        """Remove the temporary files of uploads in progress (woof is stopping)."""
        with self.lock:
            batches = list(self.batches)
        for batch in batches:
            batch.discard()
        self.uploads.discard()

    def count_completion(self, host, size, files=1):
        """Count one download or upload (lock held; Tally.add); the last ends woof."""
        counted = self.tally.add(host, size, files)
        if counted is not None and counted[0] == counted[1]:
            self.ending.end_serving()
        return counted

    def expired_early(self):
        """True when --expire ended woof before all that was asked for was taken."""
        wanted = self.settings.count or 1  # with no limit, at least one
        return self.expired and self.completed < wanted

    def stop(self):
        """Make serve_until_done() return (from any thread)."""
        self.ending.end_serving()

    def handle_request(self):
        """Accept and answer a connection if one comes within self.timeout;
        return early when end_serving() is called."""
        for _ in self.waker.wait(self.timeout):
            self._handle_request_noblock()

    def server_close(self):
        super().server_close()
        self.waker.close()

    def serve_until_done(self):
        """Serve until the count is reached, then let transfers in flight finish.

        Accepting happens in the calling thread, so Ctrl-C lands here and
        nowhere else.  Raises WoofError when the offer was lost (a cut-off
        stream).
        """
        self.progress.start(self.no_contact_hint())
        try:
            try:
                while not self.finished.is_set():
                    if self.ending.expire_if_due():
                        break
                    self.run_soon()
                    self.handle_request()
            finally:
                self.server_close()
            self.ending.wait_for_transfers(self.progress, self.log, self.taken_text)
        finally:
            self.progress.stop()
        if self.failure:
            raise WoofError(self.failure)

    def call_soon(self, action):
        """Have the serving thread run action() between two requests (from any
        thread): what it writes then never follows woof's last line."""
        with self.lock:
            self.soon.append(action)

    def run_soon(self):
        with self.lock:
            actions, self.soon = self.soon, []
        for action in actions:
            action()

    def log_stopped(self):
        """Log, as woof is stopped (Ctrl-C, a stop signal), each transfer in
        flight as aborted, then what was done: the lines of a normal end."""
        for transfer in self.progress.in_flight():
            self.log.info("%s %s %s %s" % (
                transfer.who, printable_name(transfer.name), transfer.summary(),
                self.log.paint("aborted: woof was stopped", SGR_ABORTED)))
        with self.lock:
            self.log.info("done: %s" % self.summary())

    def taken_text(self):
        return self.tally.taken_text()

    def no_contact_hint(self):
        return ("nobody has connected yet: the other machine must be on the same network "
                "as this one (a guest Wi-Fi keeps machines apart), a firewall may be "
                "blocking port %d, or another of the URLs above may work" % self.port)

    def summary(self):
        """One line on what was taken (Tally.summary), timed from the first contact."""
        return self.tally.summary(self.progress.first_contact or self.progress.started)


# ---------------------------------------------------------------------------
# Client mode: fetching and sending
#
# `woof.py URL` fetches what a woof, or any web server, offers, and
# `woof.py URL FILE...` sends files and folders to a woof receiving with -U:
# the woof.py on a USB key is then both ends, where curl and wget are
# missing.  Only http.client and ssl are used.  A download goes to a hidden
# partial file beside its target, named after the URL, with what the server
# said of it (its validator and size) in a hidden state file beside that:
# running the same command again asks for the rest only (Range and
# If-Range, RFC 7233, 3.1 and 3.2), and the final name appears only once
# every byte has arrived.
# ---------------------------------------------------------------------------

PARTIAL_PREFIX = ".woof-fetch-"
PARTIAL_SUFFIX = ".part"
PARTIAL_STATE_SUFFIX = ".state"
FETCHED_NAME = "download"        # when neither the server nor the URL names the file
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
FETCH_PROGRESS_INTERVAL = 0.25   # seconds between two redraws of the fetch progress line
MAX_ANSWER_TEXT = 64 << 10       # bytes of a refusal's text read to show its first line
MAX_RESPONSE_HEAD = 64 << 10     # bytes of response head read by hand (after Expect)
EXPECT_WAIT = 2.0                # seconds another server gets to say "100 Continue"
# A server that sends less than this in --timeout seconds of waiting is
# stalled, not slow: a trickle of a byte a second would otherwise hold the
# client for ever, since each read gets something in time.  The slowest
# mobile link moves this in well under a second.
MIN_PROGRESS = 4 << 10
SEND_SLICE = 8 << 20             # bytes handed to sendfile() between progress redraws
MAX_NAMED_FOLDERS = 3            # empty folders named in the warning that they are left out
MAX_UNPACKED_FILES = 1000000
MAX_LINK_TARGET = 4096           # bytes of a zip member that holds a link's target
ARCHIVE_PEEK = 512               # bytes read to tell a zip from a tar (one tar block)
# A zip begins with its first member, or is empty (APPNOTE 4.3.7, 4.3.16).
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
# How a compressed tar begins (RFC 1952, 2.3.1; bzip2's "BZh"; the xz
# format, 2.1.1.1), the module that reads it, and that module's file class.
TAR_COMPRESSIONS = ((b"\x1f\x8b", "gzip", "GzipFile"), (b"BZh", "bz2", "BZ2File"),
                    (b"\xfd7zXZ\x00", "lzma", "LZMAFile"))
# What -x may write: any archive this much, and beyond it at most UNPACK_RATIO
# times the bytes downloaded so far.  gzip, bzip2 and xz make ordinary files
# 2 to 10 times smaller, text and logs up to 20 or 50 times; only long runs
# of one byte (a compression bomb of zeros: gzip 1,000 times, bzip2 and xz
# far more) go past 100.  --no-unpack-limit lifts the ratio, not the check
# of the free space.
UNPACK_RATIO = 100
UNPACK_ALLOWANCE = 16 << 20
PIN_PREFIX = "sha256//"
PIN_DIGEST_BYTES = 32
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]+")
# http.server's error page; Python 3.6 writes the code as "HTTPStatus.GONE".
_ERROR_EXPLANATION = re.compile(r"Error code explanation:\s*[\w.]+\s*-\s*(.*?)\.?\s*</p>", re.S)


class BodyCut(WoofError):
    """A response body that stopped before all of it arrived."""


class HeadCut(http.client.HTTPException):
    """A response head that the connection's end cut before its blank line."""


class Stalled(socket.timeout):
    """A server that sent less than MIN_PROGRESS bytes in --timeout seconds."""


class ClientOptions(NamedTuple):
    """What the command line asks of the client; built once by client_options()."""

    url: str
    paths: tuple = ()                # files and folders to send; none to fetch
    output: Optional[str] = None     # -o PATH; "-" for standard output
    force: bool = False
    extract: bool = False
    unpack_limit: bool = True        # False: --no-unpack-limit
    pins: tuple = ()                 # "sha256//..." keys, any of which may match
    cacert: Optional[str] = None
    insecure: bool = False
    password: Optional[str] = None
    quiet: bool = False
    timeout: float = DEFAULT_TIMEOUT


def is_url(text):
    """True for text that starts as an http:// or https:// URL does."""
    return text.lower().startswith(("http://", "https://"))


class Target(NamedTuple):
    """Where a URL leads: scheme, host, port, and the request target to send."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, percent-encoded ASCII

    @property
    def origin(self):
        return (self.scheme, self.host, self.port)


def parse_url(url):
    """The Target of an http:// or https:// URL; WoofError for any other text.

    A URL typed with spaces or non-ASCII letters is sent percent-encoded
    (RFC 3986, 2.1), as browsers do.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WoofError("%s is not a usable URL: %s" % (printable_name(url), error))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise WoofError("%s is not an http:// or https:// URL" % printable_name(url))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    path = _UNSAFE_IN_TARGET.sub(lambda match: urllib.parse.quote(name_bytes(match.group()),
                                                                  safe=""), path)
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def disposition_name(value):
    """The file name in a Content-Disposition value, filename* first (RFC 6266, 4.3), or None."""
    if not value:
        return None
    # http.client reads headers as Latin-1; a server sending raw UTF-8 means UTF-8.
    _, parameters = header_parameters(header_text(value.encode("latin-1", "replace")))
    return parameters.get("filename*") or parameters.get("filename") or None


def fetched_name(disposition, url):
    """The name to save a download under: the server's, else the URL's last
    segment, else FETCHED_NAME; made safe exactly as uploaded names are."""
    for name in (disposition_name(disposition), request_path(url).rsplit("/", 1)[-1]):
        last = re.split(r"[/\\]", name or "")[-1]
        if last.strip() not in ("", ".", ".."):
            return safe_name(last)
    return FETCHED_NAME


def checked_pins(text):
    """The pins in a --pin value: "sha256//BASE64", several joined by ";".

    Raises ValueError for anything else.
    """
    pins = []
    for pin in text.split(";"):
        pin = pin.strip()
        if not pin.startswith(PIN_PREFIX):
            raise ValueError("a pin starts with %s" % PIN_PREFIX)
        try:
            digest = base64.b64decode(pin[len(PIN_PREFIX):], validate=True)
        except ValueError:
            digest = b""
        if len(digest) != PIN_DIGEST_BYTES:
            raise ValueError("%s is not the base64 of a SHA-256" % pin[len(PIN_PREFIX):])
        pins.append(pin)
    return pins


def check_pins(certificate_der, pins):
    """Raise WoofError unless the certificate's key is one of the pins.

    Every pin is compared, each in constant time, so the time taken tells
    nothing of how close the key came to one.
    """
    presented = public_key_pin(certificate_der) if certificate_der else ""
    matched = False
    for pin in pins:
        matched |= hmac.compare_digest(presented.encode("ascii"), pin.encode("ascii"))
    if not matched:
        raise WoofError("the server's key is %s, not the pinned %s: this is not the woof "
                        "that printed the pin (a new run has a new key); nothing was sent"
                        % (presented or "missing", pins[0]))


def client_tls_context(options):
    """The TLS context for https:// URLs, as --pin, --cacert or --insecure ask."""
    ssl = optional_module("ssl")
    if ssl is None:
        raise WoofError("this Python was built without the ssl module, so woof cannot "
                        "fetch https:// URLs")
    if options.pins or options.insecure:
        # With a pin, the key itself is checked once connected (check_pins),
        # which a self-signed certificate passes and nothing else does.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=options.cacert)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise WoofError("cannot use --cacert %s: %s" % (printable_name(options.cacert), reason))


class PacedSocket:
    """A socket for http.client to read a response from, through a
    PacedStream; `head` holds bytes of it already read (after Expect)."""

    def __init__(self, sock, head=b""):
        self.sock = sock
        self.head = head

    def makefile(self, mode):
        return io.BufferedReader(PacedStream(self.sock, self.sock.gettimeout(), self.head))


class PacedStream(io.RawIOBase):
    """A socket read as a raw stream that raises Stalled once `seconds` of
    waiting brought less than MIN_PROGRESS bytes: the timeout then bounds
    the whole response, head and body, not each read alone.  Only time spent
    waiting for the server counts, not the client's own (writing to disk)."""

    def __init__(self, sock, seconds, head=b""):
        super().__init__()
        self.sock = sock
        # Read through the socket's own file, which keeps it open until this
        # stream closes (http.client closes the connection as it hands over
        # the response of an HTTP/1.0 server).
        self.raw = sock.makefile("rb", buffering=0)
        self.seconds = seconds
        self.head = head
        self.waited = 0.0  # since the last MIN_PROGRESS bytes
        self.got = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count] = self.head[:count]
            self.head = self.head[count:]
            return count
        if self.seconds is None:
            return self.raw.readinto(buffer)
        left = self.seconds - self.waited
        if left <= 0:
            raise Stalled("less than %s in %g s" % (format_size(MIN_PROGRESS), self.seconds))
        previous = self.sock.gettimeout()
        started = time.monotonic()
        self.sock.settimeout(left)
        try:
            got = self.raw.readinto(buffer)
        except socket.timeout:
            if self.got:
                raise Stalled("less than %s in %g s" % (format_size(MIN_PROGRESS),
                                                        self.seconds))
            raise
        finally:
            self.waited += time.monotonic() - started
            self.sock.settimeout(previous)
        self.got += got or 0
        if self.got >= MIN_PROGRESS:
            self.got, self.waited = 0, 0.0
        return got

    def close(self):
        self.raw.close()
        super().close()


class HeadLines:
    """A response's reader whose readline notes the last line, so that a head
    cut by the connection's end (a last line without its newline) is seen:
    http.client takes the end of the connection for the end of the head."""

    def __init__(self, reader):
        self.reader = reader
        self.last = b"\n"

    def readline(self, limit=-1):
        self.last = self.reader.readline(limit)
        return self.last

    def __getattr__(self, name):
        return getattr(self.reader, name)


class CheckedResponse(http.client.HTTPResponse):
    """An HTTPResponse read through a PacedStream, whose head must end with
    its blank line (RFC 9112, 2.1): HeadCut otherwise."""

    def __init__(self, sock, *args, **kwargs):
        if not isinstance(sock, PacedSocket):
            sock = PacedSocket(sock)
        super().__init__(sock, *args, **kwargs)

    def begin(self):
        reader = self.fp
        self.fp = lines = HeadLines(reader)
        try:
            super().begin()
        finally:
            if self.fp is lines:
                self.fp = reader
        if not lines.last.endswith(b"\n"):
            raise HeadCut("the head ended without its blank line")


class ClientConnection(http.client.HTTPConnection):
    """An HTTP connection, over TLS when given a context.  With pins, the
    server's key is checked right after the handshake, before a single byte
    of the request (not even its first line) is sent."""

    response_class = CheckedResponse

    def __init__(self, target, timeout, tls=None, pins=()):
        super().__init__(target.host, target.port, timeout=timeout)
        self.tls = tls
        self.pins = pins
        self.last_response = None
        if tls is not None:
            self.default_port = 443  # so that the Host header leaves it out

    def getresponse(self):
        self.last_response = super().getresponse()
        return self.last_response

    def close(self):
        """Close the socket, and the response reading from it (which holds it open)."""
        super().close()
        if self.last_response is not None:
            self.last_response.close()
            self.last_response = None

    def connect(self):
        super().connect()
        if self.tls is None:
            return
        try:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)
            if self.pins:
                check_pins(self.sock.getpeercert(binary_form=True), self.pins)
        except BaseException:
            self.close()
            raise


def describe_connection_error(error, target):
    """One line telling why a request to target got no answer; printable,
    whatever the server sent."""
    return printable_name(connection_error_text(error, target))


def connection_error_text(error, target):
    where = "%s:%d" % (url_host(target.host), target.port)
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or type(error).__name__ in (
            "SSLCertVerificationError", "CertificateError"):
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or text
        return ("%s's certificate is not one this machine trusts (%s); for a woof started "
                "with --https, give the key it printed: --pin sha256//..., or its "
                "certificate with --cacert FILE" % (where, reason))
    if isinstance(error, socket.gaierror):
        return "cannot find the host %s: %s" % (target.host, error.strerror or error)
    if isinstance(error, Stalled):
        return "%s answers too slowly: %s" % (where, error)
    if isinstance(error, HeadCut):
        return "%s closed the connection before the end of its answer's head" % where
    if isinstance(error, ConnectionRefusedError):
        return "cannot reach %s: nothing listens there (is woof still running?)" % where
    if isinstance(error, socket.timeout):
        return "%s did not answer in time" % where
    if isinstance(error, http.client.RemoteDisconnected):
        return "%s closed the connection without answering" % where
    if isinstance(error, http.client.HTTPException):
        return "%s did not answer in HTTP: %s" % (where, text or type(error).__name__)
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or text
    return "cannot reach %s: %s" % (where, reason)


def describe_read_error(error):
    """Why a response body stopped, in a few words, printable."""
    return printable_name(read_error_text(error))


def read_error_text(error):
    if isinstance(error, Stalled):
        return "it arrived too slowly: %s" % error
    if isinstance(error, socket.timeout):
        return "nothing arrived for too long"
    if isinstance(error, http.client.IncompleteRead):
        return "the connection closed"
    if isinstance(error, (ConnectionResetError, ConnectionAbortedError)):
        return "the connection was reset"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def answer_text(response):
    """The first line of a refusal's explanation, printable; "" when it has none.

    woof and other servers built on http.server explain errors in an HTML
    page; woof's own refusals are plain text.
    """
    try:
        data = response.read(MAX_ANSWER_TEXT)
    except (OSError, http.client.HTTPException):
        return ""
    text = data.decode("utf-8", "replace")
    if "html" in (response.getheader("Content-Type") or "").lower():
        match = _ERROR_EXPLANATION.search(text)
        text = html.unescape(match.group(1)) if match else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return printable_name(lines[0][:200]) if lines else ""


def status_error(response, url, password_given):
    """The WoofError for a response that is not what was asked for."""
    status = response.status
    if status == HTTPStatus.UNAUTHORIZED:
        if password_given:
            return WoofError("the password was refused")
        return WoofError("%s asks for a password: add --password (it takes WOOF_PASSWORD, "
                         "or asks on a terminal)" % printable_name(url))
    if status == HTTPStatus.NOT_FOUND:
        return WoofError("nothing at %s (404 Not Found)" % printable_name(url))
    text = answer_text(response)
    return WoofError("%s answered %d %s%s" % (printable_name(url), status,
                                              printable_name(response.reason),
                                              ": " + text if text else ""))


class Requester:
    """Makes the client's requests: redirects followed, TLS as the options
    say, and the password sent only to the origin it was given for."""

    def __init__(self, options):
        self.options = options
        self.origin = parse_url(options.url).origin
        self.context = None

    def connection(self, target):
        tls = None
        if target.scheme == "https":
            if self.context is None:
                self.context = client_tls_context(self.options)
            tls = self.context
        return ClientConnection(target, self.options.timeout, tls, self.options.pins)

    def headers(self, target, extra=None):
        headers = {"User-Agent": "woof.py/" + __version__, "Accept": "*/*"}
        if self.options.password is not None and target.origin == self.origin:
            credentials = ("woof:" + self.options.password).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        headers.update(extra or {})
        return headers

    def open(self, url, method="GET", extra=None):
        """(connection, response, final URL) of a request without a body.

        The caller reads the response and closes the connection.
        """
        for _ in range(MAX_REDIRECTS + 1):
            target = parse_url(url)
            connection = self.connection(target)
            try:
                connection.request(method, target.path, headers=self.headers(target, extra))
                response = connection.getresponse()
            except (OSError, ValueError, http.client.HTTPException) as error:
                connection.close()
                raise WoofError(describe_connection_error(error, target))
            location = response.getheader("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return connection, response, url
            connection.close()
            url = self.redirected(url, location)
            if response.status == HTTPStatus.SEE_OTHER and method != "HEAD":
                method = "GET"
        raise WoofError("more than %d redirects, the last to %s" % (MAX_REDIRECTS,
                                                                    printable_name(url)))

    def redirected(self, url, location):
        following = urllib.parse.urljoin(url, location.strip())
        if not is_url(following):
            raise WoofError("the server redirects to %s, not to an http:// or https:// URL"
                            % printable_name(following))
        if url.lower().startswith("https:") and not following.lower().startswith("https:"):
            raise WoofError("the server redirects from HTTPS to %s; woof does not follow it "
                            "out of HTTPS" % printable_name(following))
        return following

    def send(self, url, method, headers, length, write_body, expect_wait=EXPECT_WAIT):
        """(connection, response) of a request whose body of `length` bytes
        write_body(sock) sends; no redirect is followed.

        The body waits for "100 Continue" (RFC 9110, 10.1.1), so that a
        refusal (too large, disk full) comes before gigabytes are sent; a
        server that says nothing for expect_wait seconds gets the body anyway.
        """
        target = parse_url(url)
        connection = self.connection(target)
        extra = dict(headers, **{"Content-Length": str(length), "Expect": "100-continue"})
        try:
            connection.putrequest(method, target.path, skip_accept_encoding=True)
            for name, value in self.headers(target, extra).items():
                connection.putheader(name, value)
            connection.endheaders()
            early = self.interim_answer(connection, method, expect_wait)
            if early is not None:
                return connection, early
        except (OSError, ValueError, http.client.HTTPException) as error:
            connection.close()
            raise WoofError(describe_connection_error(error, target))
        try:
            write_body(connection.sock)
        except OSError as error:
            refusal = self.refusal_after(connection)
            if refusal is None:
                connection.close()
                raise WoofError("the connection broke while sending (%s)"
                                % describe_read_error(error))
            return connection, refusal
        except BaseException:
            connection.close()
            raise
        try:
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise WoofError("no answer after sending: %s" % describe_read_error(error))

    def interim_answer(self, connection, method, expect_wait):
        """None to go on sending the body, or the final response the server
        sent instead of "100 Continue"."""
        sock = connection.sock
        waiting = getattr(sock, "pending", lambda: 0)() == 0  # TLS may hold it decrypted
        if waiting:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                if not selector.select(expect_wait):
                    return None
        head = bytearray()
        timeout = sock.gettimeout()
        # A TLS 1.3 session ticket makes the socket readable without an answer.
        sock.settimeout(expect_wait)
        try:
            while not head.endswith(b"\r\n\r\n") and len(head) < MAX_RESPONSE_HEAD:
                byte = sock.recv(1)  # one at a time: the body must stay unread
                if not byte:
                    raise http.client.RemoteDisconnected("closed the connection")
                head += byte
        except socket.timeout:
            if head:
                raise
            return None
        finally:
            sock.settimeout(timeout)
        if head[9:12] == b"100":
            return None
        response = CheckedResponse(PacedSocket(sock, bytes(head)), method=method)
        connection.last_response = response
        response.begin()
        return response

    def refusal_after(self, connection):
        """The answer a server that stopped reading sent (413, 507...), or None."""
        try:
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            return None
        return response if response.status >= 300 else None


# ---------------------------------------------------------------------------
# Client mode: progress on the terminal
# ---------------------------------------------------------------------------

class Report:
    """The client's standard error: one live progress line at a time on a
    terminal, then a final line per transfer, warnings and errors.  With -q
    only warnings and errors."""

    def __init__(self, stream, quiet=False):
        self.stream = stream
        self.quiet = quiet
        try:
            terminal = stream.isatty()
        except (AttributeError, ValueError):
            terminal = False
        self.live = terminal and not quiet
        self.shown = 0  # characters of the live line on screen; 0 when none is

    def progress(self, verb, name, total=None, done=0):
        return FetchProgress(self, verb, name, total, done)

    def redraw(self, text):
        """Replace the live line with text (cut to the terminal's width)."""
        text = text[:max(terminal_columns(self.stream) - 1, 20)]
        self.emit("\r" + text + " " * max(0, self.shown - len(text)))
        self.shown = len(text) or 1

    def line(self, text):
        """A final line: it replaces the live line, if any.  Silenced by -q."""
        if not self.quiet:
            self.write(text)

    def warn(self, text):
        self.write("woof: warning: " + text)

    def error(self, text):
        self.write("woof: error: " + text)

    def write(self, text):
        if self.shown:
            self.emit("\r" + text.ljust(self.shown) + "\n")
            self.shown = 0
        else:
            self.emit(text + "\n")

    def emit(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError, UnicodeError):
            pass  # a closed or odd terminal must not stop a transfer


class FetchProgress:
    """One transfer's live line: bytes, percentage, speed and time left."""

    def __init__(self, report, verb, name, total=None, done=0):
        self.report = report
        self.verb = verb
        self.name = name
        self.total = total
        self.first = done
        self.done = done
        self.started = time.monotonic()
        self.drawn = 0.0
        self.update(done, force=True)

    def update(self, done, force=False):
        self.done = done
        if not self.report.live:
            return
        now = time.monotonic()
        if force or now - self.drawn >= FETCH_PROGRESS_INTERVAL:
            self.drawn = now
            self.report.redraw(self.text(now))

    def rate(self, now=None):
        seconds = (now or time.monotonic()) - self.started
        return (self.done - self.first) / seconds if seconds > 0 else 0.0

    def text(self, now):
        speed = self.rate(now) if self.done > self.first else None
        return '%s "%s" \u2026 %s' % (self.verb, printable_name(self.name),
                                      "  ".join(live_figures(self.done, self.total, speed)))

    def summary(self):
        """"SIZE in S s, RATE": what this run moved, for the final line."""
        seconds = time.monotonic() - self.started
        moved = self.done - self.first
        text = "%s in %.1f s, %s" % (format_size(self.done), seconds, format_rate(moved, seconds))
        if self.first:
            text += "; resumed at %s" % format_size(self.first)
        return text


# ---------------------------------------------------------------------------
# Client mode: fetching into a file, resumably
# ---------------------------------------------------------------------------

class PartialDownload:
    """The hidden file a download goes to, beside its target, and the hidden
    state file that keeps the server's validator and the full size.

    Both are named after the URL, so the same command run again finds them;
    the partial file is locked while in use, so two fetches of one URL into
    one folder cannot interleave.  `offset` is the count of bytes worth
    asking the rest for (0: start from the beginning).
    """

    def __init__(self, folder, url):
        key = hashlib.sha256(name_bytes(url)).hexdigest()[:32]
        self.folder = folder
        self.path = os.path.join(folder, PARTIAL_PREFIX + key + PARTIAL_SUFFIX)
        self.state_path = os.path.join(folder, PARTIAL_PREFIX + key + PARTIAL_STATE_SUFFIX)
        self.handle = None
        self.offset = 0
        self.validator = None
        self.total = None

    def exists(self):
        return os.path.exists(self.path)

    def open(self):
        """Open the partial file (made empty unless it can be resumed); return self."""
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | O_BINARY | O_NOFOLLOW, 0o666)
        except OSError as error:
            raise WoofError("cannot save in %s: %s" % (printable_name(self.folder),
                                                       error.strerror or error))
        self.handle = open(descriptor, "r+b", buffering=0)
        if not lock_exclusively(self.handle):
            self.handle.close()
            self.handle = None
            raise WoofError("another woof.py is fetching the same URL into %s"
                            % printable_name(self.folder))
        size = os.fstat(descriptor).st_size
        validator, total = self.read_state()
        if size and validator and (total is None or size < total):
            self.offset, self.validator, self.total = size, validator, total
        else:
            self.start_over()
        return self

    def read_state(self):
        """(validator, total size) kept by an earlier run, or (None, None)."""
        import json
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                state = json.load(handle)
            validator, total = state["validator"], state["total"]
        except (OSError, ValueError, KeyError, TypeError):
            return None, None
        if not isinstance(validator, str) or not (total is None or isinstance(total, int)):
            return None, None
        return validator, total

    def remember(self, validator, total):
        """Keep the server's validator for a later resume; None forgets it."""
        if validator is None:
            remove_quietly(self.state_path)
            return
        import json
        text = json.dumps({"validator": validator, "total": total}).encode("utf-8")
        try:
            # Never through a link someone put in the way: the folder may be shared.
            descriptor = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                 | O_BINARY | O_NOFOLLOW, 0o666)
            with open(descriptor, "wb", buffering=0) as handle:
                write_fully(handle, text)
        except OSError:
            remove_quietly(self.state_path)  # then the next run starts over

    def resume_headers(self):
        """The Range and If-Range that ask for the rest, if any is worth asking."""
        if not self.offset:
            return {}
        return {"Range": "bytes=%d-" % self.offset, "If-Range": self.validator}

    def same_version(self, response, total):
        """True when a 206 carries the validator the partial file was fetched
        under, and the same size: a server may ignore If-Range (RFC 9110,
        13.1.5) and send the tail of a newer version, never to be glued on."""
        kind = "ETag" if self.validator.startswith(('"', "W/")) else "Last-Modified"
        if (response.getheader(kind) or "").strip() != self.validator:
            return False
        return self.total is None or total == self.total

    def start_over(self):
        self.cut(0)
        self.offset = 0
        self.validator = None
        self.total = None
        remove_quietly(self.state_path)

    def cut(self, size):
        """Keep the first `size` bytes and write on from there.

        A file that already has that size is not truncated: on ext4 a
        truncation makes the close start writing the whole file back at
        once (auto_da_alloc, for programs that rewrite files in place),
        which made a 1 GiB download take up to twice as long.
        """
        if os.fstat(self.handle.fileno()).st_size != size:
            self.handle.truncate(size)
        self.handle.seek(size)

    def write(self, data):
        write_fully(self.handle, data)

    def close(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def discard(self):
        self.close()
        remove_quietly(self.path)
        remove_quietly(self.state_path)

    def done(self):
        """The download is complete and has its final name: forget the state."""
        self.close()
        remove_quietly(self.state_path)


def strong_validator(response):
    """What If-Range may carry for this response (RFC 7233, 3.2): a strong
    ETag, else the Last-Modified date; None when it has neither."""
    etag = response.getheader("ETag")
    if etag and not etag.strip().startswith("W/"):
        return etag.strip()
    modified = response.getheader("Last-Modified")
    return modified.strip() if modified else None


def response_span(response, offset):
    """(start, total) of a GET's body within the whole resource, total None
    when the server does not tell; None when a resume from offset was not
    granted as asked (the caller then starts over); False for any other
    answer."""
    if response.status == HTTPStatus.OK:
        return 0, response.length
    if response.status == HTTPStatus.PARTIAL_CONTENT:
        match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
        if not match or int(match.group(1)) != offset:
            return None
        total = match.group(3)
        return offset, (int(match.group(2)) + 1 if total == "*" else int(total))
    if response.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and offset:
        return None
    return False


class ResponseStream:
    """A response body read as a file: counts what arrives, shows it on a
    Progress, and raises BodyCut when the connection fails or the body ends
    short of the size announced.  peek() reads ahead without losing bytes.

    A body of known length is read straight from http.client's buffered
    socket, what has arrived at each call (readinto1), into the caller's
    buffer: http.client's readinto waits to fill a whole buffer, which shows
    progress a megabyte at a time on a slow link, and its read1 makes a new
    buffer for each read, which the C library maps afresh each time.
    """

    def __init__(self, response, start, total, progress):
        self.response = response
        self.done = start
        self.total = total
        self.progress = progress
        self.ahead = b""
        self.left = response.length  # None: until the last chunk, or the connection's end
        self.read_some = None if response.chunked else read_some_into(response.fp)

    def readinto(self, view):
        """Fill the start of view with what has arrived; return the count, 0 at the end."""
        if self.ahead:
            count = min(len(view), len(self.ahead))
            view[:count] = self.ahead[:count]
            self.ahead = self.ahead[count:]
            return count
        try:
            got = self.next_piece(view)
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise BodyCut(describe_read_error(error))
        if got:
            self.done += got
            self.progress.update(self.done)
        elif self.total is not None and self.done < self.total:
            raise BodyCut("the connection closed")
        return got

    def next_piece(self, view):
        if self.read_some is None:
            data = self.response.read1(len(view))
            view[:len(data)] = data
            return len(data)
        if self.left is not None:
            if self.left <= 0:
                return 0
            view = view[:self.left]
        got = self.read_some(view)
        if self.left is not None:
            self.left -= got
        return got

    def read(self, size):
        """Up to size bytes, as soon as some have arrived; b"" at the end."""
        buffer = bytearray(size)
        got = self.readinto(memoryview(buffer))
        del buffer[got:]
        return bytes(buffer)

    def peek(self, size):
        """The first `size` bytes (fewer if the body is shorter); reads give them again."""
        data = bytearray()
        while len(data) < size:
            chunk = self.read(size - len(data))
            if not chunk:
                break
            data += chunk
        self.ahead = bytes(data) + self.ahead
        return bytes(data)


def copy_stream(stream, write):
    """write(view) every piece a ResponseStream gives, until its end."""
    view = memoryview(bytearray(COPY_BUFFER_SIZE))
    while True:
        got = stream.readinto(view)
        if not got:
            return
        write(view[:got])


class Download:
    """One GET of a URL into a PartialDownload, continuing it where the
    server allows (206 to a Range with If-Range) and starting over cleanly
    where it does not (200, 416, or a Content-Range that does not fit)."""

    def __init__(self, requester, url, partial, report):
        self.requester = requester
        self.url = url
        self.partial = partial
        self.report = report
        self.connection = None
        self.resumable = partial.offset > 0  # what an earlier run saved is worth keeping

    def open(self, resume=True):
        """Send the request; set response, final_url, start, total and resumable."""
        partial = self.partial
        asked = partial.offset if resume else 0
        self.connection, self.response, self.final_url = self.requester.open(
            self.url, "GET", partial.resume_headers() if asked else None)
        span = response_span(self.response, asked)
        if span and span[0] and not partial.same_version(self.response, span[1]):
            span = None
        if span is None and asked:
            self.close()
            partial.start_over()
            return self.open(resume=False)
        if not span:
            error = status_error(self.response, self.final_url,
                                 self.requester.options.password is not None)
            self.close()
            raise error
        self.start, self.total = span
        if self.start == 0 and partial.offset:
            partial.start_over()
        validator = strong_validator(self.response)
        ranges = (self.response.getheader("Accept-Ranges") or "").lower()
        self.resumable = validator is not None and (self.start > 0 or "bytes" in ranges)
        partial.remember(validator, self.total)
        partial.cut(self.start)

    def stream(self, verb, name):
        self.progress = self.report.progress(verb, name, self.total, self.start)
        return ResponseStream(self.response, self.start, self.total, self.progress)

    def save(self, stream):
        """Copy the rest of the body into the partial file; WoofError (saying
        whether the same command continues) when it cannot all be had."""
        try:
            copy_stream(stream, self.partial.write)
        except BodyCut as cut:
            raise WoofError("the download broke off after %s (%s); %s"
                            % (self.got(stream), cut, self.advice()))
        except OSError as error:
            if error.errno in DISK_FULL_ERRNOS:
                raise WoofError("the disk is full after %s; free some space, then %s"
                                % (self.got(stream), self.advice()))
            raise WoofError("cannot write %s: %s" % (printable_name(self.partial.path),
                                                    error.strerror or error))

    def got(self, stream):
        """What the partial file holds (what arrived, when it is not in use), and of what."""
        handle = self.partial.handle
        saved = format_size(handle.tell() if handle is not None else stream.done)
        return saved if self.total is None else "%s of %s" % (saved, format_size(self.total))

    def advice(self):
        if self.resumable:
            return "run the same command again to continue"
        return "this server cannot resume, so running the same command again starts over"

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def output_target(output, folder):
    """(folder, exact path or None) where -o PATH puts the download; without
    -o, or when PATH is a folder, the download takes its own name there."""
    if output is None:
        return folder, None
    path = os.path.join(folder, output)
    if os.path.isdir(path):
        return path, None
    parent = os.path.dirname(path) or folder
    if not os.path.isdir(parent):
        raise WoofError("-o %s: there is no folder %s" % (printable_name(output),
                                                          printable_name(parent)))
    return parent, path


def fetch_to_file(requester, options, folder, report):
    """Save what the URL offers in folder, or where -o says; resumable."""
    directory, exact = output_target(options.output, folder)
    if exact is not None and not options.force and os.path.lexists(exact):
        raise WoofError("%s exists; add --force to replace it" % printable_name(exact))
    partial = PartialDownload(directory, options.url).open()
    download = Download(requester, options.url, partial, report)
    kept = False
    try:
        download.open()
        name = (os.path.basename(exact) if exact is not None else
                fetched_name(download.response.getheader("Content-Disposition"),
                             download.final_url))
        download.save(download.stream("Saving", name))
        download.close()
        download.resumable = False  # complete: what fails now fails again
        partial.close()
        saved = publish_download(partial.path, directory, exact, name, options.force)
        partial.done()
        kept = True
        report.line('Saved "%s" (%s)' % (printable_name(saved), download.progress.summary()))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(download.advice() if download.resumable else "")
    finally:
        download.close()
        if not kept and download.resumable:
            partial.close()
        elif not kept:
            partial.discard()


def publish_download(partial_path, folder, exact, name, force):
    """Give a complete download its final name; return the path, relative to
    folder when woof chose the name.  Nothing is replaced unless --force."""
    try:
        if exact is None:
            return link_unique(partial_path, folder, name)
        if force:
            os.replace(partial_path, exact)
        else:
            claim_name(partial_path, exact)
        return exact
    except FileExistsError:
        raise WoofError("%s appeared meanwhile; add --force to replace it"
                        % printable_name(exact))
    except OSError as error:
        raise WoofError("cannot name the download %s: %s"
                        % (printable_name(exact or name), error.strerror or error))


def fetch_to_stream(requester, options, out, report):
    """Write what the URL offers to out (-o -): no partial file, no resume."""
    connection, response, final_url = requester.open(options.url)
    try:
        span = response_span(response, 0)
        if not span:
            raise status_error(response, final_url, options.password is not None)
        total = span[1]
        progress = report.progress("Fetching", fetched_name(
            response.getheader("Content-Disposition"), final_url), total)
        stream = ResponseStream(response, 0, total, progress)

        def write(data):
            try:
                out.write(data)
            except OSError as error:
                raise WoofError("cannot write to standard output: %s"
                                % (error.strerror or error))
        try:
            copy_stream(stream, write)
            out.flush()
        except BodyCut as cut:
            raise WoofError("the download broke off after %s (%s); standard output got "
                            "only that part" % (format_size(stream.done), cut))
        report.line('Fetched "%s" (%s)' % (printable_name(progress.name), progress.summary()))
    finally:
        connection.close()


# ---------------------------------------------------------------------------
# Client mode: unpacking archives (-x)
#
# A tar (any compression) is unpacked as it arrives; a zip keeps its index
# at its end, so it is fetched whole first (resumably, as any download).
# Members are saved as an upload is (UploadBatch): files into hidden
# temporaries, all named at the end, folders made afresh ("proj (1)" when
# "proj" exists), nothing overwritten, never written through an existing
# link; then empty folders and links.  All or nothing: a member that breaks
# a rule refuses the whole archive and nothing is left behind.  The rules
# are those of tarfile's "data" filter (PEP 706), applied by woof itself on
# every Python so all behave alike, and by the filter too where it exists.
# ---------------------------------------------------------------------------

def member_path(name):
    """An archive member's name as a clean relative "/"-separated path, or
    None for the archive's own top ("./").

    Leading slashes are dropped, as tar and the data filter do; WoofError
    for a name that climbs out with "..", or a Windows drive or UNC name.
    """
    relative = name.replace("\\", "/") if os.sep == "\\" else name
    relative = relative.lstrip("/")
    if os.path.splitdrive(relative)[0]:
        raise unpack_refusal(name, "is an absolute path")
    parts = []
    for part in relative.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise unpack_refusal(name, "leads outside the folder")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None


def unpack_refusal(name, reason):
    return WoofError("refusing the archive: %s %s; nothing was unpacked"
                     % (printable_name(name), reason))


class UnpackBudget:
    """What an unpack may write: no more than the folder's free space for
    the sizes the archive declares, checked before each file is written;
    and no more than UNPACK_ALLOWANCE plus `ratio` times what downloaded()
    says has arrived (ratio None: no such limit).  `complete` says the
    download is whole, so declared sizes are held to the ratio up front."""

    def __init__(self, folder, downloaded, ratio=UNPACK_RATIO, complete=False):
        self.folder = folder
        self.downloaded = downloaded
        self.ratio = ratio
        self.complete = complete
        try:
            self.free = shutil.disk_usage(folder).free
        except OSError:
            self.free = None  # unknown: writing will tell
        self.declared = 0
        self.written = 0

    def declare(self, size):
        """Refuse the archive before writing `size` more bytes that cannot fit."""
        self.declared += size
        if self.free is not None and self.declared > self.free:
            raise WoofError("refusing the archive: its files need %s but only %s is free in "
                            "%s; nothing was unpacked" % (format_size(self.declared),
                                                          format_size(self.free),
                                                          printable_name(self.folder)))
        if self.complete:
            self.check(self.declared)

    def charge(self, count):
        """Note `count` bytes written; refuse the archive once they are too many."""
        self.written += count
        self.check(self.written)

    def check(self, size):
        if self.ratio is None:
            return
        downloaded = self.downloaded()
        if size > UNPACK_ALLOWANCE + self.ratio * downloaded:
            raise WoofError("refusing the archive: it unpacks to more than %d times the %s "
                            "downloaded (a compression bomb?); add --no-unpack-limit if you "
                            "trust it; nothing was unpacked"
                            % (self.ratio, format_size(downloaded)))


def linked_temporary(folder, source):
    """A new hidden hard link to source in folder; None where the file
    system has no hard links."""
    for _ in range(MAX_NAME_TRIES):
        path = os.path.join(folder, TEMPORARY_PREFIX + os.urandom(8).hex() + TEMPORARY_SUFFIX)
        try:
            os.link(source, path)
        except FileExistsError:
            continue
        except (AttributeError, NotImplementedError):
            return None
        except OSError as error:
            if error.errno in NO_HARD_LINK_ERRNOS:
                return None
            raise
        return path
    raise WoofError("cannot create a temporary file in %s" % printable_name(folder))


def is_inside(path, folder):
    """True when the real path lies in (or is) the real folder."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # another drive, on Windows
        return False


class Unpacking(UploadBatch):
    """An archive's members, saved as an upload is; publish() names them all."""

    def __init__(self, folder, budget):
        super().__init__(folder, MAX_UNPACKED_FILES)
        self.budget = budget
        self.real_folder = os.path.realpath(folder)
        self.folders = []      # member paths of folders
        self.links = []        # (member path, target)
        self.by_name = {}      # member path -> its entry in received, for hard links
        self.skipped = []      # what this system could not make
        self.top_names = set()

    def check_inside(self, name, relative):
        """Refuse a member whose path, resolved on disk, leads out of the folder."""
        real = os.path.realpath(os.path.join(self.real_folder, *relative.split("/")))
        if not is_inside(real, self.real_folder):
            raise unpack_refusal(name, "goes through a link that leads outside the folder")

    def check_link(self, name, relative, target, hard=False):
        """Refuse a link whose target is absolute or leads out of the folder."""
        if not target or target.startswith(("/", "\\")) or os.path.splitdrive(target)[0]:
            raise unpack_refusal(name, "links to an absolute path")
        base = "" if hard else relative.rpartition("/")[0]
        try:
            inside = member_path((base + "/" if base else "") + target)
        except WoofError:
            raise unpack_refusal(name, "links outside the folder")
        self.check_inside(name, inside or ".")
        return inside

    def add_file(self, name, read, mode=0o644, mtime=None, size=0, regions=None):
        """A file of `size` bytes, read() piece by piece.  With regions, a
        sparse file: read(offset, length) gives the data at each region
        (offset, length), and the rest is left as holes, which take no space."""
        budget = self.budget
        budget.declare(size if regions is None else sum(length for _, length in regions))

        def counted():
            data = read()
            budget.charge(len(data))
            return data
        self.receive(name, counted if regions is None else lambda: b"")
        entry = self.received[-1]
        if regions is not None:
            self.fill_sparse(entry[0], read, regions, size)
            entry = self.received[-1] = (entry[0], name, size) + tuple(entry[3:])
        self.by_name[name] = entry
        try:
            # The data filter's modes: no set-id or sticky bits, no write for
            # group or others, and the owner may always read and write.
            os.chmod(entry[0], mode & 0o755 | 0o600)
            if mtime is not None:
                os.utime(entry[0], (mtime, mtime))
        except (OSError, OverflowError, ValueError):
            pass  # a file system without modes or such times keeps the defaults

    def fill_sparse(self, path, read, regions, size):
        try:
            with open(path, "r+b") as handle:
                for offset, length in regions:
                    handle.seek(offset)
                    while length > 0:
                        data = read(offset, min(length, COPY_BUFFER_SIZE))
                        if not data:
                            raise tarfile.ReadError("unexpected end of data")
                        self.budget.charge(len(data))
                        write_fully(handle, data)
                        offset += len(data)
                        length -= len(data)
                handle.truncate(size)
        except OSError as error:
            raise storage_error(error)

    def add_link(self, name, target, mode, mtime):
        """A hard link to an earlier file of the archive: a link here too,
        or a copy (written, and counted) where the file system has none."""
        entry = self.by_name.get(target)
        if entry is None:
            raise unpack_refusal(name, "is a hard link to %s, which is no earlier file of "
                                       "the archive" % printable_name(target))
        if len(self.received) >= self.max_files:
            raise UploadRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                "an archive may hold at most %d files" % self.max_files)
        try:
            path = linked_temporary(self.folder, entry[0])
        except OSError as error:
            raise storage_error(error)
        if path is None:
            with open(entry[0], "rb") as handle:
                self.add_file(name, lambda: handle.read(COPY_BUFFER_SIZE), mode, mtime,
                              entry[2])
            return
        with self.lock:
            self.temporaries[path] = None  # closed already
        self.received.append((path, name) + tuple(entry[2:]))
        self.by_name[name] = self.received[-1]

    def name_all(self, created, folders=None):
        folders = {} if folders is None else folders
        saved = UploadBatch.name_all(self, created, folders)
        self.top_names.update(item.name.split("/")[0] for item in saved)
        for name in self.folders:
            _, shown = self.make_folders(upload_path(name), folders, created)
            self.top_names.add(shown[0])
        made = [self.make_link(name, target, folders, created) for name, target in self.links]
        # Checked once all links exist: a link may lead out only through another.
        for name, path in made:
            if path is not None and not is_inside(os.path.realpath(path), self.real_folder):
                raise unpack_refusal(name, "links outside the folder")
        return saved

    def make_link(self, name, target, folders, created):
        """(member name, path of the symbolic link made, or None when skipped)."""
        parts = upload_path(name)
        parent, shown = self.make_folders(parts[:-1], folders, created)
        for number in range(MAX_NAME_TRIES):
            candidate = numbered_name(parts[-1], number) if number else parts[-1]
            path = os.path.join(parent, candidate)
            try:
                os.symlink(target, path)
            except FileExistsError:
                continue
            except (OSError, NotImplementedError, AttributeError) as error:
                self.skipped.append("left out the link %s: %s" % (
                    printable_name(name), getattr(error, "strerror", None) or error))
                return name, None
            created.append((path, False))
            self.top_names.add((shown + [candidate])[0])
            return name, path
        raise WoofError("too many files are named %s" % printable_name(parts[-1]))


def add_tar_member(archive, member, unpacking):
    """Take one tar member into the Unpacking, or refuse the archive."""
    name = member.name
    relative = member_path(name)
    if relative is None:
        return
    if member.ischr() or member.isblk():
        raise unpack_refusal(name, "is a device file")
    if member.isfifo():
        raise unpack_refusal(name, "is a FIFO")
    unpacking.check_inside(name, relative)
    if member.issym():
        unpacking.check_link(name, relative, member.linkname)
    elif member.islnk():
        target = unpacking.check_link(name, relative, member.linkname, hard=True)
    if TAR_DATA_FILTER is not None:
        try:
            TAR_DATA_FILTER(member, unpacking.real_folder)
        except tarfile.TarError as error:
            raise unpack_refusal(name, "breaks tarfile's data filter (%s)" % error)
    if member.isdir():
        unpacking.folders.append(relative)
    elif member.issym():
        unpacking.links.append((relative, member.linkname))
    elif member.islnk():
        unpacking.add_link(relative, target, member.mode, member.mtime)
    elif member.issparse():
        # The member's own file knows where its data lies (tarfile's map of
        # data and holes); it is read there only, in order, never the holes.
        data = archive.extractfile(member).raw

        def read_region(offset, length):
            data.seek(offset)
            return data.read(length)
        unpacking.add_file(relative, read_region, member.mode, member.mtime, member.size,
                           regions=member.sparse)
    else:
        data = archive.extractfile(member)
        unpacking.add_file(relative, lambda: data.read(COPY_BUFFER_SIZE), member.mode,
                           member.mtime, member.size)


def decompressed(stream):
    """A file of what stream holds, decompressed as its first bytes say
    (gzip, bzip2, xz), else stream itself.

    The modules' own file classes decompress a bounded piece at a time, so
    a bomb cannot fill the memory, and their reads are cheap: tarfile's own
    decompression, given a large buffer, copied all of it for every member's
    header (40,000 members took 30 seconds).
    """
    start = stream.peek(ARCHIVE_PEEK)[:ARCHIVE_PEEK]
    for magic, module_name, class_name in TAR_COMPRESSIONS:
        if start.startswith(magic):
            module = optional_module(module_name)
            if module is None:
                raise WoofError("this Python was built without the %s module, so woof cannot "
                                "unpack this archive" % module_name)
            if module_name == "gzip":
                return module.GzipFile(fileobj=stream, mode="rb")
            return getattr(module, class_name)(stream, "rb")
    return stream


def unpack_tar(stream, unpacking):
    """Unpack a tar stream (plain, gzip, bzip2 or xz) as it is read."""
    with tarfile.open(fileobj=decompressed(stream), mode="r|") as archive:
        for member in archive:
            add_tar_member(archive, member, unpacking)


def add_zip_member(archive, info, unpacking):
    """Take one zip member into the Unpacking, or refuse the archive."""
    name = info.filename
    relative = member_path(name)
    if relative is None:
        return
    # Unix modes sit in the high half of the external attributes (APPNOTE 4.4.15).
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    kind = stat.S_IFMT(mode)
    unpacking.check_inside(name, relative)
    if name.endswith("/") or kind == stat.S_IFDIR:
        unpacking.folders.append(relative)
    elif kind == stat.S_IFLNK:
        if info.file_size > MAX_LINK_TARGET:
            raise unpack_refusal(name, "is a link with a target too long")
        target = archive.read(info).decode("utf-8", "surrogateescape")
        unpacking.check_link(name, relative, target)
        unpacking.links.append((relative, target))
    elif kind not in (0, stat.S_IFREG):
        raise unpack_refusal(name, "is a device file or FIFO")
    else:
        mtime = time.mktime(info.date_time + (0, 0, -1))
        with archive.open(info) as data:
            # Its size was declared with all the others by unpack_zip.
            unpacking.add_file(relative, lambda: data.read(COPY_BUFFER_SIZE),
                               mode or 0o644, mtime)


def unpack_zip(path, unpacking):
    import zipfile
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise WoofError("not a zip archive: %s" % error)
    with archive:
        # A zip tells every size in its index: all are checked before any is written.
        unpacking.budget.declare(sum(info.file_size for info in archive.infolist()))
        for info in archive.infolist():
            add_zip_member(archive, info, unpacking)


def archive_errors():
    """What the archive modules raise for damaged or unsupported data."""
    import zipfile
    errors = [tarfile.TarError, zipfile.BadZipFile, EOFError, NotImplementedError,
              RuntimeError]  # zipfile: an encrypted member
    for module, name in (("zlib", "error"), ("lzma", "LZMAError")):
        found = optional_module(module)
        if found is not None:
            errors.append(getattr(found, name))
    return tuple(errors)


def unpack_into(folder, report, budget, unpack, *arguments):
    """Run unpack(*arguments, unpacking) and publish what it took; return the
    Unpacking.  Nothing is left in folder when anything fails."""
    unpacking = Unpacking(folder, budget)
    try:
        try:
            unpack(*(arguments + (unpacking,)))
        except archive_errors() as error:
            raise WoofError("cannot unpack the archive: %s; nothing was unpacked"
                            % (str(error) or type(error).__name__))
        except UploadRefused as refusal:
            if refusal.status == HTTPStatus.INSUFFICIENT_STORAGE:
                raise WoofError("the disk is full; nothing was unpacked")
            raise WoofError("cannot unpack the archive: %s; nothing was unpacked" % refusal)
        except OSError as error:
            raise WoofError("cannot unpack the archive: %s; nothing was unpacked"
                            % (error.strerror or error))
        try:
            unpacking.saved = unpacking.publish()
        except UploadRefused as refusal:
            raise WoofError("cannot unpack the archive: %s; nothing was unpacked" % refusal)
    finally:
        unpacking.discard()
    for problem in unpacking.skipped:
        report.warn(problem)
    return unpacking


def fetch_and_unpack(requester, options, folder, report):
    """-x: unpack what the URL offers into folder."""
    ratio = UNPACK_RATIO if options.unpack_limit else None
    partial = PartialDownload(folder, options.url).open()
    download = Download(requester, options.url, partial, report)
    kept = False
    try:
        download.open()
        name = fetched_name(download.response.getheader("Content-Disposition"),
                            download.final_url)
        stream = download.stream("Unpacking", name)
        if download.start == 0 and not stream.peek(ARCHIVE_PEEK).startswith(ZIP_SIGNATURES):
            partial.discard()
            download.resumable = False
            budget = UnpackBudget(folder, lambda: stream.done, ratio)
            try:
                unpacking = unpack_into(folder, report, budget, unpack_tar, stream)
            except BodyCut as cut:
                raise WoofError("the download broke off after %s (%s); nothing was unpacked; "
                                "running the same command again starts over"
                                % (download.got(stream), cut))
        else:
            download.save(stream)
            download.close()
            download.resumable = False  # complete: what fails now fails again
            partial.close()
            size = os.path.getsize(partial.path)
            budget = UnpackBudget(folder, lambda: size, ratio, complete=True)
            unpacking = unpack_into(folder, report, budget, unpack_archive_file, partial.path)
        kept = True
        partial.discard()
        tops = ", ".join('"%s"' % printable_name(top) for top in sorted(unpacking.top_names))
        report.line("Unpacked %s: %s" % (unpacked_count(unpacking), tops or "nothing"))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(download.advice() if download.resumable else "")
    finally:
        download.close()
        if not kept and download.resumable and partial.exists():
            partial.close()
        else:
            partial.discard()


def unpack_archive_file(path, unpacking):
    """Unpack a downloaded archive: a zip, or a tar read as a stream."""
    with open(path, "rb") as handle:
        if handle.read(len(ZIP_SIGNATURES[0])) in ZIP_SIGNATURES:
            unpack_zip(path, unpacking)
            return
        handle.seek(0)
        unpack_tar(handle, unpacking)


def unpacked_count(unpacking):
    files = len(unpacking.saved)
    text = "%d file%s (%s)" % (files, "" if files == 1 else "s",
                               format_size(sum(item.size for item in unpacking.saved)))
    if unpacking.links:
        text += ", %d link%s" % (len(unpacking.links), "" if len(unpacking.links) == 1 else "s")
    return text


# ---------------------------------------------------------------------------
# Client mode: sending files to a woof receiving with -U
#
# A HEAD of the URL tells a receiving woof by the UPLOAD_MARKER header its
# upload page carries: a name or a Server header would also fit a woof that
# offers a download, or a proxy that rewrites it.  Such a woof gets one
# multipart/form-data post with a part per file, named by its relative path
# (as the upload page names a folder's files), streamed from disk with its
# length known in advance; any other server gets a single file by PUT.
# ---------------------------------------------------------------------------

class Outgoing(NamedTuple):
    """A file to send, under the relative "/"-separated name it will get."""

    name: str
    path: str
    size: int


def files_to_send(paths, report):
    """The Outgoing of each file given and of each file in the folders given.

    A receiving woof makes the folders its files go in, and no other: a
    part named "photos/empty/" would be saved as a file.  Empty folders are
    left out, in one warning.
    """
    items = []
    empty = []
    for path in paths:
        try:
            status = os.stat(path)
        except OSError as error:
            raise WoofError("cannot read %s: %s" % (printable_name(path), error.strerror or error))
        top = top_level_name(path)
        if stat.S_ISDIR(status.st_mode):
            items.extend(folder_files(path, top, report, empty))
        elif stat.S_ISREG(status.st_mode):
            check_readable_file(path)
            items.append(Outgoing(top, path, status.st_size))
        else:
            raise WoofError("%s is neither a file nor a folder" % printable_name(path))
    if not items:
        raise WoofError("there is no file to send in %s%s" % (
            ", ".join(map(printable_name, paths)),
            " (a woof receiving files makes no empty folders)" if empty else ""))
    if empty:
        shown = ", ".join('"%s"' % printable_name(name) for name in empty[:MAX_NAMED_FOLDERS])
        if len(empty) > MAX_NAMED_FOLDERS:
            shown += " and %d more" % (len(empty) - MAX_NAMED_FOLDERS)
        report.warn("left out %s: a woof receiving files makes only the folders its files "
                    "go in" % (("the empty folder " if len(empty) == 1 else
                                "%d empty folders, " % len(empty)) + shown))
    return items


def folder_files(folder, top, report, empty):
    """The files of a folder tree, in name order; links are not followed.
    The relative names of folders with nothing in them go to `empty`."""
    def fail(error):
        raise WoofError("cannot read the folder %s: %s"
                        % (printable_name(error.filename or folder), error.strerror or error))
    items = []
    for parent, folders, names in os.walk(folder, onerror=fail):
        folders.sort()
        relative = os.path.relpath(parent, folder)
        prefix = top if relative == os.curdir else "/".join([top] + relative.split(os.sep))
        if not folders and not names:
            empty.append(prefix)
        for name in sorted(names):
            path = os.path.join(parent, name)
            try:
                status = os.lstat(path)
            except OSError as error:
                fail(error)
            if stat.S_ISREG(status.st_mode):
                if not may_read(path):
                    raise WoofError("cannot read %s: permission denied" % printable_name(path))
                items.append(Outgoing(prefix + "/" + name, path, status.st_size))
            else:
                report.warn("left out %s: %s" % (printable_name(path), "a link"
                                                 if stat.S_ISLNK(status.st_mode)
                                                 else "not a regular file"))
    return items


def form_part_head(boundary, name, first):
    """The delimiter and headers before one file's bytes (RFC 7578, 4.2).

    filename holds the name as browsers write it (", CR, LF as %22, %0D,
    %0A: HTML, 4.10.21.8); filename* (RFC 8187) holds it exactly, and woof's
    reader prefers it.
    """
    shown = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    exact = urllib.parse.quote(name_bytes(name), safe="")
    head = ('%s--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"; '
            "filename*=UTF-8''%s\r\nContent-Type: application/octet-stream\r\n\r\n"
            % ("" if first else "\r\n", boundary, shown, exact))
    return head.encode("utf-8", "surrogateescape")


def send_file_data(sock, item, progress, done, use_sendfile):
    """Send exactly item.size bytes of item's file; return done + item.size.

    The length was promised up front: a file that changes size meanwhile
    breaks the upload off, and a receiving woof keeps nothing of it.
    """
    try:
        handle = open(item.path, "rb")
    except OSError as error:
        raise WoofError("cannot read %s: %s" % (printable_name(item.path),
                                                error.strerror or error))
    with handle:
        changed = WoofError("%s changed while woof sent it, so the upload was broken off"
                            % printable_name(item.path))
        if os.fstat(handle.fileno()).st_size != item.size:
            raise changed
        offset = 0
        view = None if use_sendfile else memoryview(bytearray(COPY_BUFFER_SIZE))
        while offset < item.size:
            wanted = min(SEND_SLICE if use_sendfile else len(view), item.size - offset)
            if use_sendfile:
                count = sock.sendfile(handle, offset, wanted)
            else:
                count = handle.readinto(view[:wanted])
                sock.sendall(view[:count])
            if not count:
                raise changed
            offset += count
            progress.update(done + offset)
        if os.fstat(handle.fileno()).st_size != item.size:
            raise changed
    return done + item.size


def send_files(requester, options, out, report, state_path=None):
    """Send the paths given after the URL; write the receiver's answer to out."""
    items = files_to_send(options.paths, report)
    connection, response, url = requester.open(options.url, "HEAD")
    connection.close()
    if response.status == HTTPStatus.UNAUTHORIZED:
        raise status_error(response, url, options.password is not None)
    receiving = response.status == HTTPStatus.OK and \
        response.getheader(UPLOAD_MARKER[0]) == UPLOAD_MARKER[1]
    if receiving and len(items) > MAX_UPLOAD_FILES:
        raise WoofError("woof takes at most %d files at once, not %d; send an archive "
                        "of them instead" % (MAX_UPLOAD_FILES, len(items)))
    if receiving and response.getheader("Upload-Limit") and state_path:
        send_files_resumably(requester, url, items, UploadState(state_path, url, items),
                             out, report)
        return
    if receiving:
        answer_url, (connection, response), progress = post_form(requester, url, items, report)
    else:
        single = len(options.paths) == 1 and len(items) == 1 and items[0].path == options.paths[0]
        if not single:
            raise WoofError("%s is no woof receiving files (woof.py -U): it can take one file, "
                            "by PUT, but not a folder or several files"
                            % printable_name(options.url))
        answer_url, (connection, response), progress = put_file(requester, options.url,
                                                                items[0], report)
    try:
        if not 200 <= response.status < 300:
            raise status_error(response, answer_url, options.password is not None)
        answer = response.read() if receiving else b""
    except (OSError, http.client.HTTPException) as error:
        raise WoofError("no answer after sending: %s" % describe_read_error(error))
    finally:
        connection.close()
    if answer:
        # The receiver's own words, made harmless for a terminal.
        lines = answer.decode("utf-8", "replace").splitlines()
        out.write("".join(printable_name(line) + "\n" for line in lines).encode("utf-8"))
        out.flush()
    what = items[0].name if len(items) == 1 else "%d files" % len(items)
    report.line('Sent "%s" (%s)%s' % (printable_name(what), progress.summary(),
                                      "" if receiving else ": %d %s" % (
                                          response.status, printable_name(response.reason))))


def send_files_resumably(requester, url, items, state, out, report):
    """Send to a woof that resumes: each file on its own, the receiver's lines
    written to out with whether its SHA-256 matches ours."""
    results, progress = send_resumable(requester, url, items, state, report)
    lines = []
    for result in results:
        for line in result.answer.splitlines():
            lines.append(printable_name(line) + (" verified" if result.verified else
                                                 " NOT verified"))
    out.write("".join(line + "\n" for line in lines).encode("utf-8"))
    out.flush()
    what = items[0].name if len(items) == 1 else "%d files" % len(items)
    report.line('Sent "%s" (%s)' % (printable_name(what), progress.summary()))


def post_form(requester, url, items, report):
    """Post items to a receiving woof as one multipart/form-data upload."""
    boundary = "woof-" + secrets.token_hex(16)
    heads = [form_part_head(boundary, item.name, index == 0) for index, item in enumerate(items)]
    closing = ("\r\n--%s--\r\n" % boundary).encode("ascii")
    length = sum(map(len, heads)) + sum(item.size for item in items) + len(closing)
    shown = items[0].name if len(items) == 1 else "%d files" % len(items)
    progress = report.progress("Sending", shown, length)
    use_sendfile = HAS_OS_SENDFILE and url.lower().startswith("http:")

    def write_body(sock):
        done = 0
        for head, item in zip(heads, items):
            sock.sendall(head)
            done = send_file_data(sock, item, progress, done + len(head), use_sendfile)
        sock.sendall(closing)
        progress.update(length)
    headers = {"Content-Type": "multipart/form-data; boundary=" + boundary}
    # A receiving woof always answers "100 Continue" or its refusal: wait for it.
    return url, requester.send(url, "POST", headers, length, write_body,
                               requester.options.timeout), progress


def put_file(requester, url, item, report):
    """PUT one file to url, or to url + its name when url ends with "/" (as curl -T does)."""
    if urllib.parse.urlsplit(url).path.endswith("/"):
        url += urllib.parse.quote(name_bytes(item.name), safe="")
    progress = report.progress("Sending", item.name, item.size)
    use_sendfile = HAS_OS_SENDFILE and url.lower().startswith("http:")
    headers = {"Content-Type": guess_content_type(item.name)}
    return url, requester.send(url, "PUT", headers, item.size, lambda sock: send_file_data(
        sock, item, progress, 0, use_sendfile)), progress


# ---------------------------------------------------------------------------
# Client mode: resumable sending
#
# To a receiving woof, each file goes as a resumable upload of its own
# (see "HTTP handler for resumable uploads"): created empty, appended from
# the offset woof has, then completed with the SHA-256 computed as it went,
# which woof checks before it publishes the file.  The upload URLs are kept
# in a small file of this user's, so that the same command run again after
# a cut continues each file where the receiver has it.
# ---------------------------------------------------------------------------

# Upload URLs older than this are forgotten (woof forgets its side sooner).
UPLOAD_STATE_DAYS = 7


def upload_state_path(environ):
    """The file that keeps the upload URLs of unfinished sends, in woof's
    cache folder."""
    return os.path.join(woof_cache_folder(environ), "uploads.json")


class UploadState:
    """The upload URLs of one send (the same URL, files and sizes), so that
    running the same command again continues it: {file key: URL}, and the
    batch id that makes the files one upload."""

    def __init__(self, path, url, items):
        self.path = path
        identity = "\0".join([url] + ["%s\0%s\0%d\0%d" % (item.name, os.path.abspath(item.path),
                                                          item.size, mtime_of(item.path))
                                      for item in items])
        self.key = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()
        self.all = self.load()
        self.mine = self.all.get(self.key) or {"batch": secrets.token_hex(12), "files": {},
                                               "time": time.time()}

    def load(self):
        import json
        try:
            with open(self.path, encoding="utf-8") as handle:
                known = json.load(handle)
        except (OSError, ValueError, RecursionError):
            return {}  # unreadable or damaged: sends start afresh
        if not isinstance(known, dict):
            return {}
        horizon = time.time() - UPLOAD_STATE_DAYS * 86400
        return {key: value for key, value in known.items()
                if isinstance(value, dict) and isinstance(value.get("files"), dict)
                and isinstance(value.get("batch"), str)
                and isinstance(value.get("time"), (int, float)) and value["time"] > horizon}

    @property
    def batch(self):
        return self.mine["batch"]

    def url_of(self, item):
        url = self.mine["files"].get(item.name)
        return url if isinstance(url, str) else None

    def remember(self, item, url):
        """Keep (or, with None, forget) item's upload URL; written at once."""
        if url is None:
            self.mine["files"].pop(item.name, None)
        else:
            self.mine["files"][item.name] = url
        self.mine["time"] = time.time()
        self.all[self.key] = self.mine
        self.save()

    def finish(self):
        """The send is over: forget it."""
        if self.all.pop(self.key, None) is not None:
            self.save()

    def save(self):
        import json
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            temporary = "%s.%s.tmp" % (self.path, secrets.token_hex(4))
            # Only its owner may read it: it holds upload URLs, which are
            # the right to add to those uploads.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(descriptor, "w", encoding="utf-8") as handle:
                json.dump(self.all, handle)
            os.replace(temporary, self.path)
        except OSError:
            pass  # no resume after a cut, but the send itself goes on


def mtime_of(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class ResumableSend(NamedTuple):
    """What the receiver said of one file: its answer lines, whether its
    SHA-256 matched ours, the bytes this run sent of it."""

    answer: str
    verified: bool
    sent: int


def send_resumable(requester, url, items, state, report):
    """Send items to a receiving woof, each resumable; return (the
    ResumableSend of each, the progress)."""
    total = sum(item.size for item in items)
    shown = items[0].name if len(items) == 1 else "%d files" % len(items)
    progress = report.progress("Sending", shown, total)
    results, done = [], 0
    base = url if urllib.parse.urlsplit(url).path.endswith("/") else url + "/"
    for item in items:
        results.append(send_one_resumable(requester, base, item, len(items), state,
                                          report, progress, done))
        done += item.size
        progress.update(done)
    state.finish()
    return results, progress


def send_one_resumable(requester, base, item, files, state, report, progress, done):
    """One file: find or create its upload, append what the receiver lacks, complete it."""
    location, offset, theirs = state.url_of(item), None, None
    if location is not None:
        offset, theirs = upload_offset(requester, location)
        if offset is not None and offset > item.size:
            offset, theirs = None, None  # not this file's upload: start afresh
    if offset is None:
        location, offset = create_remote_upload(requester, base, item, files, state.batch)
        state.remember(item, location)
    digest = hashlib.sha256()
    if theirs is not None:  # it arrived whole before; only the answer was lost
        hash_file_head(item, item.size, digest)
        return ResumableSend("%s had arrived before (SHA-256 %s)\n" % (item.name, theirs),
                             theirs == digest.hexdigest(), 0)
    hash_file_head(item, offset, digest)
    if offset:
        report.line("Resuming %s at %s of %s" % (printable_name(item.name), format_size(offset),
                                                 format_size(item.size)))
    if offset < item.size:
        append_remote(requester, location, item, offset, digest, progress, done)
    answer = complete_remote(requester, location, item, digest)
    return answer._replace(sent=item.size - offset)


def upload_offset(requester, location):
    """(offset, None) of an unfinished upload; (size, the receiver's SHA-256)
    of one it finished; (None, None) when it forgot it."""
    connection, response, _ = requester.open(location, "HEAD")
    connection.close()
    if response.status == HTTPStatus.NOT_FOUND:
        return None, None
    offset = structured_integer(response.getheader("Upload-Offset"))
    if not 200 <= response.status < 300 or offset is None:
        raise status_error(response, location, requester.options.password is not None)
    if structured_boolean(response.getheader("Upload-Complete")):
        return offset, digest_from_field(response.getheader("Repr-Digest")) or ""
    return offset, None


def answer_of(requester, connection, response, url):
    """The text of a 2xx answer; WoofError for any other.  Closes the connection."""
    try:
        if not 200 <= response.status < 300:
            raise status_error(response, url, requester.options.password is not None)
        return response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as error:
        raise WoofError("no answer after sending: %s" % describe_read_error(error))
    finally:
        connection.close()


def create_remote_upload(requester, base, item, files, batch):
    """(upload URL, 0) of a new, empty upload for item."""
    url = base + urllib.parse.quote(name_bytes(item.name), safe="/")
    headers = {"Upload-Complete": "?0", "Upload-Length": str(item.size),
               BATCH_FIELD: batch, BATCH_FILES_FIELD: str(files)}
    connection, response = requester.send(url, "POST", headers, 0, lambda sock: None)
    answer_of(requester, connection, response, url)
    location = response.getheader("Location")
    if response.status != HTTPStatus.CREATED or not location:
        raise WoofError("%s did not make a resumable upload (%d %s)"
                        % (printable_name(url), response.status, response.reason))
    location = urllib.parse.urljoin(url, location.strip())
    if parse_url(location).origin != parse_url(url).origin:
        # The file goes where the user sent it, and over the same scheme.
        raise WoofError("%s puts the upload at %s, on another server"
                        % (printable_name(url), printable_name(location)))
    return location, 0


def hash_file_head(item, offset, digest):
    """Feed digest the first offset bytes of item's file (sent by an earlier run)."""
    if not offset:
        return
    with open_to_send(item) as handle:
        left = offset
        while left:
            data = handle.read(min(left, COPY_BUFFER_SIZE))
            if not data:
                raise WoofError("%s is shorter than what was sent of it before"
                                % printable_name(item.path))
            digest.update(data)
            left -= len(data)


def open_to_send(item):
    try:
        return open(item.path, "rb")
    except OSError as error:
        raise WoofError("cannot read %s: %s" % (printable_name(item.path),
                                                error.strerror or error))


def append_remote(requester, location, item, offset, digest, progress, done):
    """PATCH the rest of item's file from offset, hashing it as it goes."""
    use_sendfile = HAS_OS_SENDFILE and location.lower().startswith("http:")

    def write_body(sock):
        with open_to_send(item) as handle:
            if os.fstat(handle.fileno()).st_size != item.size:
                raise WoofError("%s changed since woof began to send it; send it again"
                                % printable_name(item.path))
            if use_sendfile:
                send_hashing_beside(sock, handle, item, offset, digest, progress, done)
            else:
                send_hashing(sock, handle, item, offset, digest, progress, done)
    headers = {"Upload-Complete": "?0", "Upload-Offset": str(offset),
               "Content-Type": RESUMABLE_UPLOAD_TYPE}
    try:
        connection, response = requester.send(location, "PATCH", headers, item.size - offset,
                                              write_body)
        answer_of(requester, connection, response, location)
    except WoofError as error:
        raise WoofError("%s; run the same command again to continue where it stopped" % error)


def send_hashing(sock, handle, item, offset, digest, progress, done):
    """Send item's file from offset, each piece hashed, then sent."""
    handle.seek(offset)
    view = memoryview(bytearray(COPY_BUFFER_SIZE))
    position = offset
    while position < item.size:
        count = handle.readinto(view[:min(len(view), item.size - position)])
        if not count:
            raise WoofError("%s shrank while woof sent it" % printable_name(item.path))
        digest.update(view[:count])
        sock.sendall(view[:count])
        position += count
        progress.update(done + position)


def send_hashing_beside(sock, handle, item, offset, digest, progress, done):
    """Send item's file from offset by sendfile while a thread of its own
    hashes the same bytes (hashlib lets go of the interpreter's lock, so
    both go at once; the second read comes from the page cache)."""
    failures = []

    def hash_rest():
        try:
            with open_to_send(item) as reading:
                reading.seek(offset)
                left = item.size - offset
                while left:
                    data = reading.read(min(left, COPY_BUFFER_SIZE))
                    if not data:
                        raise WoofError("%s shrank while woof sent it"
                                        % printable_name(item.path))
                    digest.update(data)
                    left -= len(data)
        except WoofError as error:
            failures.append(error)
    hasher = threading.Thread(target=hash_rest, name="woof upload hash")
    hasher.daemon = True
    hasher.start()
    try:
        position = offset
        while position < item.size:
            count = sock.sendfile(handle, position, min(SEND_SLICE, item.size - position))
            if not count:
                raise WoofError("%s shrank while woof sent it" % printable_name(item.path))
            position += count
            progress.update(done + position)
    finally:
        hasher.join()
    if failures:
        raise failures[0]
    if os.fstat(handle.fileno()).st_size != item.size:
        raise WoofError("%s changed while woof sent it; send it again"
                        % printable_name(item.path))


def complete_remote(requester, location, item, digest):
    """Complete the upload with our SHA-256; the receiver's answer, checked."""
    ours = digest.hexdigest()
    headers = {"Upload-Complete": "?1", "Upload-Offset": str(item.size),
               "Content-Type": RESUMABLE_UPLOAD_TYPE,
               "Repr-Digest": repr_digest(bytes.fromhex(ours))}
    connection, response = requester.send(location, "PATCH", headers, 0, lambda sock: None)
    answer = answer_of(requester, connection, response, location)
    theirs = digest_from_field(response.getheader("Repr-Digest"))
    return ResumableSend(answer, theirs == ours, 0)


# ---------------------------------------------------------------------------
# Client mode: the command line
# ---------------------------------------------------------------------------

CLIENT_HELP = """\
An http:// or https:// URL first makes woof.py a client (a file that exists
under that name is offered instead):
  woof.py URL              save what URL offers here, under the server's name
                           made safe; an existing file is never replaced
                           ("name (1).ext"); a broken download continues
                           when the same command is run again
  woof.py URL FILE...      send files and folders to a woof receiving with -U,
                           which checks their SHA-256; run again after a cut,
                           it goes on where it stopped (any other server gets
                           one file by PUT)
--password sends woof's password (WOOF_PASSWORD, or asked on a terminal);
-q shows no progress; --timeout S ends a transfer when the server sends less
than 4 KiB in S seconds."""


def add_client_options(parser):
    """The options only client mode takes, in their own group."""
    group = parser.add_argument_group("client mode", CLIENT_HELP)
    group.add_argument("-o", "--output", metavar="PATH",
                       help="save as PATH (- for standard output); an existing file is "
                            "replaced only with --force")
    group.add_argument("--force", action="store_true", help="let -o replace a file")
    group.add_argument("-x", "--extract", action="store_true",
                       help="unpack a tar (any compression) or a zip into this folder, "
                            "as safely as uploads are saved")
    group.add_argument("--no-unpack-limit", dest="unpack_limit", action="store_false",
                       help="let -x write more than %d times what it downloaded (beyond "
                            "the first %s), for an archive you trust; the free space is "
                            "still checked" % (UNPACK_RATIO, format_size(UNPACK_ALLOWANCE)))
    group.add_argument("--pin", action="append", metavar="sha256//KEY",
                       help="accept only the HTTPS key a woof started with --https printed")
    group.add_argument("--cacert", metavar="FILE",
                       help="check the HTTPS certificate against the CA certificates in "
                            "FILE (PEM)")
    group.add_argument("--insecure", action="store_true",
                       help="check no HTTPS certificate at all (a warning says so)")


def is_client_call(args):
    """True when the command line asks for client mode: an http:// or https://
    URL first that names no existing file, or an option only the client takes."""
    first = args.paths[0] if args.paths else ""
    if is_url(first) and not os.path.lexists(first):
        return True
    return (args.output is not None or args.force or args.extract or bool(args.pin)
            or args.cacert is not None or args.insecure or not args.unpack_limit)


# What looks like a URL whose http:// was left out: host:port, or [IPv6]:port,
# then "/" or nothing.  A host of one letter would be a Windows drive.
_URL_WITHOUT_SCHEME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][\w.-]+):\d{1,5}(/|$)")


def refuse_url_without_scheme(parser, args):
    """A usage error (exit 2) for a first path that names no file but reads
    as a URL without its http://, as `woof.py 127.0.0.1:8080/x`."""
    first = args.paths[0] if args.paths else ""
    if _URL_WITHOUT_SCHEME.match(first) and not os.path.lexists(first):
        parser.error("there is no file %s; to fetch from (or send to) a web server, give the "
                     "URL with http://, as in http://%s" % (printable_name(first),
                                                            printable_name(first)))


def client_options(parser, args):
    """The ClientOptions of parsed arguments; argparse's usage error (exit 2) for a mistake."""
    url = args.paths[0] if args.paths else ""
    if not is_url(url) or os.path.lexists(url):
        parser.error("-o, --force, -x, --no-unpack-limit, --pin, --cacert and --insecure go "
                     "with an http:// or https:// URL to fetch from")
    given = [flag for flag, value in (
        ("-s", args.offer_self), ("-U", args.upload is not None),
        ("--upload-dir", args.upload_dir is not None), ("--max-upload", args.max_upload),
        ("--name", args.name is not None), ("--https", args.https), ("--cert", args.cert),
        ("--key", args.key), ("--expire", args.expire), ("--allow-host", args.allow_host))
        if value]
    if given:
        parser.error("%s is for offering or receiving; it has no meaning with a URL" % given[0])
    sending = len(args.paths) > 1
    if sending and (args.output is not None or args.extract):
        parser.error("-o and -x are for fetching; give no FILE after the URL with them")
    if args.extract and args.output is not None:
        parser.error("-x unpacks into this folder; it takes no -o")
    if args.force and args.output in (None, "-"):
        parser.error("--force goes with -o PATH")
    if not args.unpack_limit and not args.extract:
        parser.error("--no-unpack-limit goes with -x")
    checks = [flag for flag, value in (("--pin", args.pin), ("--cacert", args.cacert),
                                       ("--insecure", args.insecure)) if value]
    if len(checks) > 1:
        parser.error("give one of --pin, --cacert and --insecure")
    if checks and not url.lower().startswith("https:"):
        parser.error("%s is for https:// URLs" % checks[0])
    pins = []
    for text in args.pin or ():
        try:
            pins.extend(checked_pins(text))
        except ValueError as error:
            parser.error("--pin %s: %s" % (text, error))
    return ClientOptions(url=url, paths=tuple(args.paths[1:]), output=args.output,
                         force=args.force, extract=args.extract,
                         unpack_limit=args.unpack_limit, pins=tuple(pins),
                         cacert=args.cacert, insecure=args.insecure, quiet=args.quiet,
                         timeout=args.timeout)


def client_password(environ, stdin):
    """The password to send: WOOF_PASSWORD, or asked once, without echo, when
    standard input is a terminal (never a prompt otherwise)."""
    password = environ.get("WOOF_PASSWORD")
    if password is None:
        if not is_console(stdin):
            raise WoofError("--password needs the password in the WOOF_PASSWORD environment "
                            "variable when standard input is not a terminal")
        password = getpass.getpass("Password: ")
    if not password:
        raise WoofError("the password is empty")
    return password


def run_client(parser, args, environ, folder=None, stdin=None, stdout=None, stderr=None):
    """Fetch from, or send to, the URL given first; return the exit status.

    A download is saved or unpacked in folder (default: the current folder).
    Usage mistakes end in argparse's SystemExit (2), as in main().
    """
    options = client_options(parser, args)
    report = Report(stderr or sys.stderr, options.quiet)
    folder = folder or os.getcwd()
    try:
        if args.password:
            options = options._replace(password=client_password(environ, stdin or sys.stdin))
        if options.insecure:
            report.warn("--insecure: the server's certificate is not checked, so anyone on "
                        "the way could read or change what is sent")
        requester = Requester(options)
        out = stdout or sys.stdout.buffer
        if options.paths:
            send_files(requester, options, out, report, upload_state_path(environ))
        elif options.output == "-":
            fetch_to_stream(requester, options, out, report)
        elif options.extract:
            fetch_and_unpack(requester, options, folder, report)
        else:
            fetch_to_file(requester, options, folder, report)
        return 0
    except WoofError as error:
        report.error(str(error))
        return 1
    except KeyboardInterrupt as interrupt:
        report.write("woof: interrupted" + ("; %s" % interrupt if str(interrupt) else ""))
        return 130


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

USAGE = """\
python3 woof.py [options] FILE...    offer a file, or folders and files
       python3 woof.py [options] -          offer standard input
       python3 woof.py [options] -s         offer woof.py itself
       python3 woof.py [options] -U [DIR]   receive files into DIR"""

DESCRIPTION = """\
Offer a file, a folder or standard input over HTTP, then exit once it has
been downloaded; or, with -U, receive files.  woof prints the URL to give
the other side, who needs nothing but a browser, curl or wget."""

FOLDERS_TEXT = """\
Folders, and several paths, go out as one archive made while it is sent;
with one FILE, these flags pack it in an archive too.  Default: %s%s."""

EXAMPLES = """\
examples (on Windows, type py woof.py where python3 woof.py stands):
  python3 woof.py report.pdf           offer one file, once
  python3 woof.py photos/              offer a folder as photos.tar.gz
  python3 woof.py -Z a.pdf b.txt dir/  offer all three in one zip
  python3 woof.py -u big-folder/       plain tar: with a size, resumable
  python3 woof.py -Z --store photos/   a zip with a size, resumable
  python3 woof.py -c 3 -p 9000 a.iso   offer it three times on port 9000
  python3 woof.py --qr --secret f.zip  a QR code of a secret link
  python3 woof.py -i 127.0.0.1 x.txt   listen on this machine only
  tar cf - dir | python3 woof.py --name dir.tar -
                                       offer standard input, once
  python3 woof.py -s                   offer woof.py itself
  python3 woof.py -U                   receive one upload into this folder
  python3 woof.py -U ~/in -c 3 --max-upload 2G
                                       receive three uploads of 2 GiB at most

on the other side: open the URL in a browser, or
  curl -fOJ URL    wget --content-disposition URL    aria2c URL
  with -U:  curl -F file=@photo.jpg URL    curl -T photo.jpg URL

defaults come from /etc/woofrc, then ~/.woofrc, section [main]:
  port = 8080, count = 1, ip = ADDRESS, compressed = gz|bz2|xz|zip|off,
  qr = yes|no, secret = yes|no, store = yes|no (zips: as --store)
  (comments start with ; or #); --no-qr, --no-secret, --no-store turn a
  woofrc yes off for one run

exit status: 0 done, 1 error, 2 wrong usage, 3 --expire ran out before the
count was reached, 130 stopped with Ctrl-C, 143 by SIGTERM, 129 by SIGHUP
(128 + the signal's number)"""


def converted(convert, text, expected):
    """convert(text), or the argparse error saying the text is not what was expected."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not %s" % (text, expected))


def port_number(text):
    """argparse type: a TCP port, 0 meaning any free one."""
    port = converted(int, text, "a port number")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port %d is out of range 0-65535" % port)
    return port


def transfer_count(text):
    """argparse type: how many times to serve; 0 for no limit."""
    count = converted(int, text, "a whole number")
    if count < 0:
        raise argparse.ArgumentTypeError("the count must be 0 (no limit) or more, not %d"
                                         % count)
    return count


def duration(text):
    """argparse type: --expire, a duration such as 90, 90s, 15m, 2h or 1d."""
    seconds = converted(parse_duration, text, "a duration such as 90s, 15m, 2h or 1d")
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be more than 0")
    return seconds


def yes_or_no(text):
    """woofrc type: a yes/no switch."""
    word = text.strip().lower()
    if word in ("yes", "true", "on", "1"):
        return True
    if word in ("no", "false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError("%r is not yes or no" % text)


def positive_seconds(text):
    """argparse type: a timeout in seconds, more than 0."""
    seconds = converted(float, text, "a number of seconds")
    if not 0 < seconds <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError("the timeout must be more than 0 and at most %d "
                                         "seconds" % MAX_TIMEOUT)
    return seconds


def compression_word(text):
    """argparse and woofrc type: a `compressed` value."""
    try:
        return COMPRESSION_WORDS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError("%r is not one of gz, bz2, xz, zip, off" % text)


def upload_size(text):
    """argparse type: --max-upload, a size of at least one byte."""
    size = converted(parse_size, text, "a size such as 500M, 2G or 1.5GiB")
    if size < 1:
        raise argparse.ArgumentTypeError("the largest upload must be 1 byte or more")
    return size


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with usage errors on one line like woof's other errors."""

    def error(self, message):
        self.exit(2, "woof: error: %s (see --help)\n" % message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, never wider than HELP_WIDTH; the texts above and below
    the options kept as written."""

    def __init__(self, prog):
        columns = shutil.get_terminal_size().columns
        super().__init__(prog, max_help_position=HELP_OPTION_WIDTH,
                         width=min(columns, HELP_WIDTH) - 2)


def parse_command_line(parser, argv):
    """Parse argv, options and paths mixed freely (`a.pdf -p 0 b.txt`).

    argparse takes the options and the first run of paths; the paths it
    leaves over join them, and anything after `--` is a path whatever it
    looks like.  parse_intermixed_args (Python 3.7+) would do the same but
    refuses `-- -name` when no path comes before, on every version to 3.13.
    """
    args, rest = parser.parse_known_args(argv)
    after_dashes = rest.index("--") if "--" in rest else len(rest)
    unknown = [arg for arg in rest[:after_dashes] if arg.startswith("-") and arg != "-"]
    if unknown:
        files = [arg for arg in unknown if os.path.lexists(arg)]
        hint = "; for the file, write -- %s or ./%s" % (files[0], files[0]) if files else ""
        parser.error("unrecognized arguments: %s%s" % (" ".join(unknown), hint))
    args.paths = list(args.paths) + rest[:after_dashes] + rest[after_dashes + 1:]
    return args


def build_parser(config=None):
    """The command-line parser; its defaults, and those its help shows, are
    config's (what read_config found in the woofrc files) over the built-in ones."""
    config = dict(config or {})
    compression = config.pop("compression", "gz")
    store = config.pop("store", False)
    parser = ArgumentParser(prog="woof.py", usage=USAGE, description=DESCRIPTION,
                            epilog=EXAMPLES, formatter_class=HelpFormatter, add_help=False)
    add_offering_options(parser.add_argument_group("offering"), config)
    add_folder_options(parser.add_argument_group("folders", FOLDERS_TEXT % (
        ARCHIVE_EXTENSIONS[compression], " (from woofrc)" if compression != "gz" else "")),
        store)
    add_receiving_options(parser.add_argument_group("receiving"))
    add_reaching_options(parser.add_argument_group("reaching the other side"), config)
    output = parser.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="log nothing but warnings and errors")
    output.add_argument("-h", "--help", action="help", help="show this help and exit")
    output.add_argument("--version", action="version", version="woof.py " + __version__,
                        help="show woof's version and exit")
    # The woofrc's folder format is kept apart from -z, -j, -Z...: a flag
    # given on the command line also packs a single file.
    parser.set_defaults(configured_compression=compression, configured_store=store, **config)
    add_client_options(parser)
    return parser


def add_offering_options(group, config):
    group.add_argument("paths", nargs="*", metavar="FILE",
                       help="what to offer: a file, or folders and files as one "
                            "archive; - for standard input")
    group.add_argument("-c", "--count", type=transfer_count, metavar="COUNT",
                       help="how many downloads (with -U: uploads) before exiting; "
                            "0 for no limit (default %d)" % config.get("count", DEFAULT_COUNT))
    group.add_argument("--name", metavar="NAME",
                       help="offer under this name (for - the default is %s)" % STDIN_NAME)
    group.add_argument("-s", "--self", dest="offer_self", action="store_true",
                       help="offer woof.py itself, so the other side gets the tool")
    group.add_argument("--expire", type=duration, metavar="DURATION",
                       help="stop offering (or receiving) after this long, even if the "
                            "count is not reached: 90s, 15m, 2h, 1d")


def add_folder_options(group, configured_store=False):
    formats = group.add_mutually_exclusive_group()
    for flag, value, text in (
            ("-z", "gz", ".tar.gz: for Linux and macOS"),
            ("-j", "bz2", ".tar.bz2: smaller, much slower to make"),
            ("--xz", "xz", ".tar.xz: smaller still, slow to make"),
            ("-Z", "zip", ".zip: for Windows recipients (opens anywhere)"),
            ("-u", "tar", ".tar, not compressed: has a size, so browsers show the "
                          "time left, and resumes; best for photos and videos")):
        formats.add_argument(flag, dest="compression", action="store_const", const=value,
                             help=text)
    group.add_argument("--store", action="store_true",
                       help="with -Z: members stored, not deflated, so the zip has a size "
                            "known in advance: browsers show the time left, and it resumes%s"
                       % (" (on in woofrc for zips)" if configured_store else ""))
    group.add_argument("--no-store", dest="configured_store", action="store_false",
                       default=configured_store,
                       help="deflate a zip's members although woofrc says store = yes")


def add_receiving_options(group):
    group.add_argument("-U", "--upload", nargs="?", const=".", metavar="DIR",
                       help="receive files instead, into DIR (default: this folder)")
    group.add_argument("--upload-dir", metavar="DIR",
                       help="receive files into DIR; the same as -U DIR")
    group.add_argument("--max-upload", type=upload_size, metavar="SIZE",
                       help="with -U, refuse uploads larger than SIZE (500M, 2G, 1.5GiB)")


def add_reaching_options(group, config):
    group.add_argument("-i", "--ip", metavar="ADDR",
                       help="listen on this address only (default: %s)"
                            % config.get("ip", "every address"))
    group.add_argument("-p", "--port", type=port_number, metavar="PORT",
                       help="port to listen on; 0 for any free one (default %d)"
                            % config.get("port", DEFAULT_PORT))
    group.add_argument("--qr", action="store_true",
                       help="print a QR code of the first URL, for a phone's camera%s"
                            % (" (on in woofrc)" if config.get("qr") else ""))
    group.add_argument("--no-qr", dest="qr", action="store_false",
                       help="no QR code, although woofrc says qr = yes")
    group.add_argument("--secret", action="store_true",
                       help="put a random 128-bit token in the URL; any other path gets "
                            "404%s" % (" (on in woofrc)" if config.get("secret") else ""))
    group.add_argument("--no-secret", dest="secret", action="store_false",
                       help="no token in the URL, although woofrc says secret = yes")
    group.add_argument("--password", action="store_true",
                       help="ask for a password (or take WOOF_PASSWORD) that the other "
                            "side must give (HTTP Basic, any user name)")
    group.add_argument("--https", action="store_true",
                       help="serve HTTPS with a throwaway certificate made for this run; "
                            "prints its fingerprint and a curl command that checks it")
    group.add_argument("--cert", metavar="FILE",
                       help="serve HTTPS with this certificate (PEM)")
    group.add_argument("--key", metavar="FILE",
                       help="the private key of --cert, if not in the same file")
    group.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer requests for this host name (woof answers only "
                            "to IP addresses and this machine's own names)")
    group.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                       default=DEFAULT_TIMEOUT,
                       help="drop a connection idle this long (default %g)" % DEFAULT_TIMEOUT)


def read_config(paths, warn=None):
    """Defaults from woofrc files, later files overriding earlier ones.

    Comments start with `;` or `#`, at the start of a line or after a value
    (`compressed = gz  ; for Linux`); warn(message) is told of keys woof
    does not know, which are ignored.
    """
    defaults = {}
    for path in paths:
        path = os.path.expanduser(path)
        parser = configparser.ConfigParser(interpolation=None,
                                           inline_comment_prefixes=CONFIG_COMMENT_PREFIXES)
        try:
            with open(path, encoding="utf-8") as config_file:
                parser.read_file(config_file, path)
        except FileNotFoundError:
            continue
        except configparser.MissingSectionHeaderError as error:
            raise WoofError("cannot read %s: line %d: %r comes before any [main]; put [main] "
                            "above the settings" % (path, error.lineno, error.line.strip()))
        except configparser.ParsingError as error:
            raise WoofError("cannot read %s: line %d is not a setting; write key = value"
                            % (path, error.errors[0][0]))
        except (OSError, UnicodeError, configparser.Error) as error:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise WoofError("cannot read %s: %s" % (path, reason))
        others = [name for name in parser.sections() if name != "main"]
        if others and warn is not None:
            warn("%s: ignoring %s (woof reads only [main])"
                 % (path, ", ".join("[%s]" % name for name in others)))
        if parser.has_section("main"):
            defaults.update(config_values(path, parser["main"], warn))
    return defaults


def config_values(path, section, warn=None):
    """Check and convert the [main] keys woof knows; warn of the others."""
    converters = {"port": port_number, "count": transfer_count,
                  "ip": str, "compressed": compression_word, "qr": yes_or_no,
                  "secret": yes_or_no, "store": yes_or_no}
    names = {"compressed": "compression"}
    values = {}
    for key, convert in converters.items():
        if key not in section:
            continue
        try:
            values[names.get(key, key)] = convert(section[key].strip())
        except argparse.ArgumentTypeError as error:
            raise WoofError("%s: %s: %s" % (path, key, error))
    unknown = [key for key in section if key not in converters]
    if unknown and warn is not None:
        warn("%s: ignoring %s %s (woof knows %s)"
             % (path, "keys" if len(unknown) > 1 else "key", ", ".join(unknown),
                ", ".join(sorted(converters))))
    return values


def settings_from(args):
    """The immutable Settings for parsed arguments; main() adds the password."""
    count = DEFAULT_COUNT if args.count is None else args.count
    if args.paths == ["-"]:
        count = 1
    upload_dir = upload_folder(args)
    return Settings(ip=args.ip or None, port=DEFAULT_PORT if args.port is None else args.port,
                    count=count, quiet=args.quiet, timeout=args.timeout,
                    compression=args.compression or args.configured_compression,
                    upload_dir=os.path.abspath(upload_dir) if upload_dir else None,
                    max_upload=args.max_upload,
                    secret=new_secret_token() if args.secret else None,
                    https=args.https, certificate=args.cert,
                    key=args.key, expire=args.expire,
                    allowed_hosts=tuple(args.allow_host), qr=args.qr)


def upload_folder(args):
    """The folder -U or --upload-dir names, or None when woof is not receiving."""
    folders = [folder for folder in (args.upload, args.upload_dir) if folder is not None]
    return folders[0] if folders else None


def name_problem(name):
    """Why a --name value could not be a file name, or None when it can."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return "--name must be a plain file name, not %r" % name
    return None


def build_offer(args, stdin, compression="gz", log=None):
    """The offer the command line asks for; folders and several paths as an archive."""
    name = args.name
    if args.offer_self:
        return FileOffer(os.path.abspath(__file__), name or "woof.py")
    if args.paths == ["-"]:
        return StreamOffer(stdin or standard_input(), name or STDIN_NAME)
    if len(args.paths) == 1 and not os.path.isdir(args.paths[0]) and args.compression is None:
        return FileOffer(args.paths[0], name)
    if name is not None:
        name = archive_download_name(name, compression)
    store = compression == "zip" and (args.store or args.configured_store)
    return ArchiveOffer(args.paths, compression, log, name, store=store)


def archive_download_name(name, compression):
    """A --name for an archive, given the format's extension unless it has one."""
    if name.lower().endswith(ARCHIVE_NAME_ENDINGS[compression]):
        return name
    return name + ARCHIVE_EXTENSIONS[compression]


def announcement(lead, urls):
    """The lines telling the URLs: the first as `LEAD on URL`, each other one
    below with "or" under "on" and its note in parentheses.  The first line
    never carries a note, so scripts reading "Now serving on URL" keep working.
    """
    lines = ["%s on %s" % (lead, urls[0][0])]
    for url, note in urls[1:]:
        lines.append("%s or %s%s" % (" " * len(lead), url, "  (%s)" % note if note else ""))
    return "\n".join(lines)


def announce(server, offer, settings, log, out=None):
    """Print the URLs (and the QR code, the certificate's pin) on stdout, and
    what woof waits for on stderr."""
    out = out or sys.stdout
    urls = server.urls()
    first = urls[0][0]
    lines = [announcement("Now receiving" if offer is None else "Now serving", urls)]
    if settings.qr:
        lines.extend(qr_lines(qr_matrix(first.encode("ascii")), colour=wants_colour(out)))
    if server.tls is not None:
        lines.extend(certificate_lines(server.tls, first, settings, receiving=offer is None))
    out.write("\n".join(lines) + "\n")
    out.flush()
    log.info(waiting_line(offer, settings))


def checksum_in_background(server, log, out=None):
    """Compute the offered file's SHA-256 in a thread of its own; once done,
    send it in later responses (Repr-Digest) and have the serving thread print
    it as a line for `sha256sum -c`.  Returns the thread, or None when the
    offer is no file."""
    offer = server.offer
    if not isinstance(offer, FileOffer):
        return None

    def compute():
        hexdigest = offer.compute_digest(server.wait_until_idle)
        if hexdigest is not None:
            server.call_soon(lambda: tell_checksum(offer.name, hexdigest, log, out))

    thread = threading.Thread(target=compute, name="woof checksum")
    thread.daemon = True
    thread.start()
    return thread


def finish_checksum(server, thread, log, out=None):
    """Once serving has ended, say the offered file's SHA-256 if the thread
    of checksum_in_background() did not: a download that starts at once
    pauses it, and the end stops it.  The file is then read once more (from
    the system's cache, just sent), but only when it is still what was sent."""
    if thread is None:
        return
    thread.join()
    server.run_soon()  # a line computed but not yet said
    offer = server.offer
    if offer.digest is None:
        hexdigest = offer.compute_digest()
        if hexdigest is not None and server.ledger.states_sent <= {offer.digest[0]}:
            tell_checksum(offer.name, hexdigest, log, out)


def tell_checksum(name, hexdigest, log, out=None):
    """Print the lines for `sha256sum -c`: for the offered name and, when it
    differs, for the ASCII name that curl -OJ saves (Content-Disposition's
    filename=)."""
    out = out or sys.stdout
    log.info(checksum_hint(name))
    log.write(checksum_line(hexdigest, name), out=out)
    fallback = ascii_fallback(name)
    if fallback != name:
        log.info("or where curl -OJ saved it as %s:" % fallback)
        log.write(checksum_line(hexdigest, fallback), out=out)


def checksum_line(hexdigest, name):
    """A line `sha256sum -c` reads: the digest, two spaces, the name.  A name
    with a backslash is escaped as GNU coreutils does, behind a backslash."""
    shown = printable_name(name)
    if "\\" in shown:
        return "\\%s  %s" % (hexdigest, shown.replace("\\", "\\\\"))
    return "%s  %s" % (hexdigest, shown)


def checksum_hint(name):
    """The line above the checksum line: what checks it, in this system's shells."""
    shown = printable_name(name)
    if WINDOWS_SHELLS:
        return ('SHA-256 of %s, for sha256sum -c on the other side, or to compare with '
                '`certutil -hashfile "%s" SHA256`:' % (shown, shown))
    return "SHA-256 of %s, for sha256sum -c on the other side:" % shown


def certificate_lines(tls, url, settings, receiving):
    """How the other side checks it reached this very woof over HTTPS."""
    curl, quoted = ("curl.exe", '"%s"') if WINDOWS_SHELLS else ("curl", "'%s'")
    command = "%s --pinnedpubkey %s -k" % (curl, quoted % tls.pin)
    if settings.password_digest:
        command += " -u woof"
    # --fail: an answer such as 401 is not saved under the file's name.
    command += (" -T FILE " if receiving else " -fOJ ") + quoted % url
    return ["Certificate SHA-256 fingerprint: %s" % tls.fingerprint,
            "The other side can check it with: %s" % command]


def waiting_line(offer, settings):
    """What woof waits for, and how it stops."""
    count = settings.count
    if offer is None:
        what = "uploads" if count != 1 else "one upload"
        if count > 1:
            what = "%d uploads" % count
        line = "saving %s into %s" % (what, printable_name(settings.upload_dir))
    else:
        times = {0: "to anyone who asks", 1: "once"}.get(count, "%d times" % count)
        line = "offering %s %s" % (printable_name(offer.name), times)
    if settings.expire is not None:
        line += " for %s at most" % format_elapsed(settings.expire)
    elif count == 0:
        line += " until stopped"
    return line + "; Ctrl-C to stop"


# ---------------------------------------------------------------------------
# main()
# ---------------------------------------------------------------------------

# How long a thread may keep the interpreter's lock while another waits for
# it, while woof serves (Python's default is 5 ms).  An archive's threads
# (the one sending, those deflating, those reading ahead) hand the lock to
# each other all the time: at 1 ms a zip of 20,000 small files went out 10
# to 15% sooner, cold or warm, on 3.6, 3.11 and 3.13; tar, tar.gz, stored
# zip and a single file went as fast as before (bench/README.md).
THREAD_SWITCH_INTERVAL = 0.001


class ThreadSwitching:
    """Sets the interpreter's switch interval while woof serves, and back after."""

    def __init__(self, interval=THREAD_SWITCH_INTERVAL):
        self.interval = interval
        self.previous = None

    def __enter__(self):
        self.previous = sys.getswitchinterval()
        sys.setswitchinterval(self.interval)
        return self

    def __exit__(self, *exc_info):
        sys.setswitchinterval(self.previous)


class StopSignals:
    """Makes the stop signals raise StopRequested in the main thread, while installed.

    Python lets only the main thread set handlers: main() run from another
    thread leaves the signals as they are.  A signal that was ignored (nohup
    ignores SIGHUP) stays ignored.  Once woof is stopping, a further signal
    is held rather than raised, so that it cannot cut the cleanup short.
    """

    def __init__(self):
        self.previous = {}
        self.stopping = False
        if threading.current_thread() is not threading.main_thread():
            return
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if handler == signal.SIG_IGN:
                continue
            self.previous[number] = handler
            signal.signal(number, self.handle)

    def handle(self, number, frame):
        if not self.stopping:
            self.stopping = True
            raise StopRequested(number)

    def hold(self):
        """From now on woof is stopping: signals no longer interrupt it."""
        self.stopping = True

    def restore(self):
        """Put back the handlers found (the default for one not set from Python)."""
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self.previous = {}


def main(argv=None, config_paths=CONFIG_PATHS, stdin=None, environ=None):
    """Run woof; return the exit status.

    0 when done, 1 after an error, 2 after a usage error, 3 when --expire
    ended woof before everything was taken, 130 after Ctrl-C, and 128 plus
    the signal's number after a stop signal, as shells report it (143
    SIGTERM, 129 SIGHUP).
    """
    environ = os.environ if environ is None else environ
    try:
        parser = build_parser(read_config(config_paths, warn_early))
    except WoofError as error:
        print("woof: error: %s" % error, file=sys.stderr)
        return 1
    try:
        args = parse_command_line(parser, argv)
        if is_client_call(args):
            return run_client(parser, args, environ, stdin=stdin)
        refuse_url_without_scheme(parser, args)
        check_arguments(parser, args)
    except SystemExit as exit_request:
        return exit_request.code
    if args.paths == ["-"] and args.count not in (None, 1):
        print("woof: warning: standard input can be sent only once; the count is 1",
              file=sys.stderr)
    log = Log(args.quiet, environ=environ)
    server = None
    stop_signals = StopSignals()
    try:
        settings = settings_from(args)
        if settings.upload_dir is not None:
            check_writable_folder(settings.upload_dir)
            offer = None
        else:
            offer = build_offer(args, stdin, settings.compression, log)
        if args.password:
            settings = settings._replace(password_digest=password_digest(read_password(environ)))
        server = WoofServer(settings, offer, log,
                            handler=DownloadHandler if offer is not None else UploadHandler)
        if args.password and server.tls is None:
            log.warn("--password without HTTPS: anyone on the network can read the password "
                     "as it is sent; add --https")
        announce(server, offer, settings, log)
        checksum = checksum_in_background(server, log)
        with ThreadSwitching():
            server.serve_until_done()
        finish_checksum(server, checksum, log)
        return finish_status(server, log)
    except WoofError as error:
        print("woof: error: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stop_signals.hold()
        if server is not None:
            server.log_stopped()
        print("woof: interrupted", file=sys.stderr)
        return 130
    except StopRequested as stop:
        if server is not None:
            server.log_stopped()
        print("woof: stopped by %s" % stop, file=sys.stderr)
        return 128 + stop.number
    finally:
        stop_signals.hold()
        if server is not None:
            server.server_close()
            server.discard_uploads()
        stop_signals.restore()


def warn_early(message):
    """A warning given before the log exists (woofrc, arguments): one line on stderr."""
    print("woof: warning: %s" % message, file=sys.stderr)


def check_arguments(parser, args):
    """Usage errors argparse cannot see by itself (exit 2, as argparse's own)."""
    folders = [folder for folder in (args.upload, args.upload_dir) if folder is not None]
    if folders:
        if len(folders) == 2 and os.path.abspath(folders[0]) != os.path.abspath(folders[1]):
            parser.error("-U %s and --upload-dir %s name two folders; give one"
                         % (printable_name(folders[0]), printable_name(folders[1])))
        if args.paths or args.offer_self or args.name is not None:
            parser.error("-U receives files; give no FILE, -s or --name with it")
    elif args.max_upload is not None:
        parser.error("--max-upload only applies when receiving, with -U")
    elif args.offer_self and args.paths:
        parser.error("-s offers woof.py itself; give no FILE with it")
    elif not args.paths and not args.offer_self:
        parser.error("give a FILE to offer, - for standard input, or -s")
    if "-" in args.paths and len(args.paths) > 1:
        parser.error("- (standard input) can only be offered alone")
    if args.name is not None and name_problem(args.name):
        parser.error(name_problem(args.name))
    if args.key and not args.cert:
        parser.error("--key goes with --cert FILE")
    if args.store and (args.compression or args.configured_compression) != "zip":
        parser.error("--store makes a zip's members stored; give it with -Z")


def finish_status(server, log):
    """The exit status once serving ended: 0, or EXIT_EXPIRED after --expire;
    logs what was done, in one line."""
    status = 0
    if server.expired_early():
        log.warn("the time given by --expire is over; %s" % server.taken_text())
        status = EXIT_EXPIRED
    elif server.expired:
        log.info("the time given by --expire is over; %s" % server.taken_text())
    log.info("done: %s" % server.summary())
    return status


# ---------------------------------------------------------------------------
# Start-up: woof.py run as a program starts again without its parse tree
#
# python3 woof.py on CPython 3.9 and later keeps the syntax tree of woof.py
# in memory until woof exits (SCRIPT_PARSE_TREE_KEPT): 23 MiB of the 48.5
# woof holds once started, never read again.  Where exec() replaces the
# process, woof.py started as a program starts again in the same process,
# with the same options, as a new Python that takes woof's code from a
# bytecode cache of its own (BYTECODE_LOADER_CODE) and so never parses it:
# 25.6 MiB once started.  The cache is one file per copy of woof.py and per
# Python, in woof's cache folder, checked against the source and its own
# digest before it is used; the first start writes it.  Python's switch for
# bytecode files (-B, PYTHONDONTWRITEBYTECODE) turns all of this off.
# ---------------------------------------------------------------------------

# The program the new Python runs: `python3 OPTIONS -c BYTECODE_LOADER_START
# WOOF_PY WOOF_FOLDER CACHE_DESCRIPTOR ARGV0 ARGS...`, the short line on the
# command line (what ps shows) running BYTECODE_LOADER_CODE, handed over in
# the environment and taken out of it at once.  It reads and writes the
# cache only through the descriptor of the folder the first Python checked,
# so that no folder renamed in between can stand in for it; it loads woof.py
# as the module woof and runs main().
BYTECODE_LOADER_VARIABLE = "WOOF_BYTECODE_LOADER"
BYTECODE_LOADER_START = ("import os; exec(os.environ.pop(%r))  # woof.py, from its bytecode cache"
                         % BYTECODE_LOADER_VARIABLE)

BYTECODE_LOADER_CODE = r"""# woof.py, started again from its bytecode cache
import sys

script, script_folder, cache_folder = sys.argv[1], sys.argv[2], int(sys.argv[3])
if sys.path and sys.path[0] == "":
    # -c puts the current folder first, where python3 woof.py puts woof's own.
    sys.path[0] = script_folder
sys.argv = sys.argv[4:]

import hashlib, importlib.util, marshal, os, stat, time, types

DIGEST_SIZE = 32
KEEP_SECONDS = 30 * 86400  # a cache file not used for 30 days is deleted


def read_source():
    try:
        with open(script, "rb") as handle:
            return handle.read()
    except OSError as error:
        sys.exit("woof: error: cannot read %s: %s" % (script, error.strerror or error))


def cache_header(source):
    # What the code in the file must come from: this Python's bytecode, this source.
    return b"woof" + importlib.util.MAGIC_NUMBER + hashlib.sha256(source).digest()


def cached_code(name, header):
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=cache_folder)
    except OSError:
        return None  # none yet
    with open(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            return None
        data = memoryview(handle.read())
    body = data[len(header) + DIGEST_SIZE:]
    if (data[:len(header)] != header
            or data[len(header):len(header) + DIGEST_SIZE] != hashlib.sha256(body).digest()):
        return None  # an older woof.py's, another Python's, or damaged
    try:
        code = marshal.loads(body)
    except Exception:
        return None
    if not isinstance(code, types.CodeType):
        return None
    try:
        os.utime(name, dir_fd=cache_folder)  # in use: not one to delete
    except OSError:
        pass
    return code


def delete_unused():
    # Cache files of copies of woof.py not run for KEEP_SECONDS, and the
    # parts left by a woof ended while it wrote one.
    try:
        names = os.listdir(cache_folder)
    except OSError:
        return
    for name in names:
        if name.startswith("woof-") and name.endswith((".code", ".tmp")):
            try:
                status = os.stat(name, dir_fd=cache_folder, follow_symlinks=False)
                age = time.time() - status.st_mtime
                if age > (KEEP_SECONDS if name.endswith(".code") else 86400):
                    os.unlink(name, dir_fd=cache_folder)
            except OSError:
                pass


def store_code(code, name, header):
    # Written whole under another name, then renamed: a woof starting at the
    # same moment reads the old file or the new one, never half of one.
    body = marshal.dumps(code)
    temporary = "%s.%d.%s.tmp" % (name, os.getpid(), os.urandom(4).hex())
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600, dir_fd=cache_folder)
        with open(descriptor, "wb") as handle:
            handle.write(header + hashlib.sha256(body).digest() + body)
        os.replace(temporary, name, src_dir_fd=cache_folder, dst_dir_fd=cache_folder)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=cache_folder)
        except OSError:
            pass
    else:
        delete_unused()


def woof_code():
    source = read_source()
    header = cache_header(source)
    name = "woof-%s-O%d-%s.code" % (sys.implementation.cache_tag, sys.flags.optimize,
                                    hashlib.sha256(os.fsencode(script)).hexdigest()[:32])
    code = cached_code(name, header)
    if code is None:
        code = compile(source, script, "exec", dont_inherit=True)
        store_code(code, name, header)
    os.close(cache_folder)
    return code


def run_woof():
    woof = types.ModuleType("woof")
    woof.__file__ = script
    sys.modules["woof"] = woof
    try:
        exec(woof_code(), woof.__dict__)
    except KeyboardInterrupt:  # Ctrl-C before woof took it over
        sys.stderr.write("woof: interrupted\n")
        sys.exit(130)
    sys.exit(woof.main())


run_woof()
"""


def options_before(original, argv):
    """The options Python was given before the script, as given, when the
    command line it was started with (original) is `python OPTIONS SCRIPT
    ARGS` and argv is SCRIPT ARGS; None when it is anything else: a program
    given with -c or -m, or another script running this one."""
    start = len(original) - len(argv)
    if not argv or start < 1 or original[start:] != argv:
        return None
    options, index = original[1:start], 0
    while index < len(options):
        option = options[index]
        if option == "--check-hash-based-pycs":
            index += 2
            continue
        if not option.startswith("-") or option.startswith("--") or option == "-":
            return None
        for position, letter in enumerate(option[1:], 1):
            if letter in "cm":
                return None  # what follows is a program or a module's name
            if letter in "WX":
                if position == len(option) - 1:
                    index += 1  # its value is the next argument
                break
        index += 1
    return options


def options_before_script(script):
    """The options Python was given before woof.py (`python3 -W error woof.py
    ARGS` gives ["-W", "error"]); None unless Python was started with woof.py
    as its program: not a debugger, nor a program that runs woof.py in it."""
    original = original_argv()
    try:
        started_with_woof = bool(sys.argv) and os.path.samefile(sys.argv[0], script)
    except OSError:
        return None
    return options_before(original, sys.argv) if original and started_with_woof else None


def make_folders_as_owner(path):
    """Make path and the folders missing above it, only below a folder this
    user owns: woof run by root with another user's HOME leaves nothing of
    root's in it."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if missing and os.stat(path).st_uid != os.geteuid():
        raise PermissionError("%s is another user's" % path)
    for folder in reversed(missing):
        os.mkdir(folder, 0o700)


def open_bytecode_cache_folder(environ):
    """woof's cache folder, opened (its descriptor) and made if missing; None
    when it cannot be, when this user cannot write in it, or when anyone else
    could (what is there is run)."""
    folder = woof_cache_folder(environ)
    if not os.path.isabs(folder):
        return None
    try:
        make_folders_as_owner(folder)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW)
    except OSError:
        return None
    status = os.fstat(descriptor)
    if (not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid()
            or status.st_mode & 0o022 or not os.access(folder, os.W_OK | os.X_OK)):
        os.close(descriptor)  # (where no cache can be written, each start would parse twice)
        return None
    return above_standard_streams(descriptor)


def above_standard_streams(descriptor):
    """The same open file under a number above 2: a standard stream that
    woof was started without (>&-) stays closed in the new Python, not the
    cache folder."""
    below = []
    while descriptor <= 2:
        below.append(descriptor)
        descriptor = os.dup(descriptor)
    for number in below:
        os.close(number)
    return descriptor


def restart_would_pay(script):
    """True when starting again frees the parse tree: CPython 3.9 on, exec()
    replacing the process, bytecode files allowed, one user id, the Python
    that runs now found, and no debugger, profiler or prompt after the end
    (-i) to leave behind."""
    return (SCRIPT_PARSE_TREE_KEPT and EXEC_REPLACES_PROCESS and bool(sys.executable)
            and not getattr(sys, "frozen", False) and not sys.dont_write_bytecode
            and not sys.flags.inspect and sys.gettrace() is None
            and sys.getprofile() is None and not monitoring_tools_in_use()
            and os.getuid() == os.geteuid() and running_interpreter_is(sys.executable)
            and os.path.isfile(script))


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def restart_without_parse_tree(script, environ=os.environ):
    """woof.py run as a program: become a new Python, in the same process,
    that runs woof's code from the bytecode cache.  Returns only where that
    does not pay or cannot be done, and woof then runs on in this one."""
    if not restart_would_pay(script):
        return
    options = options_before_script(script)
    folder = open_bytecode_cache_folder(environ) if options is not None else None
    if folder is None:
        return
    argv = ([sys.executable] + options
            + ["-c", BYTECODE_LOADER_START, os.path.abspath(script),
               os.path.dirname(os.path.realpath(script)), str(folder)] + sys.argv)
    environment = dict(environ, **{BYTECODE_LOADER_VARIABLE: BYTECODE_LOADER_CODE})
    flush_output()
    try:
        os.set_inheritable(folder, True)
        os.execve(sys.executable, argv, environment)
    except OSError:  # the interpreter gone, or the arguments too long
        os.close(folder)


if __name__ == "__main__":
    restart_without_parse_tree(__file__)
    sys.exit(main())
