"""A folder's images as uint8 pixels, decoded once: `pixels` decodes the files in parallel threads
(torchvision.io's decoders release the GIL) and keeps the result under `root`/folder/, keyed by a digest of
every file's name, size and modification time and of the options that shape the pixels (image size,
channels). A changed, added or removed file, or another option, makes another key; an unreadable cache is
decoded again. Reading the cache needs torch alone: torchvision (~1 s to import) is imported to decode.

Each image is decoded as RGB, made grey where 1 channel is asked for (or, with channels unset, where it is
grey), and resized where a size is given; `decode_files` does the same for predict's images of any size.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from logitlab import ConfigError

log = logging.getLogger("logitlab")
FORMAT = 1  # bump when what is cached for the same files and options changes (the decoding, the layout)


def pixels(folder: Path, files: list[str], size: tuple[int, int] | None, channels: int | None,
           root: str) -> Tensor:
    """(N, C, H, W) uint8 pixels of `files` (relative to `folder`): memory-mapped from the cache, else
    decoded and cached (and then mapped from the file written, so both runs rest the same way).
    Without a `size` every image must have the same; with `channels` None, C is 1 if every image is grey."""
    start = time.perf_counter()
    cache = _cache_file(root, _cache_key(folder, files, {"image_size": size, "channels": channels}))
    cached = _load(cache, files)
    if cached is not None:
        log.info(f"data.path={folder}: {len(files)} images read from the cache {cache} "
                 f"in {time.perf_counter() - start:.2f} s")
        return cached
    images = decode_files([folder / f for f in files], channels, size)
    if size is None:
        _check_same_size(folder, images, files)
    if channels is None:  # 1 when every image is grey, else 3
        channels = max(image.shape[0] for image in images)
    decoded = torch.stack([image.expand(channels, -1, -1) for image in images])
    mapped = _load(cache, files) if _save(cache, decoded, files) else None
    decoded = decoded if mapped is None else mapped
    log.info(f"data.path={folder}: {len(files)} images decoded in {time.perf_counter() - start:.2f} s, "
             f"cached in {cache}")
    return decoded


def _check_same_size(folder: Path, images: list[Tensor], files: list[str]) -> None:
    first = images[0].shape[1:]
    other = next((n for n, image in enumerate(images) if image.shape[1:] != first), None)
    if other is not None:
        (h0, w0), (h1, w1) = first, images[other].shape[1:]
        raise ConfigError(f"data.path={folder}: images differ in size: {files[0]} is {h0}x{w0} and {files[other]} "
                          f"is {h1}x{w1} (height x width); set data.image_size=[H,W] to resize them all, e.g. "
                          f"data.image_size=[{h0},{w0}]")


# ---------------------------------------------------------------------------------------- decoding
def decode_files(files: list[Path], channels: int | None, size: tuple[int, int] | None) -> list[Tensor]:
    """Every file as `decode_file` gives it, in threads: a chunk of files per task, a few per thread."""
    # the cores this process may use (a cluster job's share), not the machine's
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(32, cores, len(files))
    chunk = max(1, math.ceil(len(files) / (4 * workers)))
    chunks = [files[i:i + chunk] for i in range(0, len(files), chunk)]
    with _libpng_quiet():
        pool = ThreadPoolExecutor(workers)
        try:
            decoded = pool.map(lambda part: [decode_file(f, channels, size) for f in part], chunks)
            return [image for part in decoded for image in part]
        finally:  # an unreadable image ends the decoding: the chunks not started are dropped
            pool.shutdown(cancel_futures=True)


def decode_file(file: Path, channels: int | None, size: tuple[int, int] | None) -> Tensor:
    """(C, H, W) uint8: decoded as RGB, made greyscale where channels is 1 (or, for None, where the image is
    grey: 1 channel, 3 when it has colour), resized to `size` (antialiased bilinear) if given."""
    try:
        rgb = _decode_rgb(file)
    except (RuntimeError, OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        # torchvision's messages start with the C++ function, file and line; the first sentence says it
        said = re.sub(r"^[^,]*, \S+:\d+, ", "", str(e).strip().splitlines()[0]).split(". ")[0] if str(e).strip() else ""
        reason = "corrupt, or not the format its name says" if said in ("", "Internal error.") else said.rstrip(".")
        raise ConfigError(f"{file} is not a readable image ({reason})") from None
    if channels != 3:
        grey = torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
        if grey or channels == 1:
            rgb = rgb[:1] if grey else _luma(rgb)
    if size is not None and tuple(rgb.shape[1:]) != size:
        from torchvision.transforms.v2.functional import resize

        rgb = resize(rgb, list(size), antialias=True)
    return rgb


def _decode_rgb(file: Path) -> Tensor:
    """(3, H, W) uint8. Always RGB: a palette PNG decoded "unchanged" gives its palette's indices, and the
    WebP and GIF decoders ignore a request for grey."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # a torchvision without decoders (0.29 deprecates them in favour of TorchCodec)
        decode_image = None
    if decode_image is None or file.suffix.lower() == ".bmp":  # and torchvision.io decodes no BMP
        from PIL import Image

        with Image.open(file) as image:
            frame = np.asarray(image.convert("RGB"))  # a GIF's first frame
        return torch.from_numpy(frame.copy()).permute(2, 0, 1)
    rgb = decode_image(read_file(str(file)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if rgb.dim() == 4:  # an animated GIF: (frames, 3, H, W)
        rgb = rgb[0]
    if rgb.dtype != torch.uint8:  # a 16-bit PNG: 0..65535 to 0..255, rounded
        rgb = ((rgb.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    return rgb


def _luma(rgb: Tensor) -> Tensor:
    """(1, H, W) uint8 grey of (3, H, W) uint8 RGB: ITU-R 601 luma rounded, as PIL's convert("L"); exact on
    grey pixels (the weights sum to 1000)."""
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(3, 1, 1)
    return ((rgb.to(torch.int32) * weights).sum(0, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)


@contextmanager
def _libpng_quiet():
    """libpng prints its errors and warnings on stderr itself (C code, file descriptor 2): a corrupt PNG
    would say two lines, libpng's and the ConfigError naming the file; an sRGB profile libpng dislikes, a
    warning per image. What is written to descriptor 2 while decoding is held back, and given back after,
    but for libpng's lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 (a daemon) or a closed sys.stderr: nothing to quieten
        yield
        return
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        held.seek(0)
        lines = held.read().decode(errors="replace").splitlines(keepends=True)
        held.close()
        sys.stderr.write("".join(line for line in lines if not line.startswith("libpng ")))


# ---------------------------------------------------------------------------------------- the cache
def _cache_key(folder: Path, files: list[str], options: dict) -> str:
    """A digest of the files (paths relative to `folder`, in order), their sizes and modification times
    (nanoseconds), and the options that shape their pixels."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "options": options}, sort_keys=True).encode())
    for name in files:
        stat = os.stat(os.path.join(folder, name))
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _cache_file(root: str, key: str) -> Path:
    return Path(os.path.expanduser(root)) / "folder" / f"{key}.pt"


def _load(path: Path, files: list[str]) -> Tensor | None:
    """The cached pixels (N, C, H, W) uint8 of `files`, or None when there are none (or none readable)."""
    if not path.is_file():
        return None
    try:
        # tensors and strings only: nothing to unpickle; memory-mapped: a folder larger than memory opens
        cached = torch.load(path, weights_only=True, mmap=True)
        decoded = cached["pixels"]
    except Exception as e:  # noqa: BLE001 (a truncated or foreign file: decode again and replace it)
        log.warning(f"{path} is not a readable image cache ({type(e).__name__}); decoding again")
        return None
    if cached.get("files") != files or decoded.dtype != torch.uint8 or len(decoded) != len(files):
        return None  # a digest collision, or a file of another version: decode again
    return decoded


def _save(path: Path, decoded: Tensor, files: list[str]) -> bool:
    """Write atomically (a temporary file, then os.replace): a run reading it never sees half a file, and
    runs that decode the same folder at once each write a whole one. Never in place: running runs map the
    file (`_load`), and the replaced one lives on for them until they end. A cache that cannot be written (a
    read-only data.root) costs the next run a decode, not this run."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"pixels": decoded.contiguous(), "files": files}, tmp)
        os.replace(tmp, path)
        return True
    except (OSError, RuntimeError) as e:  # torch.save says a full disk with a RuntimeError
        tmp.unlink(missing_ok=True)
        log.warning(f"could not cache the decoded images in {path} ({getattr(e, 'strerror', None) or e}); "
                    f"the next run decodes them again")
        return False
