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
  charphrase  the same with the text one token per character ("S", "T", "O", "P").
  charcells   each character's token at the cell of its centre, the frame ' red sign says "' in the cells before.
  charcells-bare  the characters' tokens only, no frame.
  paircells   the characters whose centres share a cell as one token where the vocabulary has one, framed.
--write (how a written row takes its word E, the shipped row of that cell R): replace (E), add:S (R + S E),
  mix:F (E + F R), scaled:S,F (S E + F R).
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


def frame_tokens(pr, colour):
    """(opening, closing) token lists of the caption frame around a sign's text: ' red sign says "' and '".'."""
    return pr.encode(f' {colour} sign says "'), pr.encode('".')


def sign_words(pr, img, meta, layout, lower=False):
    """[(row index, token id)] for each sign, in reading order, as `--words layout` writes it: `cells` its colour and
    text tokens from its text's first character's cell, a cell each; `phrase` / `charphrase` the caption fragment
    from three cells before that (the text as the tokeniser cuts it / a token per character); `charcells` /
    `paircells` / `charcells-bare` the text at the cells of its characters (`text_at_cells`), framed or not;
    `lower`: the text in lower case (the answers are compared case-blind, and a common word in lower case is one
    token of the vocabulary where its capitals are several)."""
    sx, sy, ox, oy = to_view(img)
    boxes = data.char_boxes(meta)
    out, k = [], 0
    for text, colour in zip(meta["texts"], meta["sign_colours"]):
        chars = boxes[k:k + len(text)]
        k += len(text)
        if lower:
            text, chars = text.lower(), [(ch.lower(), *box) for ch, *box in chars]
        if layout in ("charcells", "charcells-bare", "paircells"):
            centres = [cell(ox + (x0 + x1) / 2 * sx, oy + (y0 + y1) / 2 * sy) for _, x0, y0, x1, y1 in chars]
            cells = text_at_cells(pr, [ch for ch, *_ in chars], [i * CELLS + j for i, j in centres],
                                  layout == "paircells")
            frame, close = frame_tokens(pr, colour) if layout != "charcells-bare" else ([], [])
            first, end = cells[0][0] - len(frame), cells[-1][0] + 1
            out += [(first + n, t) for n, t in enumerate(frame) if first + n >= 0]
            out += [(r, t) for r, t in cells if r < CELLS * CELLS]
            out += [(end + n, t) for n, t in enumerate(close) if end + n < CELLS * CELLS]
            continue
        _, x0, y0, _, y1 = chars[0]
        i, j = cell(ox + x0 * sx, oy + (y0 + y1) / 2 * sy)
        if layout == "charphrase":
            # The text as one token per character: a segmentation the tokeniser never makes itself, but one a
            # vision side reading character by character could write.
            frame, close = frame_tokens(pr, colour)
            seq = frame + [t for ch in text for t in pr.encode(ch)] + close
            start = i * CELLS + max(0, j - 3)
        elif layout == "phrase":
            seq = pr.encode(f' {colour} sign says "{text}".')
            start = i * CELLS + max(0, j - 3)
        else:
            seq = [first_token(pr, " " + colour)] + [t for t in pr.encode(" " + text) if pr.tok.decode([t]).strip()]
            start = i * CELLS + max(0, j - 1)
        out += [(start + n, t) for n, t in enumerate(seq) if start + n < CELLS * CELLS]
    return out


def text_at_cells(pr, chars, rows, pairs):
    """[(row, token)] of a text whose characters' centres lie in `rows`, where a reader of the view would write
    them: each character's tokens at its row, or (`pairs`) the characters sharing a row as one string's tokens
    (one token where the vocabulary has it); a token whose row an earlier one took goes to the next row, the rest
    of the text moved on with it (counted in `SHIFTED`)."""
    groups = []  # (row, string) in reading order
    for ch, r in zip(chars, rows):
        if pairs and groups and groups[-1][0] == r:
            groups[-1] = (r, groups[-1][1] + ch)
        else:
            groups.append((r, ch))
    out = []
    for r, string in groups:
        for t in pr.encode(string):
            if out and r <= out[-1][0]:
                r = out[-1][0] + 1
                SHIFTED[0] += 1
            SHIFTED[1] += 1
            out.append((r, t))
    return out


SHIFTED = [0, 0]  # `text_at_cells`: text tokens moved a cell on (their cell taken), text tokens placed


