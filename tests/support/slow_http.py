"""A local HTTP server (127.0.0.1) that serves an image slowly: 1 MiB every
30 ms, with its Content-Length, so that an import takes long enough to report
its progress several times."""

import contextlib
import http.server
import os
import shutil
import threading
import time

from tests.support import sandbox

M = 1024**2


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(self.server.image)))
        self.end_headers()
        with open(self.server.image, "rb") as fh:
            for chunk in iter(lambda: fh.read(M), b""):
                self.wfile.write(chunk)
                time.sleep(0.03)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def slow_image_url(size):
    """The URL of a random image of ``size`` bytes (whole MiB) served slowly; removed afterwards."""
    directory = sandbox.files_dir(sandbox.uid("pimg-"))
    image = os.path.join(directory, "image.raw")
    with open(image, "wb") as fh:
        fh.writelines(os.urandom(M) for _ in range(size // M))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.image = image
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/image.raw"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(directory, ignore_errors=True)
