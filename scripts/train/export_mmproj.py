#!/usr/bin/env python3
"""Write a trained checkpoint as an mmproj GGUF in this project's layout (the same keys and tensor
names as `edgevl gen-random --preset siglip-tiny`: general.architecture = clip,
clip.projector_type = lfm2, edgevl.vision.layout = global-first, llama.cpp's CLIP names).

    /root/venv-ref/bin/python scripts/train/export_mmproj.py main/last.pt --type q8_0 -o models/edgevl-demo/mmproj-q8_0.gguf
    /root/venv-ref/bin/python scripts/train/export_mmproj.py main/last.pt --type f32 -o /tmp/mmproj-f32.gguf

Types as edgevl-gen's `VisionDType`: f32 (every tensor F32), q8_0 (weight matrices Q8_0 where
their GGUF rows are a multiple of 32 long, F16 otherwise — the patch kernel's rows are 14 —;
norms, biases and position embeddings F32). Quantised with the `gguf` package.
"""

import argparse
import os
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlm  # noqa: E402


def load_vision(ckpt):
    path = ckpt if os.path.isabs(ckpt) else os.path.join(vlm.TRAIN_CACHE, ckpt)
    model = vlm.Vision(attn="eager")
    model.load_state_dict(torch.load(path, weights_only=False)["model"])
    return model.eval()


def write(model, out, dtype, name="edgevl-demo-vision"):
    w = GGUFWriter(out + ".part", "clip")
    v = vlm.VIT
    w.add_string("general.type", "mmproj")
    w.add_name(name)
    w.add_uint32("general.file_type", 0 if dtype == "f32" else 7)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", "lfm2")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", vlm.TILE)
    w.add_uint32("clip.vision.patch_size", vlm.PATCH)
    w.add_uint32("clip.vision.embedding_length", v["hidden"])
    w.add_uint32("clip.vision.feed_forward_length", v["ff"])
    w.add_uint32("clip.vision.block_count", v["layers"])
    w.add_uint32("clip.vision.attention.head_count", v["heads"])
    w.add_float32("clip.vision.attention.layer_norm_epsilon", v["eps"])
    w.add_uint32("clip.vision.projection_dim", vlm.LLM_DIM)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_uint32("clip.vision.projector.scale_factor", 2)
    w.add_string("edgevl.vision.layout", "global-first")

    def t(gname, tensor, matrix=False):
        a = tensor.detach().float().numpy().astype(np.float32)
        if dtype == "f32" or not matrix:
            w.add_tensor(gname, a)
        elif a.shape[-1] % 32 == 0:
            q = quantize(a, GGMLQuantizationType.Q8_0)
            w.add_tensor(gname, q, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, a.astype(np.float16))

    vm = model.tower()
    t("v.patch_embd.weight", vm.embeddings.patch_embedding.weight, matrix=True)  # [d, 3, 14, 14]: rows of 14
    t("v.patch_embd.bias", vm.embeddings.patch_embedding.bias)
    t("v.position_embd.weight", vm.embeddings.position_embedding.weight)
    for i, layer in enumerate(vm.encoder.layers):
        a = layer.self_attn
        for gname, mod in [("ln1", layer.layer_norm1), ("attn_q", a.q_proj), ("attn_k", a.k_proj),
                           ("attn_v", a.v_proj), ("attn_out", a.out_proj), ("ln2", layer.layer_norm2),
                           ("ffn_up", layer.mlp.fc1), ("ffn_down", layer.mlp.fc2)]:
            is_linear = isinstance(mod, torch.nn.Linear)
            t(f"v.blk.{i}.{gname}.weight", mod.weight, matrix=is_linear)
            t(f"v.blk.{i}.{gname}.bias", mod.bias)
    t("v.post_ln.weight", vm.post_layernorm.weight)
    t("v.post_ln.bias", vm.post_layernorm.bias)
    p = model.proj
    t("mm.input_norm.weight", p.norm.weight)
    t("mm.input_norm.bias", p.norm.bias)
    t("mm.1.weight", p.fc1.weight, matrix=True)
    t("mm.1.bias", p.fc1.bias)
    t("mm.2.weight", p.fc2.weight, matrix=True)
    t("mm.2.bias", p.fc2.bias)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".part", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a train.py checkpoint (absolute, or relative to the train cache)")
    ap.add_argument("--type", choices=["f32", "q8_0"], default="q8_0")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write(load_vision(a.checkpoint), a.out, a.type)
    print(a.out, os.path.getsize(a.out), "bytes")


if __name__ == "__main__":
    main()
