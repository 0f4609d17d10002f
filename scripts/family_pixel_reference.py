#!/usr/bin/env python3
"""Pixel references of the two public VLM families' image processors (issue 13), for
crates/edgevl-vision/tests/family_pixels.rs.

Needs transformers (5.x, PIL backend), Pillow 13 and numpy, e.g. /root/venv-ref/bin/python.
Runs transformers' PIL-backend processors as the public checkpoints configure them:
  internvl  GotOcr2ImageProcessorPil (InternVL 2.5 / 3): crop_to_patches=True, 448 x 448 tiles,
            min_patches 1, max_patches 12, BICUBIC, ImageNet mean/std; tiles row-major, thumbnail last;
  idefics3  Idefics3ImageProcessorPil (SmolVLM-256M / 500M): size longest_edge 2048, max_image_size
            longest_edge 512, LANCZOS, do_image_splitting, mean/std 0.5; tiles row-major, global image last;
plus a few other budgets (max_patches, min_patches, longest_edge), on images of many sizes.

Inputs are not stored: each is a deterministic pattern both this script and the Rust test make.
Its bytes, row-major RGB (height x width x 3, channels interleaved), come from the 32-bit LCG
`state = state * 1664525 + 1013904223 mod 2^32`, byte = state >> 24, started at `seed`, one byte per
sample in that order. Kind `noise` is those bytes; kind `mixed` is a gradient plus a quarter of them:
  R = x * 192 // w + byte // 4,  G = y * 192 // h + byte // 4,  B = (x + y) * 192 // (w + h) + byte // 4.
Three small photos from tests/fixtures/vision/resize/ are used as they are, and two small files with
a transparent colour from tests/fixtures/vision/modes/ as transformers' load_image reads them.

For each run the processor is called with do_rescale=False and do_normalize=False, so its views are the
8-bit pixels; each view is stored as the sha256 and the sum of its bytes in height x width x 3 order.
A few runs are repeated with normalisation on: the sha256 of each view's float32 pixel_values
(little-endian, channels first) is stored too. Writes tests/fixtures/vision/families.json.
"""
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image
from transformers.image_utils import load_image
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
import transformers

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vision")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# (kind, width, height, seed): wide, tall, tiny, large, odd sides, exactly one tile, exact multiples.
SIZES = [
    ("mixed", 1, 1, 1),
    ("noise", 2, 3, 2),
    ("mixed", 5, 300, 3),
    ("mixed", 300, 5, 4),
    ("noise", 17, 9, 5),
    ("mixed", 380, 76, 6),
    ("mixed", 394, 390, 7),
    ("mixed", 448, 448, 8),  # one InternVL tile
    ("noise", 512, 512, 9),  # one SmolVLM tile
    ("mixed", 511, 513, 10),
    ("mixed", 896, 448, 11),  # InternVL 2x1 exactly
    ("noise", 1024, 512, 12),  # SmolVLM 2x1 exactly
    ("mixed", 640, 480, 13),
    ("mixed", 480, 640, 14),
    ("mixed", 1280, 720, 15),
    ("mixed", 720, 1280, 16),
    ("mixed", 1000, 333, 17),  # odd short side after the longest-edge resize
    ("mixed", 200, 1000, 18),
    ("mixed", 3000, 1000, 19),
    ("mixed", 999, 777, 20),
    ("noise", 2049, 1025, 21),
    ("mixed", 4097, 3, 22),
    ("mixed", 3, 4097, 23),
    ("mixed", 768, 1536, 24),
    ("mixed", 4000, 3000, 25),
    ("mixed", 2048, 2048, 26),  # one SmolVLM canvas side exactly at the longest edge
]
PHOTOS = ["resize/astronaut.png", "resize/chelsea.png", "resize/coffee.png"]
# Files with a transparent colour (a palette PNG's tRNS, a GIF's transparent index), read as
# transformers' load_image reads a file: Pillow keeps the colour through convert("RGB") in
# info["transparency"], and the processors' convert_to_rgb composites it onto white.
TRANSPARENT = ["modes/palette_trns.png", "modes/transparent.gif", "modes/small_frame_transparent.gif"]

# Other budgets on a few sizes: InternVL max/min patches; Idefics3's longest edge (512 * floor(sqrt(N))
# for edgevl's --max-tiles N; 8192 runs into the 4096 clamp).
EXTRA = {
    "internvl": [({"max_patches": 6}, [(640, 480), (3000, 1000), (5, 300)]),
                 ({"min_patches": 3, "max_patches": 8}, [(448, 448), (1280, 720), (1, 1)]),
                 ({"max_patches": 1}, [(1280, 720), (17, 9)])],
    "idefics3": [({"longest_edge": 1024}, [(640, 480), (3000, 1000), (5, 300)]),
                 ({"longest_edge": 512}, [(1280, 720), (17, 9)]),
                 ({"longest_edge": 8192}, [(1280, 720)])],
}
# Runs whose normalised float32 pixel_values are checked too.
NORMALISED = {"internvl": [(640, 480), (17, 9)], "idefics3": [(640, 480), (17, 9)]}


