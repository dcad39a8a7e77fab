#!/usr/bin/env python3
"""woof.py: web offer one file, and a little more.

Offers a file, a folder or standard input over HTTP to whoever opens the
printed URL, or receives files from them, then exits by itself.  One file,
standard library only, Python 3.6 to 3.13 on Linux, macOS and Windows.

    python3 woof.py FILE

Licensed under the MIT licence; see LICENSE.
"""

__version__ = "1.0.0"

import argparse
import configparser
import email.utils
import errno
import mimetypes
import os
import re
import selectors
import socket
import socketserver
import stat
import sys
import threading
import time
import unicodedata
import urllib.parse
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

# Windows builds before 3.8 may lack the constant; its value is 27 there too.
IPV6_V6ONLY = getattr(socket, "IPV6_V6ONLY", 27)

# Opening a FIFO put in place of the offered file must not block a thread;
# Windows has neither flag nor FIFOs.
OPEN_NONBLOCKING = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


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


def unacknowledged_bytes(sock):
    """Bytes sent on a TCP socket that the peer has not acknowledged, or None.

    Linux tells (SIOCOUTQ, which has the value of TIOCOUTQ); other systems
    return None and woof then trusts that what the kernel took arrives.
    """
    try:
        import fcntl
        import struct
        import termios
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
        return struct.unpack("i", raw)[0] if sys.platform.startswith("linux") else None
    except (ImportError, AttributeError, OSError):
        return None


def parse_command_line(parser, argv):
    """Parse argv, letting options and paths mix freely where Python can (3.7+)."""
    parse = getattr(parser, "parse_intermixed_args", parser.parse_args)
    return parse(argv)


# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

DEFAULT_PORT = 8080
DEFAULT_COUNT = 1
DEFAULT_TIMEOUT = 60.0
COPY_BUFFER_SIZE = 1 << 20
SENDFILE_SLICE = 64 << 20
SMALL_WRITE_LIMIT = 64 << 10
MAX_RANGES = 16
MAX_SPANS_PER_CLIENT = 256
MAX_CONNECTIONS = 256
MAX_RANGE_DIGITS = 19
POLL_INTERVAL = 0.2
CONFIG_PATHS = ("/etc/woofrc", "~/.woofrc")
STDIN_NAME = "stdin"

# Addresses reserved for documentation (RFC 5737, RFC 3849): connecting a UDP
# socket to one sends nothing but tells which local address would be used.
TEST_NET_V4 = "192.0.2.1"
TEST_NET_V6 = "2001:db8::1"

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

# Values of `compressed` in woofrc, as the original woof and users spell them.
COMPRESSION_WORDS = {
    "gz": "gz", "gzip": "gz", "true": "gz", "yes": "gz", "on": "gz", "1": "gz",
    "bz2": "bz2", "bzip2": "bz2",
    "xz": "xz",
    "zip": "zip",
    "tar": "tar", "off": "tar", "none": "tar", "false": "tar", "no": "tar", "0": "tar",
}


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

class WoofError(Exception):
    """An expected failure, reported to the user as one line."""


class Unavailable(WoofError):
    """The offer cannot answer this request; carries the HTTP status to send."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ShortFile(WoofError):
    """A file ended before the bytes promised to the client were sent."""


class UnsatisfiableRange(WoofError):
    """A Range header that selects no byte of the offer (RFC 7233, 4.4)."""


# ---------------------------------------------------------------------------
# Pure helpers: names, URLs, headers, ranges, sizes
# ---------------------------------------------------------------------------

def name_bytes(name):
    """The bytes of a name, keeping undecodable file-system bytes as they were."""
    return name.encode("utf-8", "surrogateescape")


def url_path_for(name):
    """The percent-quoted URL path under which a name is offered."""
    return "/" + urllib.parse.quote(name_bytes(name), safe="")


def request_path(raw_path):
    """Decode the path part of a request target, dropping query and fragment."""
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
    """The timestamp of an HTTP date, or None when it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
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

class Log:
    """Writes log lines to stderr (or another stream), one whole line at a time."""

    def __init__(self, quiet=False, stream=None):
        self.quiet = quiet
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, line):
        stream = self.stream if self.stream is not None else sys.stderr
        with self.lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError, UnicodeError):
                pass  # a closed or odd terminal must not stop a transfer

    def info(self, message):
        """A routine event: a request, a finished download.  Silenced by -q."""
        if not self.quiet:
            self.write(time.strftime("[%H:%M:%S] ") + message)

    def warn(self, message):
        """Something the user must know even with -q."""
        self.write("woof: warning: " + message)


