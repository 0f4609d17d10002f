#!/usr/bin/env python3
"""Train the edgevl demo model (docs/training.md): the paper's recipe on the synthetic tasks.

    nice -n 10 /root/venv-ref/bin/python scripts/train/train.py --run main            # the shipped model
    nice -n 10 /root/venv-ref/bin/python scripts/train/train.py --run abl-internvl \\
        --init main/stage1.pt --s0 0 --s1 0 --s2 300 --strategy internvl --max-tiles 16  # an ablation arm

Stages (each a number of training images; every image carries all its questions, which share
the image prefix in one sequence):
  0. the ViT alone with attribute heads (colour x shape presence, count, sign characters, highest
     and lowest bar) on single 384x384 views of small images; no LLM, cheap;
  1. the projector alone (ViT and LLM frozen) on single 384x384 views of small images, LR 1e-3;
  2. ViT + projector with the tiling strategy (relaxed, at most 9 tiles), full-size images.
The LLM (SmolLM2-135M-Instruct Q4_1, dequantised) is frozen throughout. Everything is seeded;
samples are functions of their index, so a stopped run resumes from its last checkpoint
(${EDGEVL_CACHE:-~/.cache/edgevl}/train/RUN/last.pt) exactly where it stopped. Each stage's end
is kept as stageN.pt. A log line a step goes to RUN/log.jsonl (losses, CPU and wall seconds).
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

SEED = 17
CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MAX_CHARS = 6
COLOUR_LIST = list(data.COLOURS)
PAIRS = [(c, s) for c in COLOUR_LIST for s in data.SHAPES]


class AttributeHeads(torch.nn.Module):
    """Stage 0's cheap objective: learned queries attend over the ViT's patch features."""

    def __init__(self, d):
        super().__init__()
        self.groups = {"pairs": (len(PAIRS), 1), "count": (1, 6), "chars": (len(COLOUR_LIST) * MAX_CHARS, len(CHARS) + 1),
                       "bars": (2, len(data.LETTERS)), "task": (1, len(data.TASKS))}
        n = sum(q for q, _ in self.groups.values())
        self.queries = torch.nn.Parameter(0.02 * torch.randn(n, d))
        self.attn = torch.nn.MultiheadAttention(d, 4, batch_first=True)
        self.norm = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d))
        self.out = torch.nn.ModuleDict({k: torch.nn.Linear(d, c) for k, (_, c) in self.groups.items()})

    def forward(self, feats):
        q = self.queries[None].expand(feats.shape[0], -1, -1)
        h, _ = self.attn(q, feats, feats)
        h = h + self.mlp(self.norm(h))
        out, at = {}, 0
        for k, (nq, _) in self.groups.items():
            out[k] = self.out[k](h[:, at:at + nq])
            at += nq
        return out


def attribute_targets(task, meta, present_only=False):
    """Stage 0's targets; `present_only`: the character slots of sign colours not in the image are ignored (the loss
    reads only the signs there are, whose blanks after the text still count)."""
    blank = -100 if present_only else len(CHARS)
    t = {"pairs": torch.zeros(len(PAIRS)), "count": torch.tensor(-100), "bars": torch.full((2,), -100),
         "chars": torch.full((len(COLOUR_LIST) * MAX_CHARS,), blank), "task": torch.tensor(data.TASKS.index(task))}
    if task == "shapes":
        for o in meta["objects"]:
            t["pairs"][PAIRS.index((o["colour"], o["shape"]))] = 1.0
        t["count"] = torch.tensor(len(meta["objects"]))
    elif task == "ocr":
        for text, colour in zip(meta["texts"], meta["sign_colours"]):
            k = COLOUR_LIST.index(colour)
            t["chars"][k * MAX_CHARS:(k + 1) * MAX_CHARS] = len(CHARS)
            for j, ch in enumerate(text[:MAX_CHARS]):
                t["chars"][k * MAX_CHARS + j] = CHARS.index(ch)
    else:
        vals, labels = meta["values"], meta["labels"]
        t["bars"] = torch.tensor([data.LETTERS.index(labels[vals.index(max(vals))]),
                                  data.LETTERS.index(labels[vals.index(min(vals))])])
    return t


def char_patch_targets(img, meta):
    """The class of each of the single view's 27 x 27 patches (stage 0, one tile, no global view): the sign
    character whose box holds the patch's centre (1 + its index in CHARS), else 0."""
    cols, rows, _, _, rw, rh, ox, oy, global_view, _ = vlm.plan(img.width, img.height, "relaxed", 1)
    assert (cols, rows, global_view) == (1, 1, 0), "one tile expected"
    sx, sy = rw / img.width, rh / img.height
    t = torch.zeros(vlm.GRID * vlm.GRID, dtype=torch.long)
    for ch, x0, y0, x1, y1 in data.char_boxes(meta):
        # The patches whose centres ((c + 0.5) * 14, (r + 0.5) * 14) in the view fall in the box.
        c0, c1 = (ox + sx * x0) / vlm.PATCH - 0.5, (ox + sx * x1) / vlm.PATCH - 0.5
        r0, r1 = (oy + sy * y0) / vlm.PATCH - 0.5, (oy + sy * y1) / vlm.PATCH - 0.5
        for r in range(max(0, math.ceil(r0)), min(vlm.GRID - 1, math.floor(r1)) + 1):
            for c in range(max(0, math.ceil(c0)), min(vlm.GRID - 1, math.floor(c1)) + 1):
                t[r * vlm.GRID + c] = 1 + CHARS.index(ch)
    return t


