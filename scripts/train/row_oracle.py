#!/usr/bin/env python3
"""What the frozen SmolLM2 answers when the image rows hold words (docs/training.md, "Words in the image rows").

An oracle for the vision side: instead of what the projector computes, chosen image rows hold the LLM's own token
embeddings of the image's contents, placed where the content is in the single 384 view (the 2x2-merged cell of a
shape's centre, of a sign's first character), and the frozen LLM answers the held-out (val) questions greedily.
It measures how far a vision side that wrote such rows could take this frozen LLM, without training anything.

--words:
  cells   shapes: the colour word at each object's centre cell and its shape word in the next cell;
          signs: the sign's colour word in the cell before its text, then the text's tokens, a cell each;
  phrase  signs only: the caption fragment ' red sign says "STOP".' in consecutive cells from its text's row.
--rest (the rows that hold no word):
  shipped the shipped projector's rows (the demo's answer-format bias kept); blank: the embedding of " ";
  none    no words at all: the shipped model as it is (the baseline).

    /root/venv-ref/bin/python scripts/train/row_oracle.py --task ocr --words phrase --rest shipped --images 100
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

CELLS = 14  # merged rows a side of a 384 view (27 patches + 1 padding, 2x2)
CELL_PX = 2 * 14
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../models/edgevl-demo/mmproj-q8_0.gguf")


def to_view(img):
    """(scale x, scale y, offset x, offset y) from image pixels to the single 384 view's pixels."""
    cols, rows, _, _, rw, rh, ox, oy, glob, _ = vlm.plan(img.width, img.height, "relaxed", 1)
    assert cols == rows == 1 and not glob, "the oracle works on single views (small images)"
    return rw / img.width, rh / img.height, ox, oy


def cell(vx, vy):
    """(row, column) of the merged cell holding view pixel (vx, vy)."""
    return min(int(vy // CELL_PX), CELLS - 1), min(int(vx // CELL_PX), CELLS - 1)


def first_token(pr, text):
    return pr.encode(text)[0]


def shape_words(pr, img, meta):
    """[(row index, token id)]: each object's colour word at its centre cell, its shape word in the next cell."""
    sx, sy, ox, oy = to_view(img)
    out = []
    for o in meta["objects"]:
        i, j = cell(ox + o["x"] * img.width * sx, oy + o["y"] * img.height * sy)
        out.append((i * CELLS + j, first_token(pr, " " + o["colour"])))
        if j + 1 < CELLS:
            out.append((i * CELLS + j + 1, first_token(pr, " " + o["shape"])))
    return out


def sign_words(pr, img, meta, phrase):
    """[(row index, token id)] for each sign: its colour and text tokens (or the caption phrase) from its text's
    first character's cell, a cell each, in reading order."""
    sx, sy, ox, oy = to_view(img)
    boxes = data.char_boxes(meta)
    out, k = [], 0
    for text, colour in zip(meta["texts"], meta["sign_colours"]):
        _, x0, y0, _, y1 = boxes[k]
        k += len(text)
        i, j = cell(ox + x0 * sx, oy + (y0 + y1) / 2 * sy)
        if phrase:
            seq = pr.encode(f' {colour} sign says "{text}".')
            start = i * CELLS + max(0, j - 3)
        else:
            seq = [first_token(pr, " " + colour)] + [t for t in pr.encode(" " + text) if pr.tok.decode([t]).strip()]
            start = i * CELLS + max(0, j - 1)
        out += [(start + n, t) for n, t in enumerate(seq) if start + n < CELLS * CELLS]
    return out


ORACLE_TYPES = ("colour", "shape", "count")  # the shapes questions whose answer a caption of the objects holds


def val_images(task, n):
    """[(image, questions, metadata)] of the first `n` held-out (val) images of `task`, small, one view each; for
    shapes, the questions of `ORACLE_TYPES` only."""
    out = []
    for i in range(n):
        img, qs, meta = data.sample("val", task, i, small=True)
        out.append((img, [q for q in qs if task != "shapes" or q["type"] in ORACLE_TYPES], meta))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["shapes", "ocr"], required=True)
    ap.add_argument("--words", choices=["cells", "phrase"], default="cells")
    ap.add_argument("--rest", choices=["shipped", "blank", "none"], default="shipped")
    ap.add_argument("--images", type=int, default=100, help="held-out (val) images, small, one view each")
    ap.add_argument("--mmproj", default=SHIPPED)
    ap.add_argument("-o", "--out", help="write the answers here (JSON)")
    a = ap.parse_args()
    if a.words == "phrase" and a.task != "ocr":
        ap.error("--words phrase is for --task ocr")
    torch.set_num_threads(1)
    model = export_mmproj.load_vision(a.mmproj)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    emb = llm.p("model.embed_tokens.weight")
    tally, rows_out, t0 = {}, [], time.time()
    for i, (img, qs, meta) in enumerate(val_images(a.task, a.images)):
        with torch.no_grad():
            rows = model(vlm.views(img, "relaxed", 1)).clone()
        if a.rest == "blank":
            rows[:] = emb[first_token(pr, " ")]
        if a.rest != "none":
            words = shape_words(pr, img, meta) if a.task == "shapes" else sign_words(pr, img, meta, a.words == "phrase")
            for r, t in words:
                rows[r] = emb[t]
        answers = vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], 12)
        for q, ans in zip(qs, answers):
            data.tally(tally, q, ans)
            rows_out.append({"index": i, "question": q["question"], "answer": q["answer"], "llm": ans})
        print(f"{i + 1} images, {time.time() - t0:.0f} s", file=sys.stderr, end="\r")
    summary = {"task": a.task, "words": a.words, "rest": a.rest, "images": a.images, "per_type": tally}
    print(json.dumps(summary))
    for r in rows_out[:4]:
        print(f"  {r['question']!r} -> {r['llm']!r} (truth {r['answer']!r})", file=sys.stderr)
    if a.out:
        json.dump({**summary, "rows": rows_out}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
