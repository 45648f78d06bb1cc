"""Local HTTP servers on 127.0.0.1 for the tests that import images from URLs.

* :func:`serve`: a threaded server on a free port running a test's own
  request handler, stopped when the ``with`` block ends.
* :class:`FileServer`: ``http://127.0.0.1:PORT/`` serving one directory.
* :class:`QuietHandler`: a request handler that logs nothing (the base of the
  tests' handlers).

The slow image server of the progress tests is :mod:`tests.support.slow_http`.
"""

import contextlib
import functools
import http.server
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that does not log each request to stderr."""

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


def start(handler, **attributes):
    """A started ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) running ``handler``;
    ``attributes`` are set on the server (handlers read them as ``self.server.<name>``).
    Stop it with :func:`stop`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in attributes.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


def url(server):
    """``http://127.0.0.1:PORT`` of a started server."""
    return f"http://127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def serve(handler, **attributes):
    """:func:`start` for the ``with`` block: yields the server, stops it afterwards."""
    server = start(handler, **attributes)
    try:
        yield server
    finally:
        stop(server)


class FileServer:
    """http://127.0.0.1:PORT/ serving one directory (for volume sources given as URLs)."""

    def __init__(self, directory):
        self.httpd = start(functools.partial(_QuietFiles, directory=directory))
        self.url = url(self.httpd)

    def stop(self):
        stop(self.httpd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
