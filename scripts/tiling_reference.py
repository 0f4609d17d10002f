#!/usr/bin/env python3
"""Reference for edgevl's three tiling strategies (spec.md section 2).

Written from spec.md section 2 and the published code it names:
  * LLaVA-NeXT `select_best_resolution` / `resize_and_pad_image` (llava/mm_utils.py),
  * InternVL 1.5 `find_closest_aspect_ratio` / `dynamic_preprocess`,
  * BlueLM-V-3B's relaxed aspect-ratio matching (arXiv 2411.10640, section 3.1), as spec.md states it.
It shares no code with the Rust implementation. Run:

    python3 scripts/tiling_reference.py            # writes tests/fixtures/vision/tiling_cases.json

Fixture layout (compact, to keep the file small):
  "fields": names of the per-strategy plan fields, in order;
  "cases": [[w, h, max_tiles (0 = each strategy's published default), alpha,
             [relaxed fields...], [llava-next fields...], [internvl fields...]], ...]
"""
import json
import math
import os
import random
import statistics
import sys

TILE = 384
TOKENS_PER_TILE = 196
LLAVA_PINPOINTS = [(384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152)]  # (w, h)
INTERNVL_DEFAULT_MAX = 12
RELAXED_DEFAULT_MAX = 16
FIELDS = ["cols", "rows", "canvas_w", "canvas_h", "resize_w", "resize_h",
          "offset_x", "offset_y", "global_view", "tokens"]


class AmbiguousTie(Exception):
    """InternVL's published code iterates a Python set within equal i*j: an exact tie there is order dependent."""


def grids_by_area(max_tiles):
    """All (i, j) = (cols, rows) with 1 <= i*j <= max_tiles, ordered by i*j then i."""
    out = [(i, j) for i in range(1, max_tiles + 1) for j in range(1, max_tiles + 1) if i * j <= max_tiles]
    out.sort(key=lambda g: (g[0] * g[1], g[0]))
    return out


def resolutions(W, H, cw, ch):
    # As LLaVA-NeXT select_best_resolution.
    scale = min(cw / W, ch / H)
    dw, dh = int(W * scale), int(H * scale)
    effective = min(dw * dh, W * H)
    wasted = cw * ch - effective
    return effective, wasted


def select_best_resolution(W, H, possible):
    # LLaVA-NeXT, verbatim in logic.
    best_fit = None
    max_eff = 0
    min_wasted = float("inf")
    for (width, height) in possible:
        eff, wasted = resolutions(W, H, width, height)
        if eff > max_eff or (eff == max_eff and wasted < min_wasted):
            max_eff, min_wasted, best_fit = eff, wasted, (width, height)
    return best_fit


def select_relaxed(W, H, possible, alpha):
    # BlueLM-V-3B relaxed aspect ratio matching; the first candidate is the initial best.
    best_fit = possible[0]
    max_eff, min_wasted = resolutions(W, H, *best_fit)
    for (width, height) in possible[1:]:
        eff, wasted = resolutions(W, H, width, height)
        if (eff - max_eff) > alpha * max_eff or (abs(eff - max_eff) <= alpha * max_eff and wasted < min_wasted):
            max_eff, min_wasted, best_fit = eff, wasted, (width, height)
    return best_fit


def resize_and_pad_geometry(W, H, cw, ch):
    # LLaVA-NeXT resize_and_pad_image, geometry only.
    scale_w = cw / W
    scale_h = ch / H
    if scale_w < scale_h:
        nw = cw
        nh = min(math.ceil(H * scale_w), ch)
    else:
        nh = ch
        nw = min(math.ceil(W * scale_h), cw)
    return nw, nh, (cw - nw) // 2, (ch - nh) // 2


def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    # InternVL 1.5, verbatim in logic; also detects order-dependent ties within equal i*j.
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if best_ratio[0] * best_ratio[1] == ratio[0] * ratio[1]:
                raise AmbiguousTie((width, height, best_ratio, ratio))
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def plan(cols, rows, rw, rh, ox, oy, global_view):
    tiles = cols * rows
    return [cols, rows, cols * TILE, rows * TILE, rw, rh, ox, oy, int(global_view),
            (tiles + int(global_view)) * TOKENS_PER_TILE]


def relaxed(W, H, max_tiles, alpha):
    n = max_tiles or RELAXED_DEFAULT_MAX
    cands = [(i * TILE, j * TILE) for (i, j) in grids_by_area(n)]
    cw, ch = select_relaxed(W, H, cands, alpha)
    cols, rows = cw // TILE, ch // TILE
    return plan(cols, rows, *resize_and_pad_geometry(W, H, cw, ch), cols * rows > 1)