# ---------------------------------------------------------------------------
# Network discovery
# ---------------------------------------------------------------------------

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


def reachable_host(bound_host):
    """The host to print in URLs for a server bound to bound_host."""
    if bound_host not in ("0.0.0.0", "::", ""):
        return bound_host
    host = outgoing_address(socket.AF_INET)
    if host is None and bound_host == "::":
        host = outgoing_address(socket.AF_INET6)
    return host or "127.0.0.1"


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

class ResponseSink:
    """Writes one response body to a socket, counting the body bytes sent.

    With chunked=True the body is framed in HTTP/1.1 chunks (RFC 7230, 4.1),
    for bodies whose size is not known in advance.  Small writes are
    gathered into larger ones; sendfile() hands file data to the kernel.
    `sent` counts body bytes that left woof, framing excluded.
    """

    def __init__(self, sock, chunked=False):
        self.sock = sock
        self.chunked = chunked
        self.sent = 0
        self.pending = bytearray()

    def write(self, data):
        """Send bytes, gathering small writes into larger ones."""
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
        else:
            self.sock.sendall(data)
        self.sent += len(data)

    def sendfile(self, fileobj, offset, count):
        """Send exactly `count` bytes of a regular file, from `offset`.

        Raises ShortFile when the file ends first (it shrank while offered).
        """
        self.flush()
        if count <= 0:
            return
        if self.chunked:
            self.sock.sendall(b"%x\r\n" % count)
        if HAS_OS_SENDFILE:
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
            self.sock.sendall(view[:got])
            self.sent += got
            count -= got

    def finish(self):
        """Send what is left and, when chunked, the last chunk."""
        self.flush()
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")

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
# Offers: what woof hands out
#
# An offer has a `name` (the download name), a `content_type`, and
# open(sending_body) returning a body for one request, or raising
# Unavailable.  A body has `size` (None when unknown), `etag` and `mtime`
# (None when it has none), write(sink, start, stop) and close().  Only
# bodies of known size are asked for ranges.
# ---------------------------------------------------------------------------

class FileBody:
    """One open, regular file, as it is at the time of the request."""

    def __init__(self, fileobj):
        self.file = fileobj
        status = os.fstat(fileobj.fileno())
        self.size = status.st_size
        self.mtime = status.st_mtime
        mtime_ns = getattr(status, "st_mtime_ns", int(status.st_mtime * 1e9))
        self.etag = '"%x-%x-%x"' % (status.st_ino, status.st_size, mtime_ns)

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
        self.identity = file_identity(os.stat(path))

    def open(self, sending_body=True):
        try:
            fileobj = os.fdopen(os.open(self.path, OPEN_NONBLOCKING), "rb")
        except OSError as error:
            raise Unavailable(HTTPStatus.GONE, "the file is no longer readable: %s"
                              % (error.strerror or error))
        status = os.fstat(fileobj.fileno())
        if not stat.S_ISREG(status.st_mode) or file_identity(status) != self.identity:
            fileobj.close()
            raise Unavailable(HTTPStatus.GONE, "the offered file was replaced or removed")
        return FileBody(fileobj)


def file_identity(status):
    """What tells one file from another: device and inode (0 where unknown)."""
    return (status.st_dev, status.st_ino)


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


class StreamBody:
    """The rest of a stream that can be read only once, such as a pipe.

    Closing a body that read nothing gives the stream back to its offer, so
    a client that left before the first byte costs nothing.
    """

    size = None
    etag = None
    mtime = None

    def __init__(self, stream, give_back):
        self.read = getattr(stream, "read1", stream.read)
        self.give_back = give_back
        self.started = False

    def write(self, sink, start=0, stop=None):
        self.started = True
        while True:
            # read1 returns what has arrived, so a slow producer is not held back.
            data = self.read(COPY_BUFFER_SIZE)
            if not data:
                return
            sink.write(data)
            sink.flush()

    def close(self):
        if not self.started:
            self.give_back()


