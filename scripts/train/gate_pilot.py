#!/usr/bin/env python3
"""Gated word rows for signs: can a trained vision side write the rows the frozen LLM copies? (docs/training.md,
"Gated word rows")

`row_oracle.py` showed the frozen SmolLM2 copies a sign's text when the rows of its cells hold the exact token
embeddings of the `paircells` layout (the frame ' red sign says "', the characters whose centres share a merged
cell as one token, '".'), with the shipped projector's rows around them (51 of 140 held-out questions), and that
the written rows must be nearly exact: the word's embedding plus 1% of the shipped row still gives 53, plus 3%
gives 1 (the shipped rows' norms are about 120, a token embedding's about 3).

So the rows are written by construction, not by regression. The demo's projector (LayerNorm, Linear, tanh GELU,
Linear) can hold, beside its 576 hidden units, two units per word class whose difference
`gelu(u) - gelu(u - 1)` is a step (0 for u <= -4, 1 for u >= 4.5, within 1e-3), with `u = s * l_j + c` for a
linear class logit `l_j` of the merged cell, and the word's embedding as their output columns (+E_j, -E_j): a
cell whose class fires gets `E_j` added, exactly. For the sum to be the embedding alone the shipped units must give
(nearly) nothing there: a merged feature exists where they do (the branch's row norm 0.12, 0.35 at 10% relative
noise around it), and the tower is trained to produce such features at the written cells.

Training (windows of `--window` cells around a sign, as `read_pilot.py`: the tower embeds the whole view and runs
its encoder on the window's patches only; small single-view sign images, plus windows of shapes and chart images):
the tower (from the shipped mmproj) and a linear class head on the projector's LayerNorm output, with
- the class logits by binary cross entropy (one-vs-rest: the step needs absolute margins), the cell's word or none;
- at written cells, the shipped branch's row norm (switch it off);
- elsewhere, the shipped branch's rows held to those of the shipped tower on the same window (relative error).
The shipped projector itself stays frozen. Evaluation on whole views of held-out (val) images: class accuracy of
the written cells, the branch's norm there, and the frozen LLM's greedy answers with the gated rows (strict score,
as `row_oracle.py`), for signs and for the shapes questions of `row_oracle.ORACLE_TYPES` (not to lose them).

    /root/venv-ref/bin/python scripts/train/gate_pilot.py --windows 32000 --threads 2 --save gate/g32k.pt
"""

import argparse
import copy
import json
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import row_oracle as ro  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

G, C = vlm.GRID, ro.CELLS
SEED = 17


def written_cells(pr, img, meta, layout):
    """{row: token} of a small sign image's single view in `layout` (`row_oracle.sign_words`; --layout)."""
    return dict(ro.sign_words(pr, img, meta, layout))


def class_vocab(pr, n, offset, layout):
    """The tokens the layout writes on `n` training sign images from `offset`, in first-seen order."""
    seen = {}
    for i in range(offset, offset + n):
        img, _, meta = data.sample("train", "ocr", i, small=True)
        for t in written_cells(pr, img, meta, layout).values():
            seen.setdefault(t, len(seen))
    return list(seen)


def step(u):
    """The step of two GELU units: gelu(u) - gelu(u - 1), as the exported projector computes it."""
    return F.gelu(u, approximate="tanh") - F.gelu(u - 1, approximate="tanh")


