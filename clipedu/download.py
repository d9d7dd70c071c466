"""Downloading CLIP weights you can trust: only when asked, resumable, checked against a SHA-256.

Nothing in clipedu downloads on import or by itself; these functions run only when you call them:

    download_openai("ViT-B/32")      # ~/.cache/clip/ViT-B-32.pt, where openai/CLIP's clip.load saves it
    download_openclip("timm/vit_base_patch32_clip_224.openai")  # via huggingface_hub: pip install "clipedu[hub]"
    python -m clipedu.download ViT-B/32                         # the same from a shell: make weights MODEL=ViT-B/32

`download` streams into ``<dest>.part`` (``ViT-B-32.pt.part``) under a tqdm bar,
resumes an existing ``.part`` with an HTTP Range request, checks the SHA-256, and
only then renames the file into place with ``os.replace`` (atomic): ``dest`` is
either absent or complete and verified. A wrong hash deletes the partial file; a
cut connection keeps it, so the next call resumes. An HTML error page, an HTTP
error or no network raise `WeightsError` saying what to do.

The manual alternative, always open: download the file any way you like, check
its SHA-256 (``sha256sum``), and save it at the path the error message names, or
anywhere with its path in the environment variable ``CLIPEDU_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from clipedu import weights_file
from clipedu.weights_file import ENV_VAR, WeightsError, openai_filename

# openai/CLIP's _MODELS table: https://openaipublic.azureedge.net/clip/models/<sha256>/<file>
OPENAI_BASE_URL = "https://openaipublic.azureedge.net/clip/models"
OPENAI_CACHE = "~/.cache/clip"  # clip.load's download_root: a file it saved is found here
CHUNK = 1 << 20  # bytes read per step of the stream
TIMEOUT = 30.0  # seconds a connect or a read may wait



def part_path(dest: str | os.PathLike) -> Path:
    """Where `download` streams `dest` to before it checks out: the same name plus ".part"."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def by_hand(url: str, dest: Path, expected: str) -> str:
    """The sentence every download error ends with: how to place the file yourself."""
    return (f"To place the file by hand: fetch {url} (a browser, or `curl -L -o FILE URL`), check that `sha256sum "
            f"FILE` prints {expected}, and save it as {dest} (or anywhere, with its path in the environment "
            f"variable {ENV_VAR}).")


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a body are a web page (an error or login page), not weights."""
    return head.lstrip()[:9].lower().startswith((b"<!doctype", b"<html"))


def _open(url: str, offset: int, manual: str, timeout: float):
    """The server's response, asking for the bytes from `offset` on; None when it answers 416 to that."""
    headers = {"User-Agent": "clipedu", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:  # the .part is already as long as the file (or longer)
            return None
        raise WeightsError(f"{url} answered HTTP {err.code} {err.reason}: the file is not there (a wrong model "
                           "name or base URL, or the file moved) or the server refuses for now. Check the address, "
                           f"try again later, or use a mirror. {manual}") from None
    except OSError as err:  # URLError (refused, no DNS, no route), a timeout
        raise WeightsError(f"cannot reach {url}: {getattr(err, 'reason', err)}. Check the network connection (behind "
                           f"a proxy, set HTTPS_PROXY) and call again. {manual}") from None


def _fetch(url: str, part: Path, offset: int, manual: str, progress: bool, timeout: float) -> bool:
    """Stream `url` into `part` from `offset` on (appending when the server honours Range).

    Returns False when the server says the range is past the end (416), True otherwise.
    """
    from tqdm.auto import tqdm  # lazily: `import clipedu.weights` stays light

    resp = _open(url, offset, manual, timeout)
    if resp is None:
        return False
    with resp:
        if resp.status == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):  # a range we did not ask for: start over from the first byte
                resp.close()
                part.unlink(missing_ok=True)
                return _fetch(url, part, 0, manual, progress, timeout)
        else:
            offset = 0  # 200: the server ignored the Range request and sends the whole file
        if resp.headers.get_content_type() == "text/html":
            raise WeightsError(f"{url} sent a web page (Content-Type text/html), not a weights file: a wrong URL, a "
                               f"login or error page, or a captive network portal. {manual}")
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received, cut = offset, None

        def read() -> bytes:
            nonlocal cut
            try:
                return resp.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as err:  # the connection dropped or timed out
                cut = err
                return b""

        chunk = read()
        if offset == 0 and looks_like_html(chunk):
            raise WeightsError(f"{url} sent an HTML page, not a weights file: a wrong URL or an error page. {manual}")
        with open(part, "ab" if offset else "wb") as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                             unit_divisor=1024, desc=part.name.removesuffix(".part"),
                                                             disable=not progress) as bar:
            while chunk:
                f.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
                chunk = read()
    if cut is not None or (total is not None and received < total):
        of = f" of {total:,}" if total is not None else ""
        why = f"{type(cut).__name__}: {cut}" if cut is not None else "the connection closed early"
        raise WeightsError(f"the download of {url} was cut short after {received:,}{of} bytes ({why}). The partial "
                           f"file is kept at {part}: call again (or run the same command) to resume from there. "
                           f"{manual}")
    return True


