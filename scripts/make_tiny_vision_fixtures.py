#!/usr/bin/env python3
"""Tiny vision fixtures for edgevl-model's vision tests (run by hand, not in CI):

    /root/venv-ref/bin/python scripts/make_tiny_vision_fixtures.py

Builds a random transformers `SiglipVisionModel` with so400m's structure at small width (hidden 64,
2 layers, 4 heads, MLP 128, image 384, patch 14: the 27x27 grid), the 2x2 merge of spec 2b and the
lfm2 projector (LayerNorm eps 1e-5, Linear, tanh GELU, Linear) in PyTorch, and writes:

* tests/fixtures/tiny-vlm/mmproj.gguf: the weights under llama.cpp's CLIP names and keys (`gguf` package),
* reference outputs (float32 little-endian .bin) with an index in reference.json,
* the whole model with the image: tests/fixtures/tiny-llama-spm/model.gguf (a LlamaForCausalLM of width
  64 = the projector's output, made by scripts/make_tiny_hf_models.py) loaded by transformers from that
  GGUF, run with `inputs_embeds` = [embeddings of some prefix ids, the single tile's 196 projected
  embeddings, embeddings of some suffix ids]; its logits at every position (llm_image.logits.bin).

Input tiles are not stored: each is 3x384x384 normalised pixels whose 8-bit values come from a
32-bit LCG (`state = state * 1664525 + 1013904223 mod 2^32`, byte = state >> 24, seeded per tile,
channel-major), normalised as SigLIP's processor does: (byte / 255 - 0.5) / 0.5 in float32. The Rust
tests regenerate them with the same recipe.
"""

import json
import os

import numpy as np
import torch
from gguf import GGUFWriter
from transformers import AutoModelForCausalLM, SiglipVisionConfig, SiglipVisionModel

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tiny-vlm")
HIDDEN, FF, LAYERS, HEADS, IMAGE, PATCH, PROJ = 64, 128, 2, 4, 384, 14, 64
EPS = 1e-6
LLM_DIR = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tiny-llama-spm")
PREFIX_IDS, SUFFIX_IDS = [1, 17, 42, 99, 250], [7, 300, 12, 5]


def lcg_tile(seed: int) -> np.ndarray:
    """One normalised [3, 384, 384] tile from the LCG recipe above."""
    n = 3 * IMAGE * IMAGE
    out = np.empty(n, dtype=np.uint8)
    state = seed & 0xFFFFFFFF
    # vectorised in blocks would change nothing; a plain loop keeps the recipe obvious
    a, c = 1664525, 1013904223
    for i in range(n):
        state = (state * a + c) & 0xFFFFFFFF
        out[i] = state >> 24
    x = out.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return x.reshape(3, IMAGE, IMAGE)


def merge_2x2(x: torch.Tensor) -> torch.Tensor:
    """[729, d] -> [196, 4d]: pad 27x27 to 28x28 (bottom row, right column), token (r, c) =
    patches (2r,2c), (2r,2c+1), (2r+1,2c), (2r+1,2c+1), tokens row-major (spec 2b)."""
    g = IMAGE // PATCH
    d = x.shape[-1]
    grid = x.reshape(g, g, d)
    grid = torch.nn.functional.pad(grid, (0, 0, 0, 1, 0, 1))  # d: none, cols: right 1, rows: bottom 1
    m = (g + 1) // 2
    grid = grid.reshape(m, 2, m, 2, d).permute(0, 2, 1, 3, 4)  # [r, c, i, j, d]
    return grid.reshape(m * m, 4 * d)


class Projector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4 * HIDDEN, eps=1e-5)
        self.fc1 = torch.nn.Linear(4 * HIDDEN, PROJ)
        self.fc2 = torch.nn.Linear(PROJ, PROJ)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x)), approximate="tanh"))


def tower(vit):
    """The vision transformer inside `SiglipVisionModel` (transformers 4 nests it, 5 does not)."""
    return getattr(vit, "vision_model", vit)