def lcg_bytes(n, seed):
    """The first n bytes of the LCG from `seed`, vectorised by jumping ahead a block at a time."""
    a, c = 1664525, 1013904223
    block = 1 << 16
    # mult[k] = a^(k+1), add[k] = c * (a^k + ... + 1), both mod 2^32: state_k+1 = mult[k] * s + add[k].
    mult = np.empty(block, np.uint32)
    add = np.empty(block, np.uint32)
    m, d = 1, 0
    for k in range(block):
        m, d = (m * a) & 0xFFFFFFFF, (d * a + c) & 0xFFFFFFFF
        mult[k], add[k] = m, d
    out = np.empty(n, np.uint8)
    state = np.uint32(seed & 0xFFFFFFFF)
    for start in range(0, n, block):
        k = min(block, n - start)
        states = mult[:k] * state + add[:k]  # uint32 arithmetic wraps mod 2^32
        out[start:start + k] = (states >> np.uint32(24)).astype(np.uint8)
        state = states[k - 1]
    return out


def pattern(kind, w, h, seed):
    noise = lcg_bytes(w * h * 3, seed).reshape(h, w, 3)
    if kind == "noise":
        return noise
    x = np.arange(w, dtype=np.int64)[None, :]
    y = np.arange(h, dtype=np.int64)[:, None]
    grad = np.stack(np.broadcast_arrays(x * 192 // w, y * 192 // h, (x + y) * 192 // (w + h)), -1)
    return (grad + noise.astype(np.int64) // 4).astype(np.uint8)


def processor(family, config):
    if family == "internvl":
        kw = {"min_patches": 1, "max_patches": 12, **config}
        return GotOcr2ImageProcessorPil(crop_to_patches=True, size={"height": 448, "width": 448},
                                        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, **kw)
    longest = config.get("longest_edge", 2048)
    return Idefics3ImageProcessorPil(size={"longest_edge": longest}, max_image_size={"longest_edge": 512},
                                     do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def views_of(family, config, img, normalise):
    proc = processor(family, config)
    kw = {} if normalise else {"do_rescale": False, "do_normalize": False}
    if family == "idefics3":
        out = proc(images=[[img]], return_tensors="np", return_row_col_info=True, **kw)
        views = out["pixel_values"][0]
        grid = [int(out["cols"][0][0]), int(out["rows"][0][0])]
    else:
        out = proc(images=[img], return_tensors="np", **kw)
        views = out["pixel_values"]
        grid = None
    assert views.shape[1:] in [(3, 448, 448), (3, 512, 512)], views.shape
    return views, grid


def record(family, config, img, source):
    views, grid = views_of(family, config, img, normalise=False)
    assert np.array_equal(views, np.round(views)) and views.min() >= 0 and views.max() <= 255
    u8 = views.astype(np.uint8).transpose(0, 2, 3, 1)  # n x H x W x 3, as edgevl's RgbImage
    run = {"image": source, "family": family, "config": config,
           "views": [{"sha256": hashlib.sha256(v.tobytes()).hexdigest(), "sum": int(v.sum(dtype=np.uint64))}
                     for v in u8]}
    if grid is not None:
        run["cols_rows"] = grid  # the processor's split counts (0, 0 when the image is not split)
    if "w" in source and (source["w"], source["h"]) in NORMALISED[family] and not config:
        f32, _ = views_of(family, config, img, normalise=True)
        assert f32.dtype == np.float32
        run["normalised_sha256"] = [hashlib.sha256(v.astype("<f4").tobytes()).hexdigest() for v in f32]
    return run


def main():
    runs = []
    images = [({"kind": k, "w": w, "h": h, "seed": s}, Image.fromarray(pattern(k, w, h, s), "RGB"))
              for k, w, h, s in SIZES]
    for rel in PHOTOS:
        with Image.open(os.path.join(ROOT, rel)) as f:
            images.append(({"file": rel}, f.convert("RGB")))
    for rel in TRANSPARENT:
        img = load_image(os.path.join(ROOT, rel))
        assert img.info.get("transparency") is not None, rel
        images.append(({"file": rel}, img))
    by_size = {(src["w"], src["h"]): (src, img) for src, img in images if "w" in src}
    for family in ["internvl", "idefics3"]:
        for src, img in images:
            runs.append(record(family, {}, img, src))
            print(family, src, len(runs[-1]["views"]), file=sys.stderr)
        for config, sizes in EXTRA[family]:
            for wh in sizes:
                src, img = by_size[wh]
                runs.append(record(family, config, img, src))
    manifest = {"generator": "scripts/family_pixel_reference.py", "transformers": transformers.__version__,
                "pillow": Image.__version__, "runs": runs}
    with open(os.path.join(ROOT, "families.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(runs)} runs, {sum(len(r['views']) for r in runs)} views", file=sys.stderr)


if __name__ == "__main__":
    main()
