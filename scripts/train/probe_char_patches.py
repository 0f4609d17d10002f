#!/usr/bin/env python3
"""How learnable is reading a sign, patch by patch, from the pixels alone? (docs/training.md, "A reading stage")

Renders `--images` training sign images and 300 held-out (`val`) ones as stage 0 sees them (small images, one
384x384 view), takes every 14x14 patch whose centre lies on a character (`train.char_patch_targets`, the dense
labels of `--dense-chars`) and fits two classifiers of the character from the patch's raw pixels (588 values):
a linear one and a one-hidden-layer MLP (512 GELU units), Adam 1e-3, batches of 256, `--epochs` passes. Prints
train and held-out accuracy every 10 epochs and the share of the commonest character. Seeded; one thread.

    /root/venv-ref/bin/python scripts/train/probe_char_patches.py --images 2000
"""

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402


def char_patches(split, first, count):
    """(pixels [n, 588], character index [n]) of the patches on characters of `count` sign images."""
    xs, ys = [], []
    for i in range(first, first + count):
        img, _, meta = data.sample(split, "ocr", i, small=True)
        px = vlm.views(img, "relaxed", 1)[0]
        t = train.char_patch_targets(img, meta)
        p = px.unfold(1, vlm.PATCH, vlm.PATCH).unfold(2, vlm.PATCH, vlm.PATCH)
        p = p.permute(1, 2, 0, 3, 4).reshape(vlm.GRID * vlm.GRID, -1)
        on = t > 0
        xs.append(p[on])
        ys.append(t[on] - 1)
    return torch.cat(xs), torch.cat(ys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000, help="training sign images")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(train.SEED)
    t0 = time.time()
    xtr, ytr = char_patches("train", 0, args.images)
    xte, yte = char_patches("val", 0, 300)
    classes = len(train.CHARS)
    print(f"{len(xtr)} training and {len(xte)} held-out character patches ({time.time() - t0:.0f} s)", flush=True)
    d = xtr.shape[1]
    models = {
        "linear": torch.nn.Linear(d, classes),
        "mlp": torch.nn.Sequential(torch.nn.Linear(d, 512), torch.nn.GELU(), torch.nn.Linear(512, classes)),
    }
    for name, model in models.items():
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for epoch in range(1, args.epochs + 1):
            for idx in torch.randperm(len(xtr)).split(256):
                loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % 10 == 0:
                with torch.no_grad():
                    tr = (model(xtr).argmax(-1) == ytr).float().mean().item()
                    te = (model(xte).argmax(-1) == yte).float().mean().item()
                print(f"{name}, epoch {epoch}: train {tr:.3f}, held-out {te:.3f}", flush=True)
    print(f"commonest character's share of the held-out patches: {torch.bincount(yte).max().item() / len(yte):.3f}")


if __name__ == "__main__":
    main()
