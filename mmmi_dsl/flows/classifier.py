"""An independent image classifier, the judge of a learned flow's samples (issue 15, item 6).

A small CNN trained on the *real* labelled images a flow imitates (Fashion-MNIST's 60,000
training images, or scikit-learn's digits), never on generated ones: its accuracy on a flow's
samples of class k is the flow's class consistency, and its penultimate layer (``features``
wide) is the space the Fréchet distance is measured in (:mod:`mmmi_dsl.flows.quality`).

Architecture: per level ``conv3x3 -> BatchNorm -> ReLU -> maxpool 2`` (widths ``channels``), then
``flatten -> linear(features) -> ReLU`` (the feature layer) ``-> linear(n_classes)``.
Images are the flows' units (pixels scaled to [-1, 1], e.g. ``x / 255 * 2 - 1``).

Saved as safetensors (no pickle): the tensors, and in the metadata ``mmmi_classifier`` (the
JSON config, training settings, the command, the training time and the measured test
accuracy, overall and per class). On the CPU with one thread and a seed training is
deterministic.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmmi_dsl.flows.data import TrainingData, load_digits_array, load_fashion

FORMAT = "mmmi_dsl.classifier/1"
META_KEY = "mmmi_classifier"
#: Reference data sets: the real images a classifier is trained (train) and judged (test) on.
KINDS = ("fashion-mnist", "digits")


def reference_data(kind: str) -> tuple[TrainingData, TrainingData]:
    """(train, test) real labelled images of ``kind``: x (n, 1, H, W) float32 in [-1, 1], y (n,).

    ``fashion-mnist``: the 60,000 training and 10,000 test images (Debian's package).
    ``digits``: scikit-learn's 1,797 8x8 digits, every fifth (index % 5 == 0) held out as test.
    """
    if kind == "fashion-mnist":
        return load_fashion("train"), load_fashion("t10k")
    if kind == "digits":
        x, y = load_digits_array()
        x = x.reshape(-1, 1, 8, 8)
        test = np.arange(len(x)) % 5 == 0
        classes = tuple(str(k) for k in range(10))
        src = "sklearn.datasets.load_digits, pixel/16*2-1"
        return (TrainingData(x[~test], y[~test], f"{src}, index % 5 != 0", classes),
                TrainingData(x[test], y[test], f"{src}, index % 5 == 0", classes))
    raise ValueError(f"reference data must be one of {', '.join(KINDS)}, got {kind!r}")


class Classifier(nn.Module):
    """``logits = head(features(x))``: x (n, C, H, W) or flattened (n, C*H*W) -> (n, n_classes).

    Args:
        shape: (C, H, W) of the images.
        channels: widths of the conv levels; each level halves H and W (floor).
        features: width of the penultimate (feature) layer.
        n_classes: number of classes.
    """

    def __init__(self, shape=(1, 28, 28), channels=(16, 32, 64), features: int = 128, n_classes: int = 10):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        layers: list[nn.Module] = []
        c, h, w = self.shape
        for width in channels:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"{len(channels)} halvings do not fit images of {self.shape[1]}x{self.shape[2]}")
        self.conv = nn.Sequential(*layers)
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, features), nn.ReLU())
        self.head = nn.Linear(features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations, (n, features)."""
        return self.feature(self.conv(x.reshape(len(x), *self.shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def classifier_from_config(config: dict) -> Classifier:
    """The (untrained) classifier a config describes."""
    return Classifier(shape=tuple(config["shape"]), channels=tuple(config["channels"]),
                      features=int(config["features"]), n_classes=int(config["n_classes"]))


@torch.no_grad()
def predict(model: Classifier, x: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), features (n, f) float64) of images ``x`` (n, ...) in the flows' units, computed on
    the model's device (numpy in and out)."""
    model.eval()
    device = next(model.parameters()).device
    labels, feats = [], []
    for i in range(0, len(x), batch):
        f = model.features(torch.as_tensor(np.ascontiguousarray(x[i:i + batch]), dtype=torch.float32).to(device))
        labels.append(model.head(f).argmax(1).cpu().numpy())
        feats.append(f.double().cpu().numpy())
    if not labels:
        return np.zeros(0, np.int64), np.zeros((0, model.head.in_features))
    return np.concatenate(labels), np.concatenate(feats)


def reference_kind(record: dict) -> str:
    """Which of :data:`KINDS` a classifier was trained on (its record's ``reference``, else its ``data``)."""
    if record.get("reference") in KINDS:
        return record["reference"]
    data = str(record.get("data", ""))
    for kind, marker in (("fashion-mnist", "fashion-mnist"), ("digits", "load_digits")):
        if marker in data:
            return kind
    raise ValueError(f"the classifier's training data {data!r} is not one of {', '.join(KINDS)}")


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> list[float | None]:
    """Accuracy of ``pred`` among the samples of each true class (None for a class without samples)."""
    return [float(np.mean(pred[y == k] == k)) if np.any(y == k) else None for k in range(n_classes)]


def train_classifier(train: TrainingData, test: TrainingData, *, channels=(16, 32, 64), features: int = 128,
                     epochs: int = 4, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     limit: int | None = None, log=None) -> tuple[Classifier, dict]:
    """Train a :class:`Classifier` on ``train`` (Adam, cross entropy, cosine learning rate); judge it on ``test``.

    Deterministic on the CPU for a given seed and thread count: the initial weights come from
    ``torch.manual_seed(seed)``, the batch order from ``numpy.random.default_rng(seed)``.
    ``limit`` keeps the first ``limit`` training images (quick runs, tests).

    Returns:
        (the model in eval mode, a record: config, settings, seconds, test accuracy overall and per class).
    """
    x, y = train.x, train.y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    n_classes = int(max(y.max(), test.y.max())) + 1
    config = {"format": FORMAT, "shape": list(x.shape[1:]), "channels": list(channels), "features": int(features),
              "n_classes": n_classes}
    torch.manual_seed(seed)
    model = classifier_from_config(config)
    rng = np.random.default_rng(seed)
    steps = epochs * math.ceil(len(x) / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            acc = float(np.mean(predict(model, test.x)[0] == test.y))
            log(f"epoch {epoch + 1}/{epochs}: train loss {total / len(x):.4f}, test accuracy {acc:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    pred, _ = predict(model, test.x)
    record = {"config": config, "data": train.source, "test_data": test.source, "n_train": int(len(x)),
              "n_test": int(len(test.x)), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "train_seconds": round(seconds, 1),
              "test_accuracy": float(np.mean(pred == test.y)),
              "test_accuracy_per_class": per_class_accuracy(pred, test.y, n_classes),
              "classes": list(train.classes) or [str(k) for k in range(n_classes)]}
    return model.eval(), record


def save_classifier(path, model: Classifier, record: dict) -> Path:
    """Write the classifier as safetensors, ``record`` (with its ``config``) as JSON in the metadata."""
    from safetensors.torch import save

    from mmmi_dsl.files import write_atomic

    path = Path(path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, save(state, metadata={META_KEY: json.dumps(record, sort_keys=True)}))
    return path


def load_classifier(path) -> tuple[Classifier, dict]:
    """(model in eval mode, record) from a file :func:`save_classifier` wrote; nothing is unpickled."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if META_KEY not in meta:
        raise ValueError(f"`{path}` is not a classifier file (no `{META_KEY}` in its metadata)")
    record = json.loads(meta[META_KEY])
    if record.get("config", {}).get("format") != FORMAT:
        raise ValueError(f"`{path}`: classifier format {record.get('config', {}).get('format')!r}, expected {FORMAT!r}")
    model = classifier_from_config(record["config"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), record
