"""Fixtures of the browser test: the built site on a local server, CDN copies, headless Chromium.

Nothing here skips: a missing build, browser or CDN copy is a failure that says what to run.
"""

from __future__ import annotations

import functools
import http.server
import os
import ssl
import subprocess
import threading
from pathlib import Path

import cdn
import pytest

from companion.book import book_root

# BOOK_SITE points the test at another copy of the built site (used to prove it fails when it should).
SITE = Path(os.environ.get("BOOK_SITE") or book_root() / "_build" / "html")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


class CdnHandler(QuietHandler):
    """Answers https://<cdn host>/<path> from the npm packages unpacked by ``cdn.fetch``."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        url = f"https://{self.headers.get('Host', '').split(':')[0]}{self.path}"
        path = cdn.local_file(url)
        if path is None or not path.is_file():
            self.send_error(404, f"no local copy of {url}")
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")  # web fonts are fetched with CORS
        self.end_headers()
        self.wfile.write(body)


def serve(server: http.server.ThreadingHTTPServer):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE / 'index.html'} does not exist: build the book first (make book)", pytrace=False)
    return SITE


@pytest.fixture(scope="session")
def base_url(site: Path):
    """The built site served on 127.0.0.1 only, on a free port."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler))
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def cdn_port(tmp_path_factory) -> int:
    missing = [spec for spec, _ in cdn.CDN_PACKAGES.values() if not cdn.package_dir(spec).is_dir()]
    if missing:
        pytest.fail(f"no local copy of {missing}: run make browser (python site_tests/cdn.py)", pytrace=False)
    folder = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cdn.test",
                    "-keyout", folder / "key.pem", "-out", folder / "cert.pem"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CdnHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def driver(cdn_port: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            pytest.fail(f"{path} is missing: run make browser (Debian's chromium and chromium-driver)", pytrace=False)
    # The CDN hosts resolve to the local copies; every other host name fails to resolve, so a
    # page that needs anything else from the internet shows a console error in any environment.
    rules = [f"MAP {host} 127.0.0.1:{cdn_port}" for host in sorted(cdn.hosts())]
    rules += ["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1"]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--ignore-certificate-errors",
                     f"--host-resolver-rules={', '.join(rules)}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(30)
    yield browser
    browser.quit()