class StreamOffer:
    """Standard input or another one-shot stream: the first GET takes it."""

    def __init__(self, stream, name=STDIN_NAME):
        self.stream = stream
        self.name = name
        self.content_type = guess_content_type(name)
        self.taken = False
        self.lock = threading.Lock()

    def open(self, sending_body=True):
        with self.lock:
            if self.taken:
                raise Unavailable(HTTPStatus.GONE, "the stream has already been sent")
            self.taken = sending_body
        return StreamBody(self.stream, self.give_back if sending_body else lambda: None)

    def give_back(self):
        with self.lock:
            self.taken = False


# ---------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------

class WoofHandler(BaseHTTPRequestHandler):
    """Answers requests for the server's offer; settings live on self.server."""

    protocol_version = "HTTP/1.1"
    # Older Pythons answer a request line they cannot parse as HTTP/0.9,
    # without a status line; no client of woof speaks 0.9.
    default_request_version = "HTTP/1.0"
    server_version = "woof.py/" + __version__
    disable_nagle_algorithm = True

    def setup(self):
        self.timeout = self.server.settings.timeout
        super().setup()

    def handle_one_request(self):
        self.status = None
        self.body_sent = None
        self.note = ""
        try:
            super().handle_one_request()
        finally:
            if self.status is not None:
                self.log_outcome()

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
        request = printable_name(getattr(self, "requestline", "") or "-")
        parts = ['"%s"' % request, str(self.status)]
        if self.body_sent is not None:
            parts.append(format_size(self.body_sent))
        if self.note:
            parts.append(self.note)
        self.log_message("%s", " ".join(parts))

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
            server.end_response()

    def answer_offer(self, sending_body):
        server = self.server
        path = request_path(self.path)
        if is_side_request(path):
            self.send_small(HTTPStatus.NOT_FOUND, "Not here: woof offers one thing.\n")
            return
        if path != "/" + server.offer.name:
            self.redirect(server.offer_path)
            return
        try:
            body = server.offer.open(sending_body)
        except Unavailable as error:
            self.send_error(error.status, str(error))
            return
        try:
            span = self.send_head(body)
            if span is not None and sending_body:
                self.send_body(body, span)
        finally:
            body.close()

    def send_head(self, body):
        """Send the status line and headers for `body`.

        Returns the span (start, stop) of the body to send, or None when the
        answer has no body (304, 416).  The caller sends the body, if any,
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
            if asked is not None:
                span, status = asked, HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", self.server.offer.content_type)
        self.send_header("Content-Disposition", content_disposition(self.server.offer.name))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_validators(body)
        self.send_length(body, span, status)
        self.end_headers()
        return span

    def send_validators(self, body):
        if body.etag:
            self.send_header("ETag", body.etag)
        if body.mtime is not None:
            self.send_header("Last-Modified", http_date(body.mtime))

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
        sink = ResponseSink(self.connection, chunked)
        server = self.server
        complete = False
        received = 0
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
            received = sink.sent
            self.close_connection = True
            self.note = "aborted: %s" % describe_transfer_error(error)
        finally:
            self.body_sent = sink.sent
            counted = server.record_delivery(self.client_address, body, start, received, complete)
        if counted:
            self.note = "download %d of %d complete" % counted
        if server.finished.is_set():
            self.close_connection = True

    def redirect(self, location):
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_small(self, status, text, *headers):
        """Answer with a short plain text and any extra (name, value) headers."""
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def describe_transfer_error(error):
    """Why a transfer stopped, in a few words."""
    if isinstance(error, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        return "the client went away"
    if isinstance(error, socket.timeout):
        return "the client stopped reading"
    return getattr(error, "strerror", None) or str(error)


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


class WoofServer(socketserver.ThreadingMixIn, HTTPServer):
    """A threaded HTTP server that stops once its offer has been taken `count` times.

    What changes while serving (downloads left, partial spans received per
    client, transfers in flight) is guarded by self.lock.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = REUSE_ADDRESS_IS_SAFE
    request_queue_size = 64
    timeout = POLL_INTERVAL  # how often handle_request() returns to check for the end

    def __init__(self, settings, offer, log=None, handler=WoofHandler):
        self.settings = settings
        self.offer = offer
        self.log = log or Log(settings.quiet)
        self.offer_path = url_path_for(offer.name) if offer is not None else "/"
        self.lock = threading.Condition()
        self.remaining = settings.count
        self.spans_by_client = {}
        self.in_flight = 0
        self.connections = 0
        self.failure = None
        self.finished = threading.Event()
        family, address = resolve_bind_address(settings.ip, settings.port)
        self.address_family = family
        try:
            HTTPServer.__init__(self, address, handler)
        except OSError as error:
            raise WoofError(describe_bind_error(error, settings))

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

    def url(self):
        """The URL to give the other side."""
        host = reachable_host(self.server_address[0])
        return "http://%s:%d%s" % (url_host(host), self.port, self.offer_path)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        self.log.info("%s connection failed: %s" % (client_host(client_address),
                                                    describe_transfer_error(error)))

    # What changes while serving

    def process_request(self, request, client_address):
        with self.lock:
            full = self.connections >= MAX_CONNECTIONS
            if not full:
                self.connections += 1
        if full:
            self.shutdown_request(request)
            return
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            with self.lock:
                self.connections -= 1

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

    def record_delivery(self, client_address, body, start, received, complete):
        """Record bytes a client received; return (n, count) if that made a download."""
        with self.lock:
            if body.size is None:
                if not complete:
                    self.fail_stream(received)
                    return None
                return self.count_completion()
            host = client_host(client_address)
            spans = merge_spans(self.spans_by_client.get(host, []) + [(start, start + received)])
            if covers(spans, body.size):
                self.spans_by_client.pop(host, None)
                return self.count_completion()
            # Bounded, so a client sending endless scattered ranges cannot
            # grow woof's memory; such a client never completes a download.
            self.spans_by_client[host] = spans[:MAX_SPANS_PER_CLIENT]
            return None

    def count_completion(self):
        """Count one download or upload (lock held); return (n, count)."""
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        if self.remaining == 0:
            self.finished.set()
        return (self.settings.count - self.remaining, self.settings.count)

    def fail_stream(self, sent):
        self.failure = ("standard input was cut off after %s and cannot be sent again"
                        % format_size(sent))
        self.finished.set()

    def stop(self):
        """Make serve_until_done() return (from any thread)."""
        self.finished.set()

    def serve_until_done(self):
        """Serve until the count is reached, then let transfers in flight finish.

        Accepting happens in the calling thread, so Ctrl-C lands here and
        nowhere else.  Raises WoofError when the offer was lost (a cut-off
        stream).
        """
        try:
            while not self.finished.is_set():
                self.handle_request()
        finally:
            self.server_close()
        with self.lock:
            while self.in_flight:
                self.lock.wait(POLL_INTERVAL)
        if self.failure:
            raise WoofError(self.failure)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

