"""Your own folder of images (`data=folder data.path=DIR`), one subfolder per class:

  DIR/<class>/<image>                  split per class by val_fraction and test_fraction (`stratified_split`)
  DIR/{train,val,test}/<class>/<image> the folder's own splits; a missing val/ or test/ is carved from train/

The classes are the sorted names of the class folders (of train/ where there is one). Hidden files and
folders (.DS_Store, .git/) are skipped, and so are files that are not images (the count is logged);
images are PNG, JPEG, BMP, WebP and GIF (its first frame), at any depth under their class folder.

Every image is decoded once (image_cache.py: in parallel threads, then cached under `root`, so the next
run over the same files starts at once) as RGB, made greyscale where data.channels is 1 (or, unset, where
every image is grey), and resized to `image_size` (antialiased) where one is given; without it every
image must have the same size. The splits hold the uint8 pixels (N, C, H, W), memory-mapped from the
cache, normalised per batch with the training split's per-channel statistics; 255 is white. `FolderReader` reads images of any size the same way for predict.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from logitlab import ConfigError
from logitlab.data import image_cache
from logitlab.data.arrays import carve, split_data
from logitlab.data.splits import SplitData

log = logging.getLogger("logitlab")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
SPLIT_FOLDERS = ("train", "val", "test")
PIXEL_MAX = 255  # 8-bit images: the raw value of white


def load_folder(path: str | None = None, image_size: Sequence[int] | None = None, channels: int | None = None,
                val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                root: str = "~/.cache/logitlab") -> SplitData:
    if path is None:
        raise ConfigError("data=folder needs data.path=DIR, a folder with one subfolder of images per class")
    size = _check_image_size(image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ConfigError(f"data.channels={channels!r} must be 1 (greyscale), 3 (RGB) or null (1 when every "
                          f"image is grey, else 3)")
    folder = Path(path).expanduser()
    splits, class_names = list_folder(folder)
    splits = _carved(splits, val_fraction, test_fraction, split_seed)  # before decoding
    files = [name for split in SPLIT_FOLDERS for name, _ in splits[split]]
    # (N, C, H, W) uint8 in split order, memory-mapped from the cache: each split is a slice of the file,
    # read into memory when the run keeps its data resident, streamed from the file when it does not
    pixels = image_cache.pixels(folder, files, size, channels, root)
    start = 0
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    for split in SPLIT_FOLDERS:
        labels = torch.tensor([label for _, label in splits[split]], dtype=torch.long)
        parts[split] = (pixels[start:start + len(labels)], labels)
        start += len(labels)
    reader = FolderReader(tuple(pixels.shape[2:]), pixels.shape[1], tuple(class_names))
    return split_data(folder.resolve().name, parts["train"], parts["val"], parts["test"], class_names,
                      val_fraction, test_fraction, split_seed, PIXEL_MAX, reader)


def _carved(splits: dict[str, list[tuple[str, int]]], val_fraction: float, test_fraction: float,
            split_seed: int) -> dict[str, list[tuple[str, int]]]:
    """Every split's files: the folder's own, and those carved from train/ where it lacks val/ or test/
    (arrays.carve: per class, by split_seed). The cache holds the images in this order, so another
    split_seed or fraction decodes the folder again."""
    entries = splits["train"]
    labels = torch.tensor([label for _, label in entries], dtype=torch.long)
    keep, cut_val, cut_test = carve(labels, "val" in splits, "test" in splits, val_fraction, test_fraction,
                                    split_seed)
    pick = lambda indices: [entries[i] for i in indices.tolist()]  # noqa: E731
    return {"train": entries if keep is None else pick(keep),
            "val": splits["val"] if cut_val is None else pick(cut_val),
            "test": splits["test"] if cut_test is None else pick(cut_test)}


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (isinstance(image_size, str) or not isinstance(image_size, Sequence) or len(image_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ConfigError(f"data.image_size={_plain(image_size)!r} must be [H,W], two positive integers "
                          f"(e.g. [28,28]), or null to keep the images' own size")
    return tuple(image_size)


def _plain(value):
    """A value as the command line gave it ([8], not ListConfig's repr)."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


# ---------------------------------------------------------------------------------------- the files
def list_folder(folder: Path) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """{split: [(file relative to `folder`, class index), ...]} and the class names. A folder without
    train/ is one split, "train", that split_data divides."""
    if not folder.is_dir():
        raise ConfigError(f"data.path={folder} " + ("is not a directory; data=folder reads a folder of class "
                                                     "folders (data=arrays reads an .npz)" if folder.exists()
                                                     else "does not exist"))
    top = [d.name for d in _visible_dirs(folder)]
    if "train" in top:
        others = [name for name in top if name not in SPLIT_FOLDERS]
        if others:
            raise ConfigError(f"data.path={folder} holds train/ and also {others[0]}/; a folder with splits holds "
                              f"only train/, val/ and test/, each with one folder per class")
        parts = {split: folder / split for split in SPLIT_FOLDERS if split in top}
    elif "val" in top or "test" in top:
        raise ConfigError(f"data.path={folder} holds {'val' if 'val' in top else 'test'}/ but no train/; put the "
                          f"training images in {folder / 'train'}/<class>/ (or use no split folders at all)")
    else:
        parts = {"train": folder}
    class_names = [d.name for d in _visible_dirs(parts["train"])]
    if len(class_names) < 2:
        found = f"one class folder ({class_names[0]}/)" if class_names else "no class folders"
        where = f"data.path={folder}" if parts["train"] == folder else str(parts["train"])
        raise ConfigError(f"{where} holds {found}; classification needs two or more, each holding its images: "
                          f"{parts['train']}/<class>/<image>")
    splits, skipped = {}, Counter()
    for split, part in parts.items():
        entries = []
        for class_dir in _visible_dirs(part):
            if class_dir.name not in class_names:
                raise ConfigError(f"{class_dir} is a class that {parts['train']} has no folder for; every "
                                  f"class must have training images")
            files = _visible_files(class_dir)
            images = [f for f in files if _suffix(f) in IMAGE_SUFFIXES]
            skipped.update(_suffix(f) or f.rpartition("/")[2] for f in files if _suffix(f) not in IMAGE_SUFFIXES)
            if not images:
                raise ConfigError(f"class folder {class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                                  f"add some or remove the folder")
            label, within = class_names.index(class_dir.name), class_dir.relative_to(folder).as_posix()
            entries += [(f"{within}/{f}", label) for f in images]
        if not entries:
            raise ConfigError(f"{part} holds no class folders; give it one folder of images per class or remove it")
        splits[split] = entries
    if skipped:
        log.info(f"data.path={folder}: skipped {sum(skipped.values())} files that are not images "
                 f"({', '.join(sorted(skipped))})")
    return splits, class_names


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _visible_files(folder: Path) -> list[str]:
    """Every file under `folder`, at any depth, as paths relative to it ("a.png", "sub/b.png") in their
    order; hidden ones (.DS_Store, the ._name.png macOS leaves beside each image) and those in hidden
    folders left out. Strings, not Paths: a folder of 20,000 images is listed in a tenth of the time."""
    files = []
    for at, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        within = Path(at).relative_to(folder).as_posix()
        files += [name if within == "." else f"{within}/{name}" for name in names if not name.startswith(".")]
    return sorted(files, key=lambda f: f.split("/"))


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


# ---------------------------------------------------------------------------------------- predict's reader
@dataclass(frozen=True)
class FolderReader:
    """Images for predict's input= (a file, or a folder of them at any depth), of any size: decoded,
    converted to the training channels and resized to the training size as training's were, as raw 0..255
    pixels (N, C, H, W) that the run's normalisation then standardises."""

    image_size: tuple[int, int]
    channels: int
    class_names: tuple[str, ...]

    def can_read(self, path: Path) -> bool:
        return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES

    def read(self, path: Path) -> tuple[Tensor, list[str]]:
        if not path.exists():
            raise ConfigError(f"input={path} does not exist")
        if path.is_dir():
            names = [f for f in _visible_files(path) if _suffix(f) in IMAGE_SUFFIXES]
            if not names:
                raise ConfigError(f"input={path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files = [path / name for name in names]
        else:
            files, names = [path], [path.name]
        pixels = torch.stack(image_cache.decode_files(files, self.channels, self.image_size))
        return pixels.float(), names

    def to_json(self) -> dict:
        height, width = self.image_size
        return {"kind": "images", "image_size": [height, width], "channels": self.channels,
                "layout": "(N, C, H, W) float32", "pixel_max": PIXEL_MAX, "class_names": list(self.class_names),
                "how": f"decode as 8-bit RGB; for 1 channel, grey = (299 R + 587 G + 114 B + 500) // 1000 (ITU-R "
                       f"601 luma, rounded; R where R = G = B); resize to {height}x{width} (height x width), "
                       f"bilinear with antialiasing, on the uint8 pixels; then as float32 in 0..{PIXEL_MAX}"}