def row_hits(pr, model, emb, items, words_of):
    """How many of the rows `words_of(img, meta)` names have their target as the nearest token (cosine) in
    `model`'s rows, split into the text's rows (a token of letters or digits only) and the others (the frame)."""
    unit = torch.nn.functional.normalize(emb, dim=-1)
    hits = {"text": [0, 0], "frame": [0, 0]}
    for img, _, meta in items:
        with torch.no_grad():
            rows = torch.nn.functional.normalize(model(vlm.views(img, "relaxed", 1)), dim=-1)
        for r, t in words_of(img, meta):
            h = hits["text" if pr.tok.decode([t]).isalnum() else "frame"]
            h[0] += int((rows[r] @ unit.T).argmax().item() == t)
            h[1] += 1
    return {k: f"{a}/{b}" for k, (a, b) in hits.items()}


ORACLE_TYPES = ("colour", "shape", "count")  # the shapes questions whose answer a caption of the objects holds


def val_images(task, n):
    """[(image, questions, metadata)] of the first `n` held-out (val) images of `task`, small, one view each; for
    shapes, the questions of `ORACLE_TYPES` only."""
    out = []
    for i in range(n):
        img, qs, meta = data.sample("val", task, i, small=True)
        out.append((img, [q for q in qs if task != "shapes" or q["type"] in ORACLE_TYPES], meta))
    return out


def written(how, row, word):
    """A written row: `replace` the word's embedding; `add:S` the computed row plus S times it; `mix:E` the word's
    embedding plus E times the computed row (what is left of it when a gate leaves a fraction E open); `scaled:S,E`
    S times the embedding plus E times the row."""
    if how == "replace":
        return word
    kind, s = how.split(":", 1)
    if kind == "scaled":
        scale, e = (float(v) for v in s.split(","))
        return scale * word + e * row
    return row + float(s) * word if kind == "add" else word + float(s) * row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["shapes", "ocr"], required=True)
    ap.add_argument("--words", choices=["cells", "phrase", "charphrase", "charcells", "charcells-bare", "paircells"],
                    default="cells")
    ap.add_argument("--lower", action="store_true", help="signs: write the text in lower case")
    ap.add_argument("--rest", choices=["shipped", "blank", "none"], default="shipped")
    ap.add_argument("--write", default="replace",
                    help="how a written row takes its word: replace (the word's embedding), add:S (the computed "
                    "row plus S times the word's embedding), mix:E (the word's embedding plus E times the row), "
                    "scaled:S,E (S times the word's embedding plus E times the row)")
    ap.add_argument("--images", type=int, default=100, help="held-out (val) images, small, one view each")
    ap.add_argument("--mmproj", default=SHIPPED)
    ap.add_argument("--row-hits", action="store_true",
                    help="ask nothing: count the rows --words names whose nearest token is their word in --mmproj's "
                    "rows (text and frame apart; with charcells / paircells also how many text tokens moved a cell on)")
    ap.add_argument("-o", "--out", help="write the answers here (JSON)")
    a = ap.parse_args()
    if a.words != "cells" and a.task != "ocr":
        ap.error(f"--words {a.words} is for --task ocr")
    torch.set_num_threads(1)
    model = export_mmproj.load_vision(a.mmproj)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    emb = llm.p("model.embed_tokens.weight")
    if a.row_hits:
        hits = row_hits(pr, model, emb, val_images(a.task, a.images),
                        lambda img, meta: sign_words(pr, img, meta, a.words, a.lower) if a.task == "ocr"
                        else shape_words(pr, img, meta))
        print(json.dumps({"mmproj": a.mmproj, "words": a.words, "lower": a.lower, "images": a.images,
                          "nearest_token_hits": hits,
                          "text_tokens_moved_a_cell": f"{SHIFTED[0]}/{SHIFTED[1]}"}))
        return
    tally, rows_out, t0 = {}, [], time.time()
    for i, (img, qs, meta) in enumerate(val_images(a.task, a.images)):
        with torch.no_grad():
            rows = model(vlm.views(img, "relaxed", 1)).clone()
        if a.rest == "blank":
            rows[:] = emb[first_token(pr, " ")]
        if a.rest != "none":
            words = shape_words(pr, img, meta) if a.task == "shapes" else sign_words(pr, img, meta, a.words, a.lower)
            for r, t in words:
                rows[r] = written(a.write, rows[r], emb[t])
        answers = vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], 12)
        for q, ans in zip(qs, answers):
            data.tally(tally, q, ans)
            rows_out.append({"index": i, "question": q["question"], "answer": q["answer"], "llm": ans})
        print(f"{i + 1} images, {time.time() - t0:.0f} s", file=sys.stderr, end="\r")
    summary = {"task": a.task, "words": a.words, "lower": a.lower, "rest": a.rest, "write": a.write,
               "images": a.images, "per_type": tally}
    print(json.dumps(summary))
    for r in rows_out[:4]:
        print(f"  {r['question']!r} -> {r['llm']!r} (truth {r['answer']!r})", file=sys.stderr)
    if a.out:
        json.dump({**summary, "rows": rows_out}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