EXAMPLES = """\
examples:
  woof.py report.pdf           offer one file, once, on port 8080
  woof.py -c 3 -p 9000 a.iso   offer it three times on port 9000
  woof.py -i 127.0.0.1 x.txt   listen on this machine only
  tar cf - dir | woof.py --name dir.tar -
                               offer standard input, once
  woof.py -s                   offer woof.py itself

On the other side: open the URL in a browser, or
  curl -OJ URL    wget --content-disposition URL    aria2c URL

Defaults come from /etc/woofrc, then ~/.woofrc, section [main]:
  port = 8080, count = 1, ip = ADDRESS, compressed = gz|bz2|xz|zip|off
"""


def port_number(text):
    """argparse type: a TCP port, 0 meaning any free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port %d is out of range 0-65535" % port)
    return port


def positive_count(text):
    """argparse type: how many times to serve, at least 1."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if count < 1:
        raise argparse.ArgumentTypeError("the count must be 1 or more, not %d" % count)
    return count


def positive_seconds(text):
    """argparse type: a timeout in seconds, more than 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError("the timeout must be more than 0 seconds")
    return seconds


def compression_word(text):
    """argparse and woofrc type: a `compressed` value."""
    try:
        return COMPRESSION_WORDS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError("%r is not one of gz, bz2, xz, zip, off" % text)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="woof.py",
        description="Offer a file, a folder or standard input over HTTP, then exit "
                    "once it has been downloaded.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="FILE",
                        help="what to offer; - for standard input")
    parser.add_argument("-i", "--ip", metavar="ADDR",
                        help="listen on this address only (default: all)")
    parser.add_argument("-p", "--port", type=port_number, metavar="PORT",
                        help="port to listen on (default %d; 0 for any)" % DEFAULT_PORT)
    parser.add_argument("-c", "--count", type=positive_count, metavar="COUNT",
                        help="how many downloads before exiting (default %d)" % DEFAULT_COUNT)
    parser.add_argument("-s", "--self", dest="offer_self", action="store_true",
                        help="offer woof.py itself, so the other side gets the tool")
    parser.add_argument("--name", metavar="NAME",
                        help="offer under this name (for - the default is %r)" % STDIN_NAME)
    formats = parser.add_mutually_exclusive_group()
    for flag, value, text in (("-z", "gz", "folders as .tar.gz (the default)"),
                              ("-j", "bz2", "folders as .tar.bz2"),
                              ("--xz", "xz", "folders as .tar.xz"),
                              ("-Z", "zip", "folders as .zip"),
                              ("-u", "tar", "folders as plain .tar: resumable, with a size")):
        formats.add_argument(flag, dest="compression", action="store_const",
                             const=value, help=text)
    parser.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                        default=DEFAULT_TIMEOUT,
                        help="drop a connection idle this long (default %g)" % DEFAULT_TIMEOUT)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="log nothing but warnings and errors")
    parser.add_argument("--version", action="version", version="woof.py " + __version__)
    return parser


def read_config(paths):
    """Defaults from woofrc files, later files overriding earlier ones."""
    defaults = {}
    for path in paths:
        path = os.path.expanduser(path)
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as config_file:
                parser.read_file(config_file, path)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeError, configparser.Error) as error:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise WoofError("cannot read %s: %s" % (path, reason))
        if parser.has_section("main"):
            defaults.update(config_values(path, parser["main"]))
    return defaults


def config_values(path, section):
    """Check and convert the [main] keys woof knows; ignore the others."""
    converters = {"port": port_number, "count": positive_count,
                  "ip": str, "compressed": compression_word}
    names = {"compressed": "compression"}
    values = {}
    for key, convert in converters.items():
        if key not in section:
            continue
        try:
            values[names.get(key, key)] = convert(section[key].strip())
        except argparse.ArgumentTypeError as error:
            raise WoofError("%s: %s: %s" % (path, key, error))
    return values


def settings_from(args):
    """The immutable Settings for parsed arguments."""
    count = args.count or DEFAULT_COUNT
    if args.paths == ["-"]:
        count = 1
    return Settings(ip=args.ip or None, port=DEFAULT_PORT if args.port is None else args.port,
                    count=count, quiet=args.quiet, timeout=args.timeout,
                    compression=args.compression or "gz")


def checked_name(name):
    """A --name value, refused when it could not be a file name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise WoofError("--name must be a plain file name, not %r" % name)
    return name