class Gate(torch.nn.Module):
    """The tower (trainable), the shipped projector (frozen) and a class head on the projector's LayerNorm output."""

    def __init__(self, shipped, n_class, softmax=False):
        super().__init__()
        self.vision = copy.deepcopy(shipped)
        for p in self.vision.proj.parameters():
            p.requires_grad_(False)
        self.softmax = softmax
        self.cls = torch.nn.Linear(4 * vlm.VIT["hidden"], n_class + int(softmax))
        torch.nn.init.zeros_(self.cls.weight)
        torch.nn.init.constant_(self.cls.bias, 0.0 if softmax else -4.0)

    def margin(self):
        """(weight, bias) of the linear class margins the steps take: the one-vs-rest logits, or (softmax head,
        logit 0 "none") each class's logit minus the "none" logit."""
        w, b = self.cls.weight, self.cls.bias
        return (w[1:] - w[:1], b[1:] - b[:1]) if self.softmax else (w, b)

    def margins(self, y):
        """The class margins of LayerNorm outputs y [..., 768] -> [..., classes]."""
        w, b = self.margin()
        return F.linear(y, w, b)

    def normed(self, pixels, windows=None):
        """The projector's LayerNorm output of each merged cell [n, cells, 768]: of the whole views, or of each
        view's window (r0, c0, h, w) in cells (all of one size, inside cells 0..12, so no padding patch) with the
        encoder on the window's patches only."""
        tower = self.vision.tower()
        x = tower.embeddings(pixels)
        if windows is None:
            f = tower.post_layernorm(tower.encoder(inputs_embeds=x).last_hidden_state)
            return self.vision.proj.norm(vlm.merge_2x2(f))
        _, _, h, w = windows[0]
        idx = torch.stack([(torch.arange(2 * r0, 2 * (r0 + h))[:, None] * G
                            + torch.arange(2 * c0, 2 * (c0 + w))[None, :]).reshape(-1) for r0, c0, _, _ in windows])
        x = torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[-1]))
        f = tower.post_layernorm(tower.encoder(inputs_embeds=x).last_hidden_state)
        n, d = f.shape[0], f.shape[-1]
        f = f.reshape(n, h, 2, w, 2, d).permute(0, 1, 3, 2, 4, 5).reshape(n, h * w, 4 * d)
        return self.vision.proj.norm(f)

    def branch(self, y):
        """The shipped projector's rows from its LayerNorm's outputs (`vlm.Projector.forward` after the norm)."""
        p = self.vision.proj
        return p.fc2(F.gelu(p.fc1(y), approximate="tanh"))


