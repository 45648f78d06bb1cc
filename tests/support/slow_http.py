"""A local HTTP server (127.0.0.1) that serves an image slowly: 1 MiB every
30 ms, with its Content-Length, so that an import takes long enough to report
its progress several times."""

import contextlib
import os
import shutil
import time

from tests.support import http_servers, sandbox

M = 1024**2


class _Slow(http_servers.QuietHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(self.server.image)))
        self.end_headers()
        with open(self.server.image, "rb") as fh:
            for chunk in iter(lambda: fh.read(M), b""):
                self.wfile.write(chunk)
                time.sleep(0.03)


@contextlib.contextmanager
def slow_image_url(size):
    """The URL of a random image of ``size`` bytes (whole MiB) served slowly; removed afterwards."""
    directory = sandbox.files_dir(sandbox.uid("pimg-"))
    image = os.path.join(directory, "image.raw")
    with open(image, "wb") as fh:
        fh.writelines(os.urandom(M) for _ in range(size // M))
    try:
        with http_servers.serve(_Slow, image=image) as server:
            yield f"{http_servers.url(server)}/image.raw"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