def dense_head():
    """Stage 0's per-patch character classifier (`--dense-chars`): no character, or one of CHARS."""
    return torch.nn.Linear(vlm.VIT["hidden"], 1 + len(CHARS))


def dense_class_weight():
    """Cross-entropy weights of the dense classes: most patches hold no character, so that class weighs 0.05."""
    w = torch.ones(1 + len(CHARS))
    w[0] = 0.05
    return w


def scale_fresh_projector(proj):
    """A fresh projector's output scaled to about the size of SmolLM2's token embeddings (std 0.14)."""
    with torch.no_grad():
        proj.fc2.weight.mul_(0.3)
        proj.fc2.bias.zero_()


def attribute_loss(out, tg):
    loss = F.binary_cross_entropy_with_logits(out["pairs"][:, :, 0], tg["pairs"])
    loss = loss + F.cross_entropy(out["task"][:, 0], tg["task"])
    if (tg["count"] >= 0).any():
        loss = loss + F.cross_entropy(out["count"][:, 0], tg["count"], ignore_index=-100)
    if (tg["bars"] >= 0).any():
        loss = loss + F.cross_entropy(out["bars"].flatten(0, 1), tg["bars"].flatten(), ignore_index=-100)
    if (tg["chars"] >= 0).any():
        loss = loss + F.cross_entropy(out["chars"].flatten(0, 1), tg["chars"].flatten(), ignore_index=-100)
    return loss


def task_of(tasks, index):
    """Training images cycle through `tasks` (a task may be listed twice to weigh it double)."""
    return tasks[index % len(tasks)]