def window_of(rows, rng, h, w):
    """A window (r0, c0, h, w) in cells 0..12 holding the first written row's cell row in its middle and as many of
    the written cells of that row as fit; a random one when `rows` is empty."""
    last = C - 1  # cells 0..12: no padding patch
    if not rows:
        return rng.randrange(last - h + 1), rng.randrange(last - w + 1), h, w
    r = rows[0] // C
    cols = sorted(c % C for c in rows if c // C == r)
    r0 = min(max(0, r - h // 2), last - h)
    c0 = min(max(0, cols[0] - rng.randrange(2)), last - w)
    return r0, c0, h, w


def sample(pr, rng, vocab, image, window, tasks, layout):
    """(pixels, window, class target per window cell [cells] (0 none, j + 1 class j)) of training image `image`."""
    task = rng.choice(tasks)
    img, _, meta = data.sample("train", task, image, small=True)
    px = vlm.views(img, "relaxed", 1)
    cells = written_cells(pr, img, meta, layout) if task == "ocr" else {}
    rows = sorted(cells) if rng.random() < 0.85 else []
    r0, c0, h, w = window_of(rows, rng, *window)
    target = torch.zeros(h * w, dtype=torch.long)
    for i in range(h):
        for j in range(w):
            t = cells.get((r0 + i) * C + c0 + j)
            if t is not None and t in vocab:
                target[i * w + j] = vocab[t] + 1
    return px, (r0, c0, h, w), target


def losses(model, teacher, px, windows, target, n_class):
    """(class loss: one-vs-rest BCE or softmax cross entropy; branch row norm at written cells; relative row error
    elsewhere; class hits; written cells) of a batch: views [n, 3, 384, 384], their windows, class targets
    [n, cells]."""
    y = model.normed(px, windows)
    logits = model.cls(y)
    if model.softmax:
        cls_loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        logits = logits[..., 1:]
    else:
        onehot = F.one_hot(target, n_class + 1)[..., 1:].float()
        bce = F.binary_cross_entropy_with_logits(logits, onehot, pos_weight=torch.tensor(8.0), reduction="none")
        cls_loss = bce.sum(-1).mean()
    rows = model.branch(y)
    on = target > 0
    with torch.no_grad():
        ref = teacher.branch(teacher.normed(px, windows))
    off = rows[on].norm(dim=-1).mean() if on.any() else rows.sum() * 0
    keep = ((rows[~on] - ref[~on]).pow(2).sum(-1) / ref[~on].pow(2).sum(-1)).mean()
    hits = int((logits[on].argmax(-1) + 1 == target[on]).sum()) if on.any() else 0
    return cls_loss, off, keep, hits, int(on.sum())


def gated_rows(model, y, emb, scale, shift):
    """[cells, 576] from LayerNorm outputs y [cells, 768]: the shipped branch's rows plus each class's step times
    its row of `emb` (the class's embedding times --emb-scale)."""
    return model.branch(y) + step(scale * model.margins(y) + shift) @ emb


def evaluate(model, llm, pr, vocab_ids, args, answer):
    """Whole-view figures on held-out images: written cells' class hits (firing, and by the largest logit alone),
    branch norm there, rows firing where nothing is written; with `answer`, the frozen LLM's strict score on the
    signs and on the shapes questions. The steps as --scale and --shift set them."""
    scale, shift = args.scale, args.shift
    emb = args.emb_scale * llm.p("model.embed_tokens.weight")[torch.tensor(vocab_ids)]
    index = {t: j for j, t in enumerate(vocab_ids)}
    out = {"hits": 0, "argmax_hits": 0, "written": 0, "unknown": 0, "norm_written": 0.0, "false_fire": 0, "cells": 0}
    frame = {t for c in data.COLOURS for part in ro.frame_tokens(pr, c) for t in part}
    by_kind = {"frame": [0, 0], "digit": [0, 0], "word piece": [0, 0]}  # written cells right by the largest logit
    tally = {}
    model.eval()
    with torch.no_grad():
        for img, qs, meta in ro.val_images("ocr", args.val):
            px = vlm.views(img, "relaxed", 1)
            y = model.normed(px)[0]
            logits = model.margins(y)
            fire = step(scale * logits + shift)
            norms = model.branch(y).norm(dim=-1)
            cells = written_cells(pr, img, meta, args.layout)
            for r in range(C * C):
                t = cells.get(r)
                if t is None:
                    out["false_fire"] += int(fire[r].max() > 0.5)
                    out["cells"] += 1
                    continue
                out["written"] += 1
                out["norm_written"] += float(norms[r])
                if t not in index:
                    out["unknown"] += 1
                else:
                    right = int(logits[r].argmax() == index[t])
                    out["argmax_hits"] += right
                    kind = by_kind["frame" if t in frame else
                                   "digit" if pr.tok.decode([t]).strip().isdigit() else "word piece"]
                    kind[0] += right
                    kind[1] += 1
                    out["hits"] += int(fire[r].argmax() == index[t] and fire[r].max() > 0.5)
            if answer:
                rows = gated_rows(model, y, emb, scale, shift)
                for q, ans in zip(qs, vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], 12)):
                    data.tally(tally, q, ans)
        if answer:
            for img, qs, _ in ro.val_images("shapes", args.val):
                rows = gated_rows(model, model.normed(vlm.views(img, "relaxed", 1))[0], emb, scale, shift)
                for q, ans in zip(qs, vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], 12)):
                    data.tally(tally, q, ans)
    model.train()
    out["norm_written"] = round(out["norm_written"] / max(out["written"], 1), 3)
    out["argmax_by_kind"] = {k: f"{a}/{b}" for k, (a, b) in by_kind.items()}
    return {**out, "strict": {k: f"{v['strict']}/{v['questions']}" for k, v in tally.items()}}