def llava_next(W, H, max_tiles):
    if max_tiles:
        cands = [(i * TILE, j * TILE) for (i, j) in grids_by_area(max_tiles)]
    else:
        cands = LLAVA_PINPOINTS
    cw, ch = select_best_resolution(W, H, cands)
    return plan(cw // TILE, ch // TILE, *resize_and_pad_geometry(W, H, cw, ch), True)


def internvl(W, H, max_tiles):
    max_num = max_tiles or INTERNVL_DEFAULT_MAX
    target_ratios = set((i, j) for n in range(1, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                        if 1 <= i * j <= max_num)
    target_ratios = sorted(target_ratios, key=lambda x: (x[0] * x[1], x[0]))
    cols, rows = find_closest_aspect_ratio(W / H, target_ratios, W, H, TILE)
    return plan(cols, rows, cols * TILE, rows * TILE, 0, 0, cols * rows != 1)


def all_plans(W, H, max_tiles, alpha):
    return [relaxed(W, H, max_tiles, alpha), llava_next(W, H, max_tiles), internvl(W, H, max_tiles)]


PAPER_CASES = [(394, 390), (380, 76), (380, 393), (500, 102), (768, 1536)]
BUDGET_SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (1024, 768), (1920, 1080), (1080, 1920),
                (4032, 3024), (3024, 4032), (800, 600), (1280, 720), (720, 1280), (2480, 3508), (1654, 2339),
                (300, 300), (224, 224), (1200, 630), (1000, 200), (200, 1000), (3000, 1000), (394, 390),
                (380, 76), (380, 393), (500, 102)]


def check_paper_claims():
    """The statements of spec.md section 2; the fixture is not written if the reference disagrees."""
    r = lambda w, h, n=0: relaxed(w, h, n, 0.1)
    assert llava_next(394, 390, 0)[2:4] == [768, 768] and r(394, 390)[:2] == [1, 1]
    assert internvl(380, 76, 0)[:4] == [5, 1, 1920, 384] and r(380, 76)[:2] == [1, 1]
    assert llava_next(380, 393, 0)[2:4] == [384, 768]
    assert internvl(500, 102, 0)[:2] == [5, 1]
    assert r(768, 1536)[:2] == [2, 4] and r(768, 1536)[9] == 1764
    means = {}
    for k, name in enumerate(["relaxed", "llava-next", "internvl"]):
        means[name] = statistics.mean(all_plans(w, h, 16, 0.1)[k][9] for (w, h) in BUDGET_SIZES)
    assert round(means["relaxed"]) == 1421 and round(means["llava-next"]) == 1527 \
        and round(means["internvl"]) == 1846, means
    assert [p[9] for p in all_plans(394, 390, 16, 0.1)] == [196, 980, 196]
    assert [p[9] for p in all_plans(380, 76, 16, 0.1)] == [196, 392, 1176]
    return means


def random_sizes(rng, n, exclude=()):
    """n distinct sizes, none of them in `exclude`."""
    sizes, seen = [], set(exclude)
    while len(sizes) < n:
        kind = rng.randrange(6)
        if kind == 0:  # uniform
            w, h = rng.randint(1, 4096), rng.randint(1, 4096)
        elif kind == 1:  # log-uniform: many small images
            w, h = int(math.exp(rng.uniform(0, math.log(4096)))), int(math.exp(rng.uniform(0, math.log(4096))))
        elif kind == 2:  # extreme aspect ratio
            a, b = rng.randint(1, 16), rng.randint(256, 4096)
            w, h = (a, b) if rng.random() < 0.5 else (b, a)
        elif kind == 3:  # exact simple aspect ratios (ties between equal ratios of different i*j)
            i, j, k = rng.randint(1, 8), rng.randint(1, 8), rng.randint(1, 4096)
            w, h = i * k, j * k
        elif kind == 4:  # around tile multiples
            w, h = rng.randint(1, 10) * TILE + rng.randint(-3, 3), rng.randint(1, 10) * TILE + rng.randint(-3, 3)
        else:  # common photo shapes, scaled
            a, b = rng.choice([(4, 3), (3, 2), (16, 9), (1, 1), (21, 9), (1, 1.414)])
            s = rng.uniform(20, 3000)
            w, h = (round(a * s), round(b * s)) if rng.random() < 0.5 else (round(b * s), round(a * s))
        if 1 <= w <= 4096 and 1 <= h <= 4096 and (w, h) not in seen:
            seen.add((w, h))
            sizes.append((w, h))
    return sizes


def main():
    means = check_paper_claims()
    rng = random.Random(20241114)
    sizes = PAPER_CASES + BUDGET_SIZES + random_sizes(rng, 2000, PAPER_CASES + BUDGET_SIZES)
    configs = [(0, 0.1), (16, 0.1), (6, 0.1)]
    cases, skipped = [], 0
    for (w, h) in sizes:
        for (n, alpha) in configs:
            try:
                cases.append([w, h, n, alpha] + all_plans(w, h, n, alpha))
            except AmbiguousTie:
                skipped += 1
    # other alphas, on a subset
    for (w, h) in sizes[:400]:
        alpha = rng.choice([0.0, 0.05, 0.2, 0.5, 1.0])
        n = rng.choice([0, 4, 9, 16, 25])
        try:
            cases.append([w, h, n, alpha] + all_plans(w, h, n, alpha))
        except AmbiguousTie:
            skipped += 1
    out = {
        "generator": "scripts/tiling_reference.py",
        "tile": TILE,
        "tokens_per_tile": TOKENS_PER_TILE,
        "strategies": ["relaxed", "llava-next", "internvl"],
        "fields": FIELDS,
        "budget_sizes": BUDGET_SIZES,
        "budget_mean_tokens_n16": means,
        "skipped_ambiguous_ties": skipped,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vision", "tiling_cases.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases ({len(sizes)} sizes, {skipped} ambiguous ties skipped); means {means}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
