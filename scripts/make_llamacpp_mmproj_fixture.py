#!/usr/bin/env python3
"""An mmproj written by llama.cpp's own converter, with transformers' outputs (run by hand, not in CI):

    /root/venv-ref/bin/python scripts/make_llamacpp_mmproj_fixture.py [--llamacpp DIR]

DIR is llama.cpp's source tree (default ~/.cache/edgevl/llama.cpp-0.3.36/src, unpacked by
scripts/build-llamacpp.sh). The script

1. builds a tiny random `Lfm2VlForConditionalGeneration` (transformers): a Siglip2 (NaFlex) vision tower
   of so400m's structure at small width (hidden 64, MLP 128, 3 layers, 4 heads, patch 16, LayerNorm
   eps 1e-6, tanh GELU) whose learned position embeddings cover a 16x16 patch grid, as LFM2-VL's do;
   the lfm2 projector (pixel unshuffle 2x2, LayerNorm, Linear 256->64, tanh GELU, Linear 64->64) and a
   tiny LFM2 text model of width 64. Every weight is random, norms included;
2. saves it (safetensors with the published checkpoints' tensor names, config.json,
   preprocessor_config.json with SigLIP's mean/std 0.5) to a temporary folder and converts it with llama.cpp's `convert_hf_to_gguf.py --mmproj --outtype f32`,
   which writes `clip.projector_type = lfm2`, the placeholder `clip.vision.image_size = 256`, no
   `edgevl.vision.layout`, and turns the patch Linear into a conv kernel;
3. computes, with transformers, the projected image embeddings (`get_image_features`) of two 384x384
   tiles: a 24x24 patch grid, so the 16x16 position embeddings are resized (bilinear, antialiased,
   as transformers and llama.cpp both do) and each tile gives 12x12 = 144 tokens of width 64.

Writes tests/fixtures/mmproj-llamacpp/{mmproj.gguf, tiles.proj.bin, reference.json}.

Tiles are not stored. Each is what edgevl makes of a 384x384 image (one tile under every strategy, no
resize): 3x384x384 channel-major 8-bit values from a 32-bit LCG (`state = state * 1664525 +
1013904223 mod 2^32`, byte = state >> 24, seeded per tile), normalised (byte / 255 - 0.5) / 0.5 in
float32 -- the recipe of scripts/make_tiny_vision_fixtures.py, which the Rust test repeats. For
transformers the same values are cut into Siglip2's patch rows ((y, x, channel) order inside a patch,
patches row-major), which is what its image processor does.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "mmproj-llamacpp")
# 3 blocks, not 2: the converter maps `multi_modal_projector.linear_{bid}` only for bid < block count.
HIDDEN, FF, LAYERS, HEADS, PATCH, POS_GRID, TEXT = 64, 128, 3, 4, 16, 16, 64
TILE = 384
SEEDS = [7, 8]


def lcg_tile(seed: int) -> np.ndarray:
    """One normalised [3, 384, 384] tile from the LCG recipe above."""
    n = 3 * TILE * TILE
    out = np.empty(n, dtype=np.uint8)
    state = seed & 0xFFFFFFFF
    for i in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = state >> 24
    x = out.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return x.reshape(3, TILE, TILE)


def patch_rows(tile: np.ndarray) -> np.ndarray:
    """[3, H, W] -> [(H/p)*(W/p), p*p*3]: Siglip2's patchified input, as its image processor cuts it."""
    c, h, w = tile.shape
    g_h, g_w = h // PATCH, w // PATCH
    x = tile.reshape(c, g_h, PATCH, g_w, PATCH).transpose(1, 3, 2, 4, 0)
    return x.reshape(g_h * g_w, PATCH * PATCH * c)


def build_model() -> Lfm2VlForConditionalGeneration:
    config = Lfm2VlConfig(
        vision_config=dict(
            model_type="siglip2_vision_model",
            hidden_size=HIDDEN,
            intermediate_size=FF,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_channels=3,
            patch_size=PATCH,
            num_patches=POS_GRID * POS_GRID,
            layer_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="lfm2",
            hidden_size=TEXT,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            layer_types=["conv", "full_attention"],
            vocab_size=512,
            max_position_embeddings=1024,
        ),
        projector_hidden_size=TEXT,
        projector_hidden_act="gelu_pytorch_tanh",
        projector_use_layernorm=True,
        projector_bias=True,
        downsample_factor=2,
        image_token_id=400,
    )
    torch.manual_seed(1234)
    model = Lfm2VlForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "language_model" in name:
                continue
            shape = p.shape
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(shape, generator=gen))
            elif "position_embedding" in name:
                p.copy_(0.5 * torch.randn(shape, generator=gen))
            else:
                p.copy_(torch.randn(shape, generator=gen) / shape[-1] ** 0.5)
    return model


def hub_layout(path: str) -> None:
    """Renames the vision tower's tensors to the layout of the published LFM2-VL checkpoints
    (`model.vision_tower.vision_model.*`), which is what llama.cpp's converter maps; transformers 5
    saves them one level flatter (`model.vision_tower.*`)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    renamed = {
        k.replace("model.vision_tower.", "model.vision_tower.vision_model.", 1): v for k, v in tensors.items()
    }
    save_file(renamed, path, metadata={"format": "pt"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamacpp", default=os.path.expanduser("~/.cache/edgevl/llama.cpp-0.3.36/src"))
    args = ap.parse_args()
    converter = os.path.join(args.llamacpp, "convert_hf_to_gguf.py")
    if not os.path.isfile(converter):
        sys.exit(f"{converter} not found: run scripts/build-llamacpp.sh first")
    os.makedirs(OUT, exist_ok=True)
    model = build_model()

    tiles = [lcg_tile(s) for s in SEEDS]
    grid = TILE // PATCH
    pixel_values = torch.from_numpy(np.stack([patch_rows(t) for t in tiles]))
    spatial_shapes = torch.tensor([[grid, grid]] * len(tiles), dtype=torch.long)
    mask = torch.ones(len(tiles), grid * grid, dtype=torch.bool)
    with torch.no_grad():
        feats = model.model.get_image_features(
            pixel_values=pixel_values, spatial_shapes=spatial_shapes, pixel_attention_mask=mask
        ).pooler_output
    proj = torch.cat(list(feats)).float().numpy()
    assert proj.shape == (len(tiles) * (grid // 2) ** 2, TEXT), proj.shape
    proj.astype("<f4").tofile(os.path.join(OUT, "tiles.proj.bin"))

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hub_layout(os.path.join(tmp, "model.safetensors"))
        with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
            json.dump({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "patch_size": PATCH}, f)
        out = os.path.join(OUT, "mmproj.gguf")
        subprocess.run(
            [sys.executable, converter, tmp, "--mmproj", "--outtype", "f32", "--outfile", out]
            + ["--model-name", "tiny-random-lfm2-vl"],
            check=True,
        )

    reference = {
        "made_by": "scripts/make_llamacpp_mmproj_fixture.py: transformers Lfm2VlModel.get_image_features; "
        "mmproj.gguf by llama.cpp convert_hf_to_gguf.py --mmproj --outtype f32",
        "seeds": SEEDS,
        "tile_size": TILE,
        "tile_sums": [float(np.float64(t.astype(np.float64).sum())) for t in tiles],
        "output": "tiles.proj.bin",
        "shape": list(proj.shape),
        "tokens_per_tile": (grid // 2) ** 2,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: mmproj.gguf, tiles.proj.bin {proj.shape}, reference.json")


if __name__ == "__main__":
    main()
