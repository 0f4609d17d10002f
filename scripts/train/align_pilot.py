#!/usr/bin/env python3
"""Pilot (docs/training.md, "Words in the image rows"): can the projector learn to write each object's words into
the image rows as the frozen SmolLM2's own token embeddings, which `row_oracle.py` shows the LLM reads?

The shipped model's ViT carries colours (a linear probe reads them at 97%) but its answers are at chance: the
projector learnt "answer with a colour word", not which one. This script trains the projector (and with
`--train-vit` the ViT) with no LLM in the loop, so a sample costs a ViT pass: on a shapes image, the 2x2-merged row
at an object's centre -> the embedding of its colour word (" red"), the next row -> its shape word (" triangle"),
the rows `row_oracle.py --words cells` fills; every other row -> one filler token's embedding, or the shipped
projector's own row (`--filler keep`), or free. Then it asks the frozen LLM the held-out (val) colour / shape /
count questions with the starting projector (`--init`, the shipped one by default) and with the trained one, on
the same images, and prints strict and lenient scores per type. With `--task ocr` the targets are each sign's
caption fragment (` red sign says "STOP".`, a token a row from three cells before its text, `row_oracle.py --words
phrase`) and the questions the signs'; `--words charcells` writes each character's own token at the cell of its
centre instead, the frame ' red sign says "' in the cells before the first (`row_oracle.py --words charcells`).

    /root/venv-ref/bin/python scripts/train/align_pilot.py --images 3000 --filler keep --rest-weight 0.2 --threads 1
"""

import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402
from row_oracle import SHIPPED, first_token, shape_words, sign_words, val_images  # noqa: E402

def targets(llm, words, filler, rest, rest_weight):
    """(target embeddings [n_rows, 576], weights [n_rows]) for one image's rows: the object cells' words; the
    other rows the filler token's embedding, or `rest` (the starting projector's rows) when `filler` is "keep",
    or free (weight 0) when it is None."""
    emb = llm.p("model.embed_tokens.weight")
    n_rows = rest.shape[0]
    tgt = rest.clone() if filler == "keep" else torch.zeros(n_rows, emb.shape[1])
    w = torch.zeros(n_rows)
    if filler is not None:
        if filler != "keep":
            tgt[:] = emb[filler]
        w[:] = rest_weight
    for r, t in words:
        tgt[r] = emb[t]
        w[r] = 1.0
    return tgt, w


def score(llm, pr, model, items, label):
    """Greedy answers to the items' questions: strict, lenient and `contains` hits per type (`vqa_data.tally`)."""
    tally, examples, t0 = {}, [], time.time()
    for img, qs, _ in items:
        with torch.no_grad():
            rows = model(vlm.views(img, "relaxed", 1))
        answers = vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], 12)
        for q, a in zip(qs, answers):
            data.tally(tally, q, a)
            if len(examples) < 8:
                examples.append((q["question"], q["answer"], a))
    print(f"{label} ({time.time() - t0:.0f} s): " + ", ".join(
        f"{k} {t['strict']}/{t['lenient']}/{t['questions']}" for k, t in sorted(tally.items()))
        + "  (strict/lenient/questions)", file=sys.stderr)
    for e in examples:
        print(f"  {e}", file=sys.stderr)
    return tally


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default=SHIPPED, help="the mmproj (or train.py checkpoint) to start from")
    ap.add_argument("--task", choices=["shapes", "ocr"], default="shapes",
                    help="shapes: each object's colour and shape words at its cell; ocr: each sign's caption fragment "
                    "(' red sign says \"STOP\".', row_oracle.py --words phrase) in consecutive rows from its text")
    ap.add_argument("--words", choices=["phrase", "charcells", "paircells"], default="phrase",
                    help="--task ocr: the fragment as the tokeniser splits it in consecutive rows; or each character's "
                    "own token at the cell of its centre, framed (row_oracle.py --words charcells); or the characters "
                    "sharing a cell as one token where the vocabulary has one, framed (--words paircells)")
    ap.add_argument("--images", type=int, default=2000, help="training images (small, single view)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--filler", default=None,
                    help="a token every other row is pulled to; 'keep': the starting projector's rows (none: free)")
    ap.add_argument("--rest-weight", type=float, default=0.2, help="weight of each row that holds no word")
    ap.add_argument("--eval", type=int, default=150, help="held-out (val) images asked about, before and after")
    ap.add_argument("--offset", type=int, default=700000)
    ap.add_argument("--loss", choices=["regression", "nearest"], default="regression",
                    help="word rows: squared error to the word's embedding, or that plus the cross entropy of the row's "
                    "cosine similarity to every token's embedding (pushing to the nearest token, not a blend)")
    ap.add_argument("--train-vit", action="store_true", help="train the ViT too (at a tenth of --lr)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", help="save the trained tower + projector here (a train.py-style checkpoint)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(17)
    model = export_mmproj.load_vision(a.init)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    filler = a.filler if a.filler in (None, "keep") else first_token(pr, a.filler)
    start = copy.deepcopy(model.proj).requires_grad_(False)
    emb_unit = F.normalize(llm.p("model.embed_tokens.weight"), dim=-1) if a.loss == "nearest" else None

    items = val_images(a.task, a.eval)
    before = score(llm, pr, model, items, "starting projector")

    for p in model.vit.parameters():
        p.requires_grad_(a.train_vit)
    groups = [{"params": model.proj.parameters(), "lr": a.lr}]
    if a.train_vit:
        groups.append({"params": model.vit.parameters(), "lr": 0.1 * a.lr})
        model.vit.train()
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    t0, seen, run, obj = time.time(), 0, 0.0, 0.0
    while seen < a.images:
        loss = 0.0
        n = min(a.batch, a.images - seen)
        for j in range(n):
            img, _, meta = data.sample("train", a.task, a.offset + seen + j, small=True)
            with torch.set_grad_enabled(a.train_vit):
                feats = model.features(vlm.views(img, "relaxed", 1))
            merged = vlm.merge_2x2(feats)
            rows = model.proj(merged).reshape(-1, vlm.LLM_DIM)
            with torch.no_grad():
                rest = start(merged).reshape(-1, vlm.LLM_DIM)  # (with --train-vit, of the moving features)
            words = (shape_words(pr, img, meta) if a.task == "shapes"
                     else sign_words(pr, img, meta, a.words))
            on = [r for r, _ in words]
            tgt, w = targets(llm, words, filler, rest, a.rest_weight)
            err = ((rows - tgt) ** 2).sum(-1) / (tgt ** 2).sum(-1).clamp_min(1e-6)
            this = (err * w).sum() / w.sum().clamp_min(1.0)
            if a.loss == "nearest" and words:  # plus cross entropy of the word rows' cosine to every token
                logits = F.normalize(rows[on], dim=-1) @ emb_unit.T / 0.05
                this = this + F.cross_entropy(logits, torch.tensor([t for _, t in words]))
            loss = loss + this / n
            obj = 0.99 * obj + 0.01 * err[on].mean().item() if on else obj
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += n
        run = 0.9 * run + 0.1 * loss.item() if seen > n else loss.item()
        if (seen // n) % 25 == 0:
            print(f"{seen} images, loss {run:.3f}, word rows' relative error {obj:.3f}, {time.time() - t0:.0f} s",
                  file=sys.stderr)
    model.eval()
    after = score(llm, pr, model, items, "aligned projector")
    if a.out:
        torch.save({"model": model.state_dict(), "args": vars(a)}, a.out)
    print(json.dumps({"args": vars(a), "before": before, "after": after}))


if __name__ == "__main__":
    main()
