"""Local copies of the scripts the built book loads from CDNs, so the browser test runs offline.

The pages that Jupyter Book writes load MathJax (pages with math), and require.js plus the
Jupyter widgets HTML manager (pages that store widget state) from public CDNs. The browser
test maps those CDN hosts to a local HTTPS server that serves the same npm packages, fetched
once with ``npm pack`` into ``_build/cdn`` (``make browser`` runs ``python site_tests/cdn.py``).
Any other remote script or stylesheet fails the test: add it here first.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CDN_DIR = ROOT / "_build" / "cdn"

# URL prefix used by the built pages -> (npm package, renamed files: URL name -> package name).
CDN_PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "https://cdn.jsdelivr.net/npm/mathjax@3/": ("mathjax@3.2.2", {}),
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/": ("@jupyter-widgets/html-manager@1.0.6", {}),
    "https://cdn.jsdelivr.net/npm/requirejs@2.3.4/": ("requirejs@2.3.4", {}),
}


def hosts() -> set[str]:
    """The CDN host names the browser test redirects to its local server."""
    return {urlsplit(prefix).hostname for prefix in CDN_PACKAGES}


def package_dir(spec: str) -> Path:
    return CDN_DIR / spec.replace("/", "__") / "package"


def local_file(url: str) -> Path | None:
    """The local copy of a CDN URL, or None when no package covers it."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    for prefix, (spec, renames) in CDN_PACKAGES.items():
        if url.startswith(prefix):
            rest = url[len(prefix):]
            return package_dir(spec) / renames.get(rest, rest)
    return None


def fetch() -> None:
    """Download each package once with ``npm pack`` and unpack it under ``_build/cdn``."""
    for spec, _ in CDN_PACKAGES.values():
        target = package_dir(spec)
        if target.is_dir():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(["npm", "pack", "--silent", spec, "--pack-destination", tmp],
                                 check=True, capture_output=True, text=True).stdout.split()[-1]
            with tarfile.open(Path(tmp) / out) as archive:
                archive.extractall(target.parent, filter="data")
        print(f"fetched {spec} into {target}")


if __name__ == "__main__":
    try:
        fetch()
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"error: could not fetch the CDN packages with npm ({error}); is npm installed?")