def randomise_norms(module: torch.nn.Module, gen: torch.Generator):
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def llm_with_image(image_emb: torch.Tensor) -> dict:
    """Logits of the tiny llama at every position of [prefix ids, image embeddings, suffix ids]."""
    llm = AutoModelForCausalLM.from_pretrained(LLM_DIR, gguf_file="model.gguf", dtype=torch.float32).eval()
    assert llm.config.hidden_size == image_emb.shape[1]
    emb = llm.get_input_embeddings()
    with torch.no_grad():
        x = torch.cat([emb(torch.tensor(PREFIX_IDS)), image_emb, emb(torch.tensor(SUFFIX_IDS))])
        logits = llm(inputs_embeds=x[None]).logits[0]
    logits.numpy().astype("<f4").tofile(os.path.join(OUT, "llm_image.logits.bin"))
    top2 = torch.topk(logits, 2, dim=-1).values
    return {"model": "tiny-llama-spm/model.gguf", "prefix_ids": PREFIX_IDS, "image_case": "single",
            "suffix_ids": SUFFIX_IDS, "logits": "llm_image.logits.bin", "shape": list(logits.shape),
            "argmax": logits.argmax(-1).tolist(), "min_top1_margin": float((top2[:, 0] - top2[:, 1]).min())}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(99)
    cfg = SiglipVisionConfig(
        hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        image_size=IMAGE, patch_size=PATCH, hidden_act="gelu_pytorch_tanh", layer_norm_eps=EPS,
        vision_use_head=False, attn_implementation="eager",
    )
    vit = SiglipVisionModel(cfg).eval()
    proj = Projector().eval()
    with torch.no_grad():
        # Larger position embeddings and biases than the default init, so every term matters.
        emb = tower(vit).embeddings
        emb.position_embedding.weight.copy_(0.5 * torch.randn(emb.position_embedding.weight.shape, generator=gen))
        for p in list(vit.parameters()) + list(proj.parameters()):
            if p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    randomise_norms(vit, gen)
    randomise_norms(proj, gen)

    # --- the mmproj GGUF, llama.cpp names ---
    w = GGUFWriter(os.path.join(OUT, "mmproj.gguf"), "clip")
    w.add_name("tiny-vlm-vision")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", "lfm2")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", IMAGE)
    w.add_uint32("clip.vision.patch_size", PATCH)
    w.add_uint32("clip.vision.embedding_length", HIDDEN)
    w.add_uint32("clip.vision.feed_forward_length", FF)
    w.add_uint32("clip.vision.block_count", LAYERS)
    w.add_uint32("clip.vision.attention.head_count", HEADS)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", EPS)
    w.add_uint32("clip.vision.projection_dim", PROJ)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_uint32("clip.vision.projector.scale_factor", 2)
    w.add_string("edgevl.vision.layout", "global-first")

    def t(name, tensor):
        w.add_tensor(name, tensor.detach().numpy().astype(np.float32))

    vm = tower(vit)
    t("v.patch_embd.weight", vm.embeddings.patch_embedding.weight)  # [64, 3, 14, 14] -> dims [14, 14, 3, 64]
    t("v.patch_embd.bias", vm.embeddings.patch_embedding.bias)
    t("v.position_embd.weight", vm.embeddings.position_embedding.weight)
    for i, layer in enumerate(vm.encoder.layers):
        a = layer.self_attn
        for gname, mod in [("ln1", layer.layer_norm1), ("ln2", layer.layer_norm2),
                           ("attn_q", a.q_proj), ("attn_k", a.k_proj), ("attn_v", a.v_proj),
                           ("attn_out", a.out_proj), ("ffn_up", layer.mlp.fc1), ("ffn_down", layer.mlp.fc2)]:
            t(f"v.blk.{i}.{gname}.weight", mod.weight)
            t(f"v.blk.{i}.{gname}.bias", mod.bias)
    t("v.post_ln.weight", vm.post_layernorm.weight)
    t("v.post_ln.bias", vm.post_layernorm.bias)
    t("mm.input_norm.weight", proj.norm.weight)
    t("mm.input_norm.bias", proj.norm.bias)
    t("mm.1.weight", proj.fc1.weight)
    t("mm.1.bias", proj.fc1.bias)
    t("mm.2.weight", proj.fc2.weight)
    t("mm.2.bias", proj.fc2.bias)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # --- references ---
    cases = {"single": [7], "grid2x2_global": [11, 12, 13, 14, 15]}
    index = {"tile_recipe": "lcg", "image_size": IMAGE, "cases": []}
    for name, seeds in cases.items():
        tiles = np.stack([lcg_tile(s) for s in seeds])
        with torch.no_grad():
            feats = vit(pixel_values=torch.from_numpy(tiles)).last_hidden_state  # [n, 729, 64], post-LN applied
            out = torch.cat([proj(merge_2x2(f)) for f in feats])  # [n * 196, 64]
        out_file = f"{name}.proj.bin"
        out.numpy().astype("<f4").tofile(os.path.join(OUT, out_file))
        case = {"name": name, "seeds": seeds, "tile_sum": float(tiles.astype(np.float64).sum()),
                "output": out_file, "shape": list(out.shape)}
        if name == "single":
            vit_file = f"{name}.vit.bin"
            feats.numpy().astype("<f4").tofile(os.path.join(OUT, vit_file))
            case["vit_output"] = vit_file
            case["vit_shape"] = list(feats.shape[1:])
        index["cases"].append(case)
        if name == "single":
            index["llm"] = llm_with_image(out)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(index, f, indent=1)
    print("wrote", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
