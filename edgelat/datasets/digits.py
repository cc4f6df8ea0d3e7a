"""A classification task that ships inside scikit-learn and trains on 2 CPU cores in seconds.

scikit-learn's digits (1,797 8x8 grayscale images, 10 classes) resized to ``resolution`` and
repeated over 3 channels: enough to tell a pruned network that kept its accuracy from one that
lost it, with no download. Pruning's fine-tuning and its benchmark use it; any object with the
same two methods (``train_batches`` and ``evaluate``) can take its place.

Example:
    >>> task = DigitsTask(resolution=32)
    >>> train(model, task, steps=200)  # doctest: +SKIP
    >>> task.evaluate(model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsTask", "train"]


class DigitsTask:
    """Digits at ``resolution`` px, 3 channels; a fixed split (75% train, 25% validation)."""

    def __init__(self, resolution: int = 32, seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        images, labels = load_digits(return_X_y=True)
        images = (images - images.mean()) / images.std()
        x = torch.from_numpy(images.reshape(-1, 1, 8, 8)).float()
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        y = torch.from_numpy(labels).long()
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
        n_val = len(y) // 4
        self.x_val, self.y_val = x[order[:n_val]], y[order[:n_val]]
        self.x_train, self.y_train = x[order[n_val:]], y[order[n_val:]]
        self.input_shape = (1, 3, resolution, resolution)

    def train_batches(self, steps: int, batch_size: int = 64, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(len(self.y_train), (batch_size,), generator=gen)
            yield self.x_train[idx], self.y_train[idx]

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        """Top-1 accuracy (%) on the validation split."""
        model.eval()
        correct = sum(
            int((model(self.x_val[i : i + 256]).argmax(1) == self.y_val[i : i + 256]).sum()) for i in range(0, len(self.y_val), 256)
        )
        return 100.0 * correct / len(self.y_val)


def train(model: nn.Module, task: DigitsTask, steps: int, lr: float = 0.05, seed: int = 0) -> nn.Module:
    """SGD with momentum and cosine decay for ``steps`` mini-batches; returns ``model`` (trained in place)."""
    if steps <= 0:
        return model
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for x, y in task.train_batches(steps, seed=seed):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    model.eval()
    return model