def export(model, vocab_ids, llm, scale, shift, emb_scale, out, dtype):
    """Writes the gated model as an mmproj (`export_mmproj.write`): the tower, and a projector whose hidden layer is
    the shipped 576 units, then per class the two step units (`scale * l_j + shift` and that minus 1) with the
    class's embedding (times `emb_scale`) and its negation as output columns, padded with idle units (zero weights,
    bias -20) to a multiple of 32 (Q8_0 blocks)."""
    p, k = model.vision.proj, len(vocab_ids)
    hidden = -(-(p.fc1.out_features + 2 * k) // 32) * 32
    pad = hidden - p.fc1.out_features - 2 * k
    emb = emb_scale * llm.p("model.embed_tokens.weight")[torch.tensor(vocab_ids)]
    gated = vlm.Vision(attn="eager", proj_hidden=hidden)
    with torch.no_grad():
        gated.vit.load_state_dict(model.vision.vit.state_dict())
        gated.proj.norm.load_state_dict(p.norm.state_dict())
        w, b = model.margin()
        wc, bc = scale * w, scale * b + shift
        gated.proj.fc1.weight.copy_(torch.cat([p.fc1.weight, wc, wc, torch.zeros(pad, wc.shape[1])]))
        gated.proj.fc1.bias.copy_(torch.cat([p.fc1.bias, bc, bc - 1, torch.full((pad,), -20.0)]))
        gated.proj.fc2.weight.copy_(torch.cat([p.fc2.weight, emb.T, -emb.T, torch.zeros(vlm.LLM_DIM, pad)], 1))
        gated.proj.fc2.bias.copy_(p.fc2.bias)
    export_mmproj.write(gated.eval(), out, dtype, name="edgevl-demo-vision-gated")


def off_point(proj, steps=4000):
    """Is there a merged feature where the shipped projector writes (nearly) nothing? Adam on the feature for the
    smallest row norm, then the row norm with random noise of 1-30% of the feature's norm added (median of 200)."""
    for p in proj.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    x = torch.randn(1, 4 * vlm.VIT["hidden"], requires_grad=True)
    opt = torch.optim.Adam([x], 3e-2)
    for _ in range(steps):
        loss = proj(x).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = {"row_norm": round(float(proj(x).norm()), 3)}
        for eps in (0.01, 0.03, 0.1, 0.3):
            n = torch.randn(200, x.shape[1])
            n = n / n.norm(dim=1, keepdim=True) * eps * x.norm()
            out[f"noise_{eps}"] = round(float(proj(x + n).norm(dim=1).median()), 3)
    return out


def load_checkpoint(path, init):
    """(Gate model, class vocabulary, the layout it was trained on) of a --save checkpoint (absolute, or relative to
    the train cache); the frozen projector from the mmproj `init`, as in training."""
    ckpt = torch.load(vlm.cache_path(path), weights_only=False)
    model = Gate(export_mmproj.load_vision(init), len(ckpt["vocab"]), ckpt["args"].get("softmax", False))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt["vocab"], ckpt["args"].get("layout", "paircells")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=32000)
    ap.add_argument("--window", default="3x10", help="H x W merged cells")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--off-weight", type=float, default=0.02, help="weight of the branch's row norm at written cells")
    ap.add_argument("--keep-weight", type=float, default=5.0)
    ap.add_argument("--offset", type=int, default=800000, help="first training image")
    ap.add_argument("--vocab-images", type=int, default=4000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=8000)
    ap.add_argument("--scale", type=float, default=2.0, help="the step's u = scale * logit + shift")
    ap.add_argument("--shift", type=float, default=0.25)
    ap.add_argument("--emb-scale", type=float, default=1.0,
                    help="the written rows are this times the word's embedding (row_oracle.py --write scaled: x10 "
                    "tolerates a tenth of the shipped row left over, x1 a hundredth)")
    ap.add_argument("--no-answers", action="store_true", help="skip the frozen LLM's answers at the end")
    ap.add_argument("--softmax", action="store_true",
                    help="a softmax class head with a 'none' class (the steps take each class's logit minus none's)")
    ap.add_argument("--layout", choices=["paircells", "phrase", "charcells"], default="paircells",
                    help="the written cells when training (row_oracle.py --words); a checkpoint keeps its own")
    ap.add_argument("--init", default=ro.SHIPPED)
    ap.add_argument("--tower", help="a read_pilot.py --save checkpoint (relative to the train cache) whose tower the "
                    "trained model starts from; the frozen projector and the keep loss's teacher stay --init's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", help="the trained tower and head (relative to the train cache)")
    ap.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "OUT"),
                    help="train nothing: write a --save checkpoint as an mmproj GGUF (with --type)")
    ap.add_argument("--type", choices=["f32", "q8_0"], default="q8_0")
    ap.add_argument("--find-off-point", action="store_true", help="train nothing: print `off_point` for --init")
    ap.add_argument("--evaluate", metavar="CHECKPOINT", help="train nothing: evaluate a --save checkpoint")
    args = ap.parse_args()
    if args.evaluate:
        model, vocab_ids, args.layout = load_checkpoint(args.evaluate, args.init)  # the layout it was trained on
        print(json.dumps(evaluate(model, vlm.load_llm(torch.float32), vlm.Prompter(), vocab_ids, args,
                                  not args.no_answers)))
        return
    if args.find_off_point:
        print(json.dumps(off_point(export_mmproj.load_vision(args.init).proj)))
        return
    if args.export:
        ckpt, out = args.export
        model, vocab_ids, _ = load_checkpoint(ckpt, args.init)
        export(model, vocab_ids, vlm.load_llm(torch.float32), args.scale, args.shift, args.emb_scale, out, args.type)
        print(out, os.path.getsize(out), "bytes")
        return
    h, w = (int(v) for v in args.window.split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    pr, llm = vlm.Prompter(), vlm.load_llm(torch.float32)
    vocab_ids = class_vocab(pr, args.vocab_images, args.offset, args.layout)
    vocab = {t: j for j, t in enumerate(vocab_ids)}
    shipped = export_mmproj.load_vision(args.init)
    teacher = Gate(shipped, len(vocab_ids)).eval()
    model = Gate(shipped, len(vocab_ids), args.softmax)
    if args.tower:
        model.vision.vit.load_state_dict(export_mmproj.load_vision(args.tower).vit.state_dict())
    print(json.dumps({"classes": len(vocab_ids), "baseline": evaluate(teacher, llm, pr, vocab_ids, args, False)}),
          flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, args.lr, weight_decay=0.0)
    steps = args.windows // args.batch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 10) * max(0.1, 1 - k / steps))
    cpu0, image, tally = time.process_time(), args.offset, [0, 0, 0.0, 0.0, 0.0]
    tasks = ["ocr", "ocr", "shapes", "chart"]
    for k in range(steps):
        batch = []
        for _ in range(args.batch):
            batch.append(sample(pr, rng, vocab, image, (h, w), tasks, args.layout))
            image += 1
        px, windows, target = (list(v) for v in zip(*batch))
        cls_loss, off, keep, hits, n = losses(model, teacher, torch.cat(px), windows, torch.stack(target),
                                              len(vocab_ids))
        opt.zero_grad()
        (cls_loss + args.off_weight * off + args.keep_weight * keep).backward()
        tally[0] += hits
        tally[1] += n
        tally[2] += float(cls_loss.detach()) * args.batch
        tally[3] += float(off.detach()) * args.batch
        tally[4] += float(keep.detach()) * args.batch
        opt.step()
        sched.step()
        seen = (k + 1) * args.batch
        if seen % args.eval_every < args.batch or k == steps - 1:
            rec = {"windows": seen, "cpu_s": round(time.process_time() - cpu0), "train_hits":
                   f"{tally[0]}/{tally[1]}", "cls_loss": round(tally[2] / args.eval_every, 4),
                   "off": round(tally[3] / args.eval_every, 2), "keep": round(tally[4] / args.eval_every, 4),
                   "val": evaluate(model, llm, pr, vocab_ids, args, k == steps - 1 and not args.no_answers)}
            tally = [0, 0, 0.0, 0.0, 0.0]
            print(json.dumps(rec), flush=True)
            if args.save:
                path = vlm.cache_path(args.save)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                torch.save({"model": model.state_dict(), "vocab": vocab_ids, "args": vars(args)}, path + ".part")
                os.replace(path + ".part", path)


if __name__ == "__main__":
    main()