def download(url: str, dest: str | os.PathLike, sha256: str, *, progress: bool = True,
             timeout: float = TIMEOUT) -> Path:
    """Download `url` to `dest`, checked against the SHA-256 `sha256` (hex); returns `dest`.

    - `dest` already there with the right hash: returned at once, no request made.
    - `dest` there with a wrong hash (a damaged or different file): a warning names both hashes, the file is
      downloaded again, and replaces `dest` only once its own hash checks out (as clip.load does).
    - The bytes go to ``<dest>.part`` first (`part_path`); an existing ``.part`` is resumed with a Range
      request (a server that ignores it and answers 200 is read from the start).
    - A wrong hash deletes the ``.part`` and raises WeightsError naming both hashes; so do an HTML page,
      an HTTP error, no network, and a cut connection (which keeps the ``.part`` for the next call).
    """
    dest = Path(dest).expanduser()
    expected = sha256.lower()
    part = part_path(dest)
    if dest.is_file():
        found = weights_file.sha256(dest)
        if found == expected:
            part.unlink(missing_ok=True)
            return dest
        warnings.warn(f"{dest} is there, but its SHA-256 is {found}, not {expected}: downloading it again "
                      "(it is replaced once the new file checks out)", stacklevel=2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    manual = by_hand(url, dest, expected)
    offset = part.stat().st_size if part.is_file() else 0
    if not _fetch(url, part, offset, manual, progress, timeout) and weights_file.sha256(part) != expected:
        part.unlink()  # a 416, and the .part is not the file: start over
        _fetch(url, part, 0, manual, progress, timeout)
    found = weights_file.sha256(part)
    if found != expected:
        part.unlink()
        raise WeightsError(f"the file from {url} has SHA-256 {found}, but {expected} was expected: it is not the "
                           f"file asked for (changed, damaged or tampered with), so it was deleted. {manual}")
    with open(part, "rb") as f:  # the bytes are on disk before the rename makes them the file
        os.fsync(f.fileno())
    os.replace(part, dest)
    return dest


def download_openai(name: str, cache_dir: str | os.PathLike | None = None, base_url: str | None = None, *,
                    progress: bool = True) -> Path:
    """OpenAI's released file for `name` ("ViT-B/32", "RN50", ...), checked against its published SHA-256.

    It goes to `cache_dir` (default ~/.cache/clip, where clip.load saves it, so a file clip.load saved
    is verified and used without a request). `base_url` points at a mirror with OpenAI's layout,
    ``{base_url}/{sha256}/{file}``. The file is a TorchScript archive: load it with
    ``clipedu.weights.load_clip(path, allow_torchscript=True)``.
    """
    table = weights_file.OPENAI_SHA256  # read at call time
    if name not in table:
        raise WeightsError(f"no OpenAI CLIP release is called {name!r}; the released ones are {', '.join(table)}")
    file = openai_filename(name)
    folder = Path(os.path.expanduser(cache_dir if cache_dir is not None else OPENAI_CACHE))
    url = f"{(base_url or OPENAI_BASE_URL).rstrip('/')}/{table[name]}/{file}"
    return download(url, folder / file, table[name], progress=progress)


def download_openclip(repo_id: str, filename: str = "open_clip_model.safetensors",
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """An OpenCLIP checkpoint from the Hugging Face Hub ("timm/vit_base_patch32_clip_224.openai", an
    "hf-hub:" prefix allowed), with the open_clip_config.json beside it that `load_clip` reads.

    Needs the optional huggingface_hub package (pip install "clipedu[hub]"), which checks the download.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError('downloading OpenCLIP weights needs the huggingface_hub package: pip install '
                           '"clipedu[hub]" (or pip install huggingface_hub). Or download the file yourself and '
                           f"set the environment variable {ENV_VAR} to its path.") from None
    repo_id = repo_id.removeprefix("hf-hub:")
    try:
        path = hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir)
    except (OSError, ValueError) as err:  # the hub's HTTP, not-found and offline errors; a malformed repo id
        message = str(err).splitlines()[0] if str(err) else ""
        raise WeightsError(f"cannot get {filename} from the Hugging Face repository {repo_id!r}: "
                           f"{type(err).__name__}: {message}. Check the name (https://huggingface.co/{repo_id}) "
                           "and the network; or download the file yourself and set the environment variable "
                           f"{ENV_VAR} to its path.") from None
    try:
        hf_hub_download(repo_id=repo_id, filename="open_clip_config.json", cache_dir=cache_dir)
    except (OSError, ValueError) as err:
        warnings.warn(f"{repo_id} has no open_clip_config.json ({type(err).__name__}): load_clip cannot tell "
                      "GELU from QuickGELU by itself; pass act='gelu' for a model trained with GELU", stacklevel=2)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    """`python -m clipedu.download NAME`: download one model's weights, print the file's path."""
    parser = argparse.ArgumentParser(prog="python -m clipedu.download", description=main.__doc__)
    parser.add_argument("name", help=f"an OpenAI release ({', '.join(weights_file.OPENAI_SHA256)}) "
                                     "or hf-hub:ORG/REPO for an OpenCLIP checkpoint")
    parser.add_argument("--cache-dir", help="the folder to save to (default: ~/.cache/clip, or the Hugging Face cache)")
    parser.add_argument("--base-url", help=f"a mirror of {OPENAI_BASE_URL} (OpenAI releases only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if args.name.startswith("hf-hub:"):
            path = download_openclip(args.name, cache_dir=args.cache_dir)
        else:
            path = download_openai(args.name, args.cache_dir, args.base_url, progress=not args.quiet)
    except WeightsError as err:
        raise SystemExit(f"error: {err}") from None
    print(path)


if __name__ == "__main__":
    main()