def stage_of(args, n):
    """(stage, index within it) of the run's n-th training image."""
    for s, budget in enumerate([args.s0, args.s1, args.s2]):
        if n < budget:
            return s, n
        n -= budget
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run name (folder under the train cache)")
    ap.add_argument("--s0", type=int, default=2000, help="stage 0 images (ViT + attribute heads)")
    ap.add_argument("--s1", type=int, default=1000, help="stage 1 images (projector only, single view)")
    ap.add_argument("--s2", type=int, default=250, help="stage 2 images (ViT + projector, tiled)")
    ap.add_argument("--batch", type=int, default=4, help="images per optimiser step")
    ap.add_argument("--strategy", default="relaxed", choices=["relaxed", "llava-next", "internvl"])
    ap.add_argument("--max-tiles", type=int, default=9)
    ap.add_argument("--init", help="start from this checkpoint (relative to the train cache), e.g. main/stage1.pt, "
                    "or from an mmproj GGUF written by export_mmproj.py (tower and projector; fresh stage-0 heads)")
    ap.add_argument("--fresh-projector", action="store_true",
                    help="with --init FILE.gguf: take the tower only, the projector starts anew")
    ap.add_argument("--tasks", default="shapes,ocr,chart,ocr",
                    help="the tasks training images cycle through (comma-separated; repeat one to weigh it more)")
    ap.add_argument("--offset", type=int, default=0,
                    help="index of the run's first training image; every image of a run is a new one")
    ap.add_argument("--lr1", type=float, default=1e-3, help="stage 1's learning rate (the projector)")
    ap.add_argument("--decay-to", type=float, default=0.1,
                    help="each stage's LR decays linearly to this fraction of its peak (1: flat after warm-up)")
    ap.add_argument("--per-question-loss", action="store_true",
                    help="mean of each question's answer loss, not of all answer tokens (one-word answers weigh "
                    "as much as long ones)")
    ap.add_argument("--chars-present-only", action="store_true",
                    help="stage 0: the sign-character loss reads only the colours of the signs in the image (without it, "
                    "the slots of absent colours, blank, outweigh the characters 6 to 1 and the head learns 'blank')")
    ap.add_argument("--dense-chars", action="store_true",
                    help="stage 0: also classify each patch of a sign image as the character under its centre (dense "
                    "labels from the rendered text's metrics), a local reading objective")
    ap.add_argument("--llm-dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="the frozen LLM's compute type while training (evaluation is float32)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two threads cost 6x the CPU time)")
    ap.add_argument("--ckpt-every", type=int, default=10, help="steps between checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = os.path.join(vlm.TRAIN_CACHE, args.run)
    os.makedirs(run_dir, exist_ok=True)
    last = os.path.join(run_dir, "last.pt")

    tasks = args.tasks.split(",")
    if any(t not in data.TASKS for t in tasks):
        ap.error(f"--tasks: each of {data.TASKS}")
    torch.manual_seed(SEED)
    random.seed(SEED)
    model = vlm.Vision()
    heads = AttributeHeads(vlm.VIT["hidden"])
    if args.dense_chars:  # stage 0's per-patch character classes, in the heads' state so a resumed run keeps them
        heads.dense = dense_head()
    dense_weight = dense_class_weight()
    scale_fresh_projector(model.proj)
    done, cpu0, wall0 = 0, 0.0, 0.0
    opt_state = None
    if os.path.exists(last):
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        heads.load_state_dict(ck["heads"])
        done, cpu0, wall0, opt_state = ck["done"], ck["cpu_s"], ck["wall_s"], ck["opt"]
        print(f"resuming {args.run} at image {done}", file=sys.stderr)
    elif args.init and args.init.endswith(".gguf"):
        loaded = export_mmproj.load_vision_gguf(args.init)
        model.vit.load_state_dict(loaded.vit.state_dict())
        if not args.fresh_projector:
            model.proj.load_state_dict(loaded.proj.state_dict())
        print(f"{args.run}: tower {'' if args.fresh_projector else 'and projector '}from {args.init}", file=sys.stderr)
    elif args.init:
        ck = torch.load(os.path.join(vlm.TRAIN_CACHE, args.init), weights_only=False)
        model.load_state_dict(ck["model"])
        # A checkpoint of a run without --dense-chars has no dense head: it starts anew.
        missing, unexpected = heads.load_state_dict(ck["heads"], strict=False)
        if unexpected or any(not k.startswith("dense.") for k in missing):
            raise SystemExit(f"{args.init}: heads do not match (missing {missing}, unexpected {unexpected})")
        print(f"{args.run}: initialised from {args.init}", file=sys.stderr)
    json.dump(vars(args), open(os.path.join(run_dir, "args.json"), "w"), indent=1)

    llm = prompter = None
    total = args.s0 + args.s1 + args.s2
    log = open(os.path.join(run_dir, "log.jsonl"), "a")
    t_cpu, t_wall = time.process_time(), time.time()
    opt, opt_stage = None, None
    while done < total:
        stage, idx = stage_of(args, done)
        if opt_stage != stage:
            if stage == 0:
                params = [{"params": list(model.vit.parameters()) + list(heads.parameters()), "lr": 1e-3}]
            elif stage == 1:
                params = [{"params": model.proj.parameters(), "lr": args.lr1}]
            else:
                params = [{"params": model.proj.parameters(), "lr": 2e-4}, {"params": model.vit.parameters(), "lr": 1e-4}]
            opt = torch.optim.AdamW(params, weight_decay=0.0)
            steps = getattr(args, f"s{stage}") // args.batch
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k, n=max(steps, 1): min(1.0, (k + 1) / 10) * max(args.decay_to, 1 - k / n))
            if opt_state is not None and opt_state.get("stage") == stage:
                opt.load_state_dict(opt_state["opt"])
                sched.load_state_dict(opt_state["sched"])
            opt_stage = stage
            if stage >= 1 and llm is None:
                llm = vlm.load_llm(getattr(torch, args.llm_dtype))
                prompter = vlm.Prompter()
        model.vit.train(stage != 1)
        for p in model.vit.parameters():
            p.requires_grad_(stage != 1)
        n = min(args.batch, getattr(args, f"s{stage}") - idx)
        stats = {"loss": 0.0, "acc": 0.0, "tokens": 0, "first": {}}
        for j in range(n):
            i = args.offset + done + j
            task = task_of(tasks, i)
            img, qas, meta = data.sample("train", task, i, small=stage < 2)
            if stage == 0:
                px = vlm.views(img, "relaxed", 1)
                tg = attribute_targets(task, meta, args.chars_present_only)
                feats = model.features(px)
                out = heads(feats)
                loss = attribute_loss(out, {k: v[None] for k, v in tg.items()})
                acc = 0.0
                if task == "ocr" and args.dense_chars:
                    pt = char_patch_targets(img, meta)
                    logits = heads.dense(feats[0])
                    loss = loss + F.cross_entropy(logits, pt, weight=dense_weight)
                    on = pt > 0  # the patches on a character, and how many of them are read right
                    tally = stats["first"].setdefault("patch", [0, 0])
                    tally[0] += int((logits.argmax(-1)[on] == pt[on]).sum())
                    tally[1] += int(on.sum())
                if task == "ocr":  # signs whose every character slot (and the blanks after it) is read right
                    slots = (out["chars"][0].argmax(-1) == tg["chars"]).reshape(len(COLOUR_LIST), MAX_CHARS)
                    tally = stats["first"].setdefault("read", [0, 0])
                    for colour in meta["sign_colours"]:
                        tally[0] += int(slots[COLOUR_LIST.index(colour)].all())
                        tally[1] += 1
            else:
                px = vlm.views(img, args.strategy if stage == 2 else "relaxed", args.max_tiles if stage == 2 else 1)
                if stage == 1:
                    with torch.no_grad():
                        feats = model.features(px)
                    rows = model.proj(vlm.merge_2x2(feats)).reshape(-1, vlm.LLM_DIM)
                else:
                    rows = model(px)
                loss, acc, firsts = vlm.qa_loss(llm, prompter, rows.to(getattr(torch, args.llm_dtype)), qas,
                                                args.per_question_loss)
                stats["tokens"] += rows.shape[0]
                for qa, hit in zip(qas, firsts):  # per question type: [first answer tokens right, questions]
                    tally = stats["first"].setdefault(qa["type"], [0, 0])
                    tally[0] += int(hit)
                    tally[1] += 1
            (loss / n).backward()
            stats["loss"] += loss.item() / n
            stats["acc"] += acc / n
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        done += n
        cpu = cpu0 + time.process_time() - t_cpu
        wall = wall0 + time.time() - t_wall
        rec = {"done": done, "stage": stage, "lr": sched.get_last_lr()[0], **stats,
               "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        step = done // args.batch
        stage_end = stage_of(args, done)[0] != stage
        if step % args.ckpt_every == 0 or stage_end or done >= total:
            ck = {"model": model.state_dict(), "heads": heads.state_dict(), "done": done, "cpu_s": cpu,
                  "wall_s": wall, "opt": {"stage": stage, "opt": opt.state_dict(), "sched": sched.state_dict()},
                  "args": vars(args)}
            torch.save(ck, last + ".part")
            os.replace(last + ".part", last)
            if stage_end or done >= total:
                torch.save(ck, os.path.join(run_dir, f"stage{stage}.pt"))
    print(f"{args.run}: done ({done} images)", file=sys.stderr)


if __name__ == "__main__":
    main()
