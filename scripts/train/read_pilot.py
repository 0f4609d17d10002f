#!/usr/bin/env python3
"""Does the ViT learn to read faster when it sees only the tokens around the sign? (docs/training.md, "A reading stage")

The dense reading objective of `train.py --dense-chars` (the character under each patch's centre,
`train.char_patch_targets`) on the same small single-view sign images, but each training sample is a window of
`--window` W x H patches around a character (a random one of the image's, the window placed at random over it)
instead of the whole 27 x 27 view: the tower embeds the whole view (patch convolution and position embeddings,
cheap) and runs its encoder layers on the window's tokens only, so a training step costs about W*H / 729 of a
full view's. The model is the demo's ViT (6 layers, 192 wide), fresh as run `ocr-fresh` or `--init` a GGUF.

Every `--eval-every` windows it reports, on `--val` held-out (`val`) images, the share of character patches read
right with the encoder on the whole view (all 729 tokens: what the model sees at inference) and on a window
around the sign's first character (what it trained on), and the images whose character patches are all right.
Seeded; `--threads` (1 by default, so another job can use the other core).

    /root/venv-ref/bin/python scripts/train/read_pilot.py --windows 64000 --window 12x4 --val 150 --eval-every 8000 \
        --save reader/read64k.pt
"""

import argparse
import json
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import train  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

G = vlm.GRID


def window_index(r0, c0, w, h):
    """Token indices of the h x w window with top-left patch (r0, c0), row-major."""
    rows = torch.arange(r0, r0 + h)[:, None] * G
    return (rows + torch.arange(c0, c0 + w)[None, :]).reshape(-1)


def place(anchor, w, h, dr, dc):
    """Top-left of a w x h window holding patch `anchor` `dr` rows and `dc` columns from its corner, kept on the
    grid."""
    r, c = divmod(anchor, G)
    return min(max(0, r - dr), G - h), min(max(0, c - dc), G - w)


def sample_view(split, index):
    """(pixels [1, 3, 384, 384], character class of each patch [729]) of one small sign image."""
    img, _, meta = data.sample(split, "ocr", index, small=True)
    return vlm.views(img, "relaxed", 1), train.char_patch_targets(img, meta)


class Reader(torch.nn.Module):
    """The demo ViT tower with a per-patch character head."""

    def __init__(self):
        super().__init__()
        self.vision = vlm.Vision()
        self.head = train.dense_head()

    def logits(self, pixels, index=None):
        """[n, tokens, classes] for the whole views, or for the tokens `index` [n, k] of each view."""
        tower = self.vision.tower()
        x = tower.embeddings(pixels)
        if index is not None:
            x = torch.gather(x, 1, index[:, :, None].expand(-1, -1, x.shape[-1]))
        x = tower.post_layernorm(tower.encoder(inputs_embeds=x).last_hidden_state)
        return self.head(x)


def evaluate(model, val, w, h):
    """(patch accuracy whole view, patch accuracy in the window, images all right) on the held-out views."""
    right_full = right_win = total = total_win = whole = 0
    model.eval()
    with torch.no_grad():
        for px, t in val:
            on = t > 0
            pred = model.logits(px)[0].argmax(-1)
            ok = pred[on] == t[on]
            right_full += int(ok.sum())
            total += int(on.sum())
            whole += bool(ok.all())
            idx = window_index(*place(int(on.nonzero()[0]), w, h, 1, 1), w, h)
            tw = t[idx]
            pw = model.logits(px, idx[None])[0].argmax(-1)
            right_win += int((pw[tw > 0] == tw[tw > 0]).sum())
            total_win += int((tw > 0).sum())
    model.train()
    return right_full / max(total, 1), right_win / max(total_win, 1), whole / len(val)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=24000, help="training windows (one an image)")
    ap.add_argument("--window", default="12x4", help="W x H patches")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--offset", type=int, default=500000, help="first training image (as run ocr-fresh)")
    ap.add_argument("--val", type=int, default=200, help="held-out images")
    ap.add_argument("--eval-every", type=int, default=3200)
    ap.add_argument("--init", help="an mmproj GGUF whose tower to start from (default: fresh)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", help="JSON lines of the evaluations")
    ap.add_argument("--save", help="at the end, a train.py-style checkpoint (tower, a fresh projector, the heads with "
                    "this dense head; relative to the train cache) that `train.py --init` and `row_oracle.py --mmproj` "
                    "take")
    args = ap.parse_args()
    w, h = (int(v) for v in args.window.split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(train.SEED)
    rng = random.Random(train.SEED)
    model = Reader()
    if args.init:
        model.vision.vit.load_state_dict(export_mmproj.load_vision_gguf(args.init).vit.state_dict())
    weight = train.dense_class_weight()
    val = [sample_view("val", i) for i in range(args.val)]
    val = [(px, t) for px, t in val if (t > 0).any()]
    opt = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.0)
    steps = args.windows // args.batch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 10) * max(0.1, 1 - k / steps))
    out = open(args.out, "a") if args.out else None
    cpu0, seen, image = time.process_time(), 0, args.offset
    tally = [0, 0]
    for step in range(steps):
        pixels, index, target = [], [], []
        while len(pixels) < args.batch:
            px, t = sample_view("train", image)
            image += 1
            chars = (t > 0).nonzero()[:, 0].tolist()
            if not chars:
                continue
            idx = window_index(*place(rng.choice(chars), w, h, rng.randrange(h), rng.randrange(w)), w, h)
            pixels.append(px)
            index.append(idx)
            target.append(t[idx])
        logits = model.logits(torch.cat(pixels), torch.stack(index))
        target = torch.stack(target)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), weight=weight)
        on = target > 0
        tally[0] += int((logits.argmax(-1)[on] == target[on]).sum())
        tally[1] += int(on.sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        seen += args.batch
        if seen % args.eval_every < args.batch or step == steps - 1:
            full, win, whole = evaluate(model, val, w, h)
            rec = {"windows": seen, "images": image - args.offset, "cpu_s": round(time.process_time() - cpu0, 1),
                   "train_patch": round(tally[0] / max(tally[1], 1), 4), "val_patch_full_view": round(full, 4),
                   "val_patch_window": round(win, 4), "val_images_all_right": round(whole, 4)}
            tally = [0, 0]
            print(json.dumps(rec), flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
    if args.save:
        save(model, args.save)


def save(model, path):
    """The tower with a projector initialised as train.py's (output scaled to SmolLM2's embeddings) and stage 0's
    heads (fresh, but for the dense head trained here), as a checkpoint `train.py --init` resumes from."""
    path = vlm.cache_path(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    train.scale_fresh_projector(model.vision.proj)
    heads = train.AttributeHeads(vlm.VIT["hidden"])
    heads.dense = model.head
    torch.save({"model": model.vision.state_dict(), "heads": heads.state_dict()}, path + ".part")
    os.replace(path + ".part", path)


if __name__ == "__main__":
    main()
