"""``mnist``: MNIST digits read row by row by one attention layer (the paper's Table 4)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads._base import (
    Protocol,
    Splits,
    Workload,
    first,
    open_torchvision_split,
    stacked_linear,
)

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

__all__ = ["Mnist", "RowAttentionNet", "normalize_images"]


def normalize_images(images: Tensor) -> Tensor:
    """uint8 pixels -> ``Normalize(0.5, 0.5)(ToTensor()(image))``, for a whole batch at once.

    The same operations in the same order as torchvision's two transforms, so the values are
    bit-identical to the per-image pipeline of the authors' script.
    """
    return images.float().div(255).sub(0.5).div(0.5)


class RowAttentionNet(nn.Module):
    """Each image row is a token: Linear(28, 28) embedding, MultiheadAttention(28, 4 heads),
    flatten to 784, Linear(784, 128), ReLU, Dropout(0.5), Linear(128, 10), log-softmax.

    The authors' layers in their order (so a seed initialises them alike).
    """

    def __init__(self, embed_dim: int = 28, num_heads: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.embedding = nn.Linear(28, embed_dim)
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.fc1 = nn.Linear(embed_dim * 28, 128)
        self.fc2 = nn.Linear(128, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, images: Tensor) -> Tensor:
        """Log-probabilities ``(batch, 10)`` for images ``(batch, [1,] 28, 28)``."""
        tokens = self.embedding(images.reshape(images.shape[0], 28, 28))
        # The weights are not used: skipping them lets torch take its fused attention path.
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        hidden = F.relu(self.fc1(attended.reshape(images.shape[0], -1)))
        return F.log_softmax(self.fc2(self.dropout(hidden)), dim=1)


class Mnist(Workload):
    """torchvision's MNIST, ``Normalize((0.5,), (0.5,))``; :class:`RowAttentionNet`;
    negative log-likelihood of the log-softmax; batch 64; 5 epochs. Validation: 10 % of the
    training images (6,000 of the full 60,000; 400 of a 4,000-image subset); test: the test set.

    The authors applied ``CrossEntropyLoss`` to log-softmax outputs, a second log-softmax that
    changes nothing (log-softmax is idempotent); NLL on log-softmax is the same loss, said once.
    Files are read from ``DATA_DIR/MNIST/raw`` by torchvision's own reader.
    """

    name = "mnist"
    summary = "torchvision MNIST, row-token attention net, NLL (paper Table 4); needs files"
    protocol = Protocol(epochs=5, batch_size=64)
    num_classes = 10
    validation_fraction = 0.1
    needs_data_dir = True

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        if data_dir is None:  # Workload.load_data checks this first; here for the type
            raise ValueError(f"Invalid data_dir: workload {self.name!r} needs one, got None.")
        train = _open(data_dir, train=True, download=download)
        test = _open(data_dir, train=False, download=False)
        return Splits(
            normalize_images(first(train.data, train_size, name="train_size", split="training")),
            first(train.targets, train_size, name="train_size", split="training"),
            normalize_images(first(test.data, test_size, name="test_size", split="test")),
            first(test.targets, test_size, name="test_size", split="test"),
        )

    def split_sizes(self, data_dir: Path | None, *, download: bool = False) -> tuple[int, int]:
        """The image counts in the headers of the two label files (8 bytes each, not the
        images): the shared 4,000-image subset and the full 60,000 are told apart for free.
        Missing or unreadable files are loaded the usual way, which says what is wrong."""
        if data_dir is not None:
            raw = data_dir / "MNIST" / "raw"
            try:
                return (
                    _idx_count(raw / "train-labels-idx1-ubyte"),
                    _idx_count(raw / "t10k-labels-idx1-ubyte"),
                )
            except (OSError, struct.error):
                pass
        return super().split_sizes(data_dir, download=download)

    has_stacked_forward = True

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        """:class:`RowAttentionNet` for K stacked models: batched matrix products, and one call
        of torch's fused attention over all K models' heads (``vmap`` of the module falls back
        to a loop for CPU attention)."""
        models, batch = inputs.shape[:2]
        embed = params["embedding.weight"].shape[1]
        heads = 4
        tokens = stacked_linear(
            inputs.reshape(models, batch * 28, 28),
            params["embedding.weight"],
            params["embedding.bias"],
        )
        qkv = stacked_linear(
            tokens, params["attention.in_proj_weight"], params["attention.in_proj_bias"]
        )
        query, key, value = qkv.reshape(models * batch, 28, 3, heads, embed // heads).permute(
            2, 0, 3, 1, 4
        )
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = stacked_linear(
            attended.transpose(1, 2).reshape(models, batch * 28, embed),
            params["attention.out_proj.weight"],
            params["attention.out_proj.bias"],
        )
        hidden = F.relu(
            stacked_linear(
                attended.reshape(models, batch, 28 * embed),
                params["fc1.weight"],
                params["fc1.bias"],
            )
        )
        hidden = F.dropout(hidden, 0.5, training)
        return F.log_softmax(
            stacked_linear(hidden, params["fc2.weight"], params["fc2.bias"]), dim=-1
        )

    def build_model(self) -> nn.Module:
        return RowAttentionNet()

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.nll_loss(outputs, targets)

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.nll_loss(outputs.transpose(1, 2), targets, reduction="none").mean(-1)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()


def _idx_count(path: Path) -> int:
    """The number of items in an IDX file: the first dimension, after the 4-byte magic."""
    with path.open("rb") as file:
        header = file.read(8)
    count: int = struct.unpack(">I", header[4:8])[0]
    return count


def _open(data_dir: Path, *, train: bool, download: bool) -> MNIST:
    """torchvision's MNIST split, or :class:`DataNotFoundError` saying where the files go."""
    # Imported here: torchvision takes seconds to import and only file-based workloads need it.
    from torchvision.datasets import MNIST

    return open_torchvision_split(
        lambda: MNIST(root=data_dir, train=train, download=download),
        dataset="MNIST",
        location=data_dir / "MNIST" / "raw",
        missing="not found",
        instructions="put train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte there (uncompressed IDX files)",
        download=download,
    )