def build_offer(args, stdin):
    """The offer the command line asks for."""
    name = checked_name(args.name) if args.name is not None else None
    if args.offer_self:
        if args.paths:
            raise WoofError("-s offers woof.py itself; give no FILE with it")
        return FileOffer(os.path.abspath(__file__), name or "woof.py")
    if args.paths == ["-"]:
        return StreamOffer(stdin or sys.stdin.buffer, name or STDIN_NAME)
    if len(args.paths) != 1 or "-" in args.paths:
        raise WoofError("give one FILE to offer")
    return FileOffer(args.paths[0], name)


def announce(server, offer, settings, log):
    """Print the URL on stdout, and what woof waits for on stderr."""
    print("Now serving on %s" % server.url(), flush=True)
    times = "once" if settings.count == 1 else "%d times" % settings.count
    log.info("offering %s %s; Ctrl-C to stop" % (printable_name(offer.name), times))


# ---------------------------------------------------------------------------
# main()
# ---------------------------------------------------------------------------

def main(argv=None, config_paths=CONFIG_PATHS, stdin=None):
    """Run woof; return the exit status (0 done, 1 error, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        parser.set_defaults(**read_config(config_paths))
    except WoofError as error:
        print("woof: error: %s" % error, file=sys.stderr)
        return 1
    try:
        args = parse_command_line(parser, argv)
    except SystemExit as exit_request:
        return exit_request.code
    if args.count and args.paths == ["-"] and args.count > 1:
        print("woof: warning: standard input can be sent only once; the count is 1",
              file=sys.stderr)
    if not args.paths and not args.offer_self:
        parser.print_usage(sys.stderr)
        print("woof.py: error: give a FILE to offer, - for standard input, or -s",
              file=sys.stderr)
        return 2
    settings = settings_from(args)
    log = Log(settings.quiet)
    server = None
    try:
        offer = build_offer(args, stdin)
        server = WoofServer(settings, offer, log)
        announce(server, offer, settings, log)
        server.serve_until_done()
        return 0
    except WoofError as error:
        print("woof: error: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("woof: interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.server_close()


if __name__ == "__main__":
    sys.exit(main())
