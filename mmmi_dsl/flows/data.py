"""Training data for learned flows (numpy and Pillow, no torch): images scaled to about [-1, 1].

Kinds: ``digits`` (scikit-learn's 8x8 digits, pixel / 16 * 2 - 1), ``fashion-mnist`` (Debian's
``dataset-fashion-mnist``, IDX files, pixel / 255 * 2 - 1; or the same four files, gzipped,
xz-compressed or plain, in the folder the environment variable ``MMMI_FASHION_DIR`` names; from
either, each file must have the release's SHA-256, :data:`FASHION_SHA256`), a
``.npz`` with arrays ``x`` (n, C, H, W) (or (n, d)) and ``y`` (uint8 pixels are scaled / 255 * 2 - 1,
floats used as given), a ``.npy`` array (n, ...) with optional labels, or a folder with one
subfolder of PNGs per class (classes in sorted name order, pixel / 255 * 2 - 1).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmmi_dsl.dataset import DatasetError
from mmmi_dsl.errors import UsageError

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
#: a folder holding Fashion-MNIST's four IDX files instead of the Debian package (e.g. a copy carried
#: to a machine without the package); each file as ``NAME.gz``, ``NAME.xz`` or ``NAME``
FASHION_ENV = "MMMI_FASHION_DIR"
#: SHA-256 of each of Fashion-MNIST's four files decompressed (the whole IDX file, header included, so
#: the same for ``.gz``, ``.xz`` and plain copies), as Debian's dataset-fashion-mnist
#: 0.0~git20200523.55506a9-1 ships them (the upstream release's files): :func:`load_fashion` refuses
#: anything else, from the package or from ``$MMMI_FASHION_DIR``
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
KINDS = "digits, fashion-mnist, a .npz (arrays x, y), a .npy or a folder of class subfolders of PNGs"


@dataclass(frozen=True)
class TrainingData:
    """``x`` (n, C, H, W) images or (n, d) vectors, float32 near [-1, 1]; ``y`` (n,) int64 labels."""

    x: np.ndarray
    y: np.ndarray
    source: str
    classes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of image data, None for vectors."""
        return tuple(int(s) for s in self.x.shape[1:]) if self.x.ndim == 4 else None

    def sha256(self) -> str:
        """SHA-256 of the arrays as trained on: x as float32 then y as int64, C order."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return h.hexdigest()


def load_digits_array() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: (1797, 64) float32 in [-1, 1] (pixel / 16 * 2 - 1) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0 * 2.0 - 1.0).astype(np.float32), d.target.astype(np.int64)


def idx_bytes(path: Path) -> bytes:
    """The bytes of an IDX file, decompressed (``.gz``, ``.xz`` or plain)."""
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(Path(path).suffix, open)
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise DatasetError(f"cannot read `{path}`: {err}") from None


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """The array of IDX bytes ``raw`` (read from ``path``): big-endian magic ``0 0 type ndim``, dims, data."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in dtypes:
        raise DatasetError(f"`{path}` is not an IDX file")
    ndim = raw[3]
    dims = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(dtypes[raw[2]])
    count = int(np.prod(dims))
    if len(raw) != 4 + 4 * ndim + count * dtype.itemsize:
        raise DatasetError(f"`{path}`: {len(raw):,} bytes do not fit an IDX array of shape {dims}")
    return np.frombuffer(raw, dtype, count, 4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST format; gzipped, xz-compressed or plain)."""
    return parse_idx(idx_bytes(path), path)


def fashion_files(split: str = "train") -> tuple[Path, Path]:
    """(images, labels) IDX files of Fashion-MNIST's ``train`` or ``t10k`` split.

    From the folder ``$MMMI_FASHION_DIR`` when that variable is set (``NAME.gz``, ``NAME.xz`` or
    ``NAME`` there, the first found), else from the Debian package.

    Raises:
        DatasetError: the files are not there (the message says how to install the package, or
        which files the folder lacks).
    """
    names = (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
    folder = os.environ.get(FASHION_ENV)
    if folder:
        stems = [n.removesuffix(".gz") for n in names]
        paths = [next((p for p in (Path(folder) / f"{s}{ext}" for ext in (".gz", ".xz", "")) if p.is_file()),
                      Path(folder) / f"{s}.gz") for s in stems]

        def absent(p: Path) -> str:
            return (f"Fashion-MNIST: {FASHION_ENV}={folder} has no `{p.name}` (nor .xz or uncompressed); it must "
                    f"hold the four IDX files of `{FASHION_PACKAGE}`, or unset it to read the installed package")
    else:
        found = {}
        if shutil.which("dpkg"):
            listing = subprocess.run(["dpkg", "-L", FASHION_PACKAGE], capture_output=True, text=True, check=False)
            found = {Path(line).name: Path(line) for line in listing.stdout.splitlines() if line.strip()}
        paths = [found.get(n, FASHION_DIR / n) for n in names]

        def absent(p: Path) -> str:
            return (f"Fashion-MNIST is not installed (no `{p}`): it comes from Debian's package "
                    f"`{FASHION_PACKAGE}`; install it with `apt-get install {FASHION_PACKAGE}` (or point "
                    f"{FASHION_ENV} at a folder with its four files)")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(absent(missing[0]))
    return paths[0], paths[1]


def read_fashion_file(path: Path) -> np.ndarray:
    """One of Fashion-MNIST's IDX files, checked against :data:`FASHION_SHA256`.

    Raises:
        DatasetError: unreadable, or its decompressed bytes are not the release's (the folder and
        the file are named).
    """
    raw = idx_bytes(path)
    name = Path(path).name.removesuffix(".gz").removesuffix(".xz")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FASHION_SHA256.get(name):
        where = f"{FASHION_ENV}={os.environ[FASHION_ENV]}" if os.environ.get(FASHION_ENV) else "the installed package"
        raise DatasetError(f"Fashion-MNIST: `{Path(path).name}` in `{Path(path).parent}` ({where}) is not the "
                           f"release's file: its {len(raw):,} decompressed bytes have SHA-256 {digest[:16]}..., "
                           f"expected {str(FASHION_SHA256.get(name))[:16]}...; copy the four files of "
                           f"`{FASHION_PACKAGE}` there unchanged")
    return parse_idx(raw, path)


def load_fashion(split: str = "train") -> TrainingData:
    """Fashion-MNIST: x (n, 1, 28, 28) float32 = pixel / 255 * 2 - 1, y (n,) in 0..9 (60,000 train, 10,000 t10k).

    Each file is checked against :data:`FASHION_SHA256` (from the package or from ``$MMMI_FASHION_DIR``);
    ``source`` names the folder, and the variable when it chose it.
    """
    images, labels = fashion_files(split)
    x, y = read_fashion_file(images), read_fashion_file(labels)
    if x.ndim != 3 or y.shape != (len(x),):
        raise DatasetError(f"`{images}` and `{labels}` are not matching image and label arrays")
    x = (x.astype(np.float32) / 255.0 * 2.0 - 1.0)[:, None]
    folder = os.environ.get(FASHION_ENV)
    source = (f"{FASHION_PACKAGE} {split} ({images.parent})" if not folder else
              f"Fashion-MNIST {split} ({FASHION_ENV}={images.parent}: {FASHION_PACKAGE}'s files by SHA-256)")
    return TrainingData(x, y.astype(np.int64), source, FASHION_CLASSES)


def load_image_folder(root: Path) -> TrainingData:
    """One subfolder of PNGs per class (sorted names -> 0, 1, ...): x (n, C, H, W) = pixel / 255 * 2 - 1.

    Images are read with Pillow as grey (C = 1) when every one is grey, else RGB (C = 3); all must
    have the same size.
    """
    from PIL import Image

    classes = sorted(p for p in root.iterdir() if p.is_dir())
    files = [(k, f) for k, d in enumerate(classes) for f in sorted(d.glob("*.png"))]
    if not files:
        raise DatasetError(f"`{root}` has no class subfolders with .png files")
    try:
        images = [Image.open(f) for _, f in files]
        mode = "L" if all(im.mode in ("L", "1", "I;16", "LA") for im in images) else "RGB"
        arrays = [np.asarray(im.convert(mode)) for im in images]
    except OSError as err:
        raise DatasetError(f"cannot read the images under `{root}`: {err}") from None
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise DatasetError(f"the images under `{root}` differ in size: {sorted(sizes)[:3]}")
    x = np.stack(arrays).astype(np.float32) / 255.0 * 2.0 - 1.0
    x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
    y = np.array([k for k, _ in files], np.int64)
    return TrainingData(np.ascontiguousarray(x), y, str(root), tuple(d.name for d in classes))


def _load_arrays(p: Path, labels: str | None) -> TrainingData:
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                if "x" not in f:
                    raise DatasetError(f"{p}: expected arrays `x` (and optionally `y`)")
                x = f["x"]
                y = f["y"] if "y" in f else np.zeros(len(x), np.int64)
        else:
            x = np.load(p, allow_pickle=False)
            y = np.zeros(len(x), np.int64)
        if labels:
            y = np.load(labels, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read training data: {err}") from None
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DatasetError(f"labels must be {len(x)} non-negative integers, got {y.shape} {y.dtype}")
    x = x.astype(np.float32) / 255.0 * 2.0 - 1.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if not (p.suffix == ".npz" and x.ndim == 4):
        x = x.reshape(len(x), -1)
    return TrainingData(np.ascontiguousarray(x), y.astype(np.int64), str(p))


def load_training_data(spec: str, labels: str | None = None) -> TrainingData:
    """The training data named by ``spec``: one of :data:`KINDS`.

    Raises:
        UsageError: not one of those kinds. DatasetError: unreadable, pickled or malformed data,
        or Fashion-MNIST not installed.
    """
    if spec == "digits":
        x, y = load_digits_array()
        return TrainingData(x.reshape(-1, 1, 8, 8), y, "sklearn.datasets.load_digits, pixel/16*2-1",
                            tuple(str(k) for k in range(10)))
    if spec == "fashion-mnist":
        return load_fashion("train")
    p = Path(spec)
    if p.is_dir():
        return load_image_folder(p)
    if p.suffix not in (".npz", ".npy"):
        raise UsageError(f"expected {KINDS}; got {spec}")
    return _load_arrays(p, labels)
