#!/usr/bin/env python3
"""Check that the PyTorch model (vlm.py) computes what edgevl computes.

    /root/venv-ref/bin/python scripts/train/check_edgevl.py [--ckpt main/last.pt] [--edgevl target/release/edgevl]

1. tiling: vlm.plan against `edgevl tiles --json` (grid, tiles, tokens) on 300 sizes of the data
   generator's distribution and the three strategies at budgets 9 and 16;
2. prompts: the token ids of each prompt piece against `edgevl tokenize --no-bos --json`;
3. vision: the checkpoint exported as F32 and Q8_0; `edgevl encode-image --npy` on a few
   generated images against the PyTorch model's projector output (F32 within 1e-3 relative to
   the output's largest magnitude; Q8_0's difference is reported).
Exits non-zero on any mismatch.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def check_tiles(edgevl):
    rng = random.Random(5)
    sizes = [data.image_size(rng) for _ in range(300)] + [(394, 390), (380, 76), (768, 1536), (2000, 300)]
    bad = 0
    for k, (w, h) in enumerate(sizes):
        n = (9, 16)[k % 2]
        out = json.loads(subprocess.check_output(
            [edgevl, "tiles", "--size", f"{w}x{h}", "--strategy", "all", "--max-tiles", str(n), "--json"]))
        for row in out:
            p = vlm.plan(w, h, row["strategy"], n)
            if [p[0], p[1], p[0] * p[1], p[9]] != [*row["grid"], row["tiles"], row["tokens"]]:
                bad += 1
                print("tiles mismatch", w, h, n, row, p)
    print(f"tiles: {len(sizes)} sizes x 3 strategies, {bad} mismatches")
    return bad == 0


def check_tokens(edgevl, model_gguf):
    pr = vlm.Prompter()
    ok = True
    qs = [q["question"] for t in data.TASKS for i in range(2) for q in data.sample("test", t, i)[1]]
    for q in qs[:8]:
        for piece in pr.tok.apply_chat_template([{"role": "user", "content": vlm.MARKER + q}], tokenize=False,
                                                add_generation_prompt=True).split(vlm.MARKER):
            ours = pr.encode(piece)
            theirs = json.loads(subprocess.check_output([edgevl, "tokenize", "-m", model_gguf, "-p", piece,
                                                         "--no-bos", "--json"]))
            if ours != theirs:
                ok = False
                print("token mismatch", repr(piece), ours, theirs)
    print(f"tokens: {len(qs[:8])} prompts, {'equal' if ok else 'DIFFERENT'}")
    return ok


def check_vision(edgevl, ckpt, max_tiles=9):
    model = export_mmproj.load_vision(ckpt)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        files = {}
        for ty in ("f32", "q8_0"):
            files[ty] = os.path.join(d, f"mmproj-{ty}.gguf")
            export_mmproj.write(model, files[ty], ty)
        for task, i in [("shapes", 0), ("ocr", 1), ("chart", 2), ("ocr", 5)]:
            img = data.sample("test", task, i)[0]
            path = os.path.join(d, f"{task}{i}.png")
            img.save(path)
            with torch.no_grad():
                ref = model(vlm.views(img, "relaxed", max_tiles)).numpy()
            scale = float(np.abs(ref).max())
            for ty, f in files.items():
                out = os.path.join(d, f"{ty}.npy")
                subprocess.check_call([edgevl, "encode-image", "--mmproj", f, "--image", path, "--max-tiles",
                                       str(max_tiles), "--npy", out], stderr=subprocess.DEVNULL)
                got = np.load(out)
                rel = float(np.abs(got - ref).max()) / scale if got.shape == ref.shape else float("inf")
                print(f"vision {task}{i} {img.size} {ty}: {ref.shape[0] // 196} views, max |diff| / max |ref| = {rel:.2e}")
                if ty == "f32" and not rel <= 1e-3:
                    ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="main/last.pt")
    ap.add_argument("--edgevl", default=os.path.join(ROOT, "target", "release", "edgevl"))
    ap.add_argument("--model", default=vlm.LLM_GGUF)
    ap.add_argument("--vision-only", action="store_true", help="only check 3")
    a = ap.parse_args()
    torch.set_num_threads(1)
    results = [check_vision(a.edgevl, a.ckpt)] if a.vision_only else []
    if not a.vision_only:
        results = [check_tiles(a.edgevl), check_tokens(a.edgevl, a.model), check_vision(a.edgevl, a.ckpt)]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
