#!/usr/bin/env python3
"""Write a trained checkpoint as an mmproj GGUF in this project's layout (the same keys and tensor
names as `edgevl gen-random --preset siglip-tiny`: general.architecture = clip,
clip.projector_type = lfm2, edgevl.vision.layout = global-first, llama.cpp's CLIP names).

    /root/venv-ref/bin/python scripts/train/export_mmproj.py main/last.pt --type q8_0 -o models/edgevl-demo/mmproj-q8_0.gguf
    /root/venv-ref/bin/python scripts/train/export_mmproj.py main/last.pt --type f32 -o /tmp/mmproj-f32.gguf

Types as edgevl-gen's `VisionDType`: f32 (every tensor F32), q8_0 (weight matrices Q8_0 where
their GGUF rows are a multiple of 32 long, F16 otherwise — the patch kernel's rows are 14 —;
norms, biases and position embeddings F32). Quantised with the `gguf` package.

Or, with --hf-dir, as a Hugging Face checkpoint in this project's layout (docs/checkpoint-format.md),
which `edgevl convert` turns into the mmproj (and the LLM) with any scheme, no Python writer involved:

    /root/venv-ref/bin/python scripts/train/export_mmproj.py main/last.pt --hf-dir /tmp/edgevl-demo-hf
    edgevl convert /tmp/edgevl-demo-hf -o /tmp/llm.gguf --mmproj-out mmproj-q8_0.gguf --scheme q8_0

The checkpoint holds the trained tower and projector (model-vision.safetensors) beside SmolLM2's own
shards (hard links into the directory of scripts/make-smollm2-hf.sh, or --llm-dir), one index for all.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlm  # noqa: E402


def load_vision(ckpt):
    """The tower and projector of a train.py checkpoint, or of an mmproj GGUF this script wrote
    (`*.gguf`: its tensors dequantised, so the PyTorch model computes with the file's values)."""
    if ckpt.endswith(".gguf"):
        return load_vision_gguf(ckpt)
    model = vlm.Vision(attn="eager")
    model.load_state_dict(torch.load(vlm.cache_path(ckpt), weights_only=False)["model"])
    return model.eval()


def gguf_names(model):
    """(GGUF tensor name, PyTorch parameter) of every tensor `write` stores, in its order."""
    vm = model.tower()
    out = [("v.patch_embd.weight", vm.embeddings.patch_embedding.weight),
           ("v.patch_embd.bias", vm.embeddings.patch_embedding.bias),
           ("v.position_embd.weight", vm.embeddings.position_embedding.weight)]
    for i, layer in enumerate(vm.encoder.layers):
        a = layer.self_attn
        for gname, mod in [("ln1", layer.layer_norm1), ("attn_q", a.q_proj), ("attn_k", a.k_proj),
                           ("attn_v", a.v_proj), ("attn_out", a.out_proj), ("ln2", layer.layer_norm2),
                           ("ffn_up", layer.mlp.fc1), ("ffn_down", layer.mlp.fc2)]:
            out.append((f"v.blk.{i}.{gname}.weight", mod.weight))
            out.append((f"v.blk.{i}.{gname}.bias", mod.bias))
    p = model.proj
    out += [("v.post_ln.weight", vm.post_layernorm.weight), ("v.post_ln.bias", vm.post_layernorm.bias),
            ("mm.input_norm.weight", p.norm.weight), ("mm.input_norm.bias", p.norm.bias),
            ("mm.1.weight", p.fc1.weight), ("mm.1.bias", p.fc1.bias),
            ("mm.2.weight", p.fc2.weight), ("mm.2.bias", p.fc2.bias)]
    return out


def load_vision_gguf(path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {t.name: t for t in GGUFReader(path).tensors}
    # The projector's hidden width is mm.1's output width (wider than the output in gate_pilot.py's files).
    model = vlm.Vision(attn="eager", proj_hidden=int(tensors["mm.1.bias"].shape[0]))
    with torch.no_grad():
        for gname, param in gguf_names(model):
            t = tensors[gname]
            a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(param.shape)
            param.copy_(torch.from_numpy(a))
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

    for gname, param in gguf_names(model):  # matrices: the patch kernel and the Linear weights
        t(gname, param, matrix=param.dim() >= 2 and gname != "v.position_embd.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".part", out)


def write_hf(model, out, llm_dir):
    """The trained vision side in this project's checkpoint layout, beside SmolLM2's shards (hard links)."""
    from safetensors.torch import save_file

    os.makedirs(out, exist_ok=True)
    v = vlm.VIT
    llm_cfg = json.load(open(os.path.join(llm_dir, "config.json")))
    names = {"norm": "layer_norm", "fc1": "linear_1", "fc2": "linear_2"}
    sd = {}
    for k, t in model.tower().state_dict().items():
        if k != "position_ids":
            sd["vision_tower.vision_model." + k] = t.detach().float().contiguous()
    for k, t in model.proj.state_dict().items():
        layer, kind = k.split(".")
        sd[f"multi_modal_projector.{names[layer]}.{kind}"] = t.detach().float().contiguous()
    save_file(sd, os.path.join(out, "model-vision.safetensors"), metadata={"format": "pt"})
    index = json.load(open(os.path.join(llm_dir, "model.safetensors.index.json")))
    for shard in sorted(set(index["weight_map"].values())):
        dst = os.path.join(out, shard)
        if os.path.exists(dst):
            os.remove(dst)
        try:
            os.link(os.path.join(llm_dir, shard), dst)
        except OSError:
            shutil.copyfile(os.path.join(llm_dir, shard), dst)
    index["weight_map"].update({k: "model-vision.safetensors" for k in sd})
    json.dump(index, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2, sort_keys=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(os.path.join(llm_dir, f), os.path.join(out, f))
    config = {
        "architectures": ["EdgeVlForConditionalGeneration"],
        "model_type": "edgevl",
        "downsample_factor": 2,
        "projector_hidden_act": "gelu_pytorch_tanh",
        "projector_layer_norm_eps": 1e-5,
        "text_config": llm_cfg,
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": v["hidden"], "intermediate_size": v["ff"],
            "num_hidden_layers": v["layers"], "num_attention_heads": v["heads"], "image_size": vlm.TILE,
            "patch_size": vlm.PATCH, "layer_norm_eps": v["eps"], "hidden_act": "gelu_pytorch_tanh", "num_channels": 3,
        },
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2, sort_keys=True)
    json.dump({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": vlm.TILE, "width": vlm.TILE}},
              open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2, sort_keys=True)


def smollm2_hf_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.check_output([os.path.join(here, "..", "make-smollm2-hf.sh")], text=True).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a train.py checkpoint (absolute, or relative to the train cache)")
    ap.add_argument("--type", choices=["f32", "q8_0"], default="q8_0")
    ap.add_argument("-o", "--out", help="the mmproj GGUF to write (this script's own writer)")
    ap.add_argument("--hf-dir", help="write a Hugging Face checkpoint in this project's layout instead")
    ap.add_argument("--llm-dir", help="SmolLM2's Hugging Face directory (default: scripts/make-smollm2-hf.sh's)")
    a = ap.parse_args()
    if bool(a.out) == bool(a.hf_dir):
        ap.error("give one of -o and --hf-dir")
    if a.hf_dir:
        write_hf(load_vision(a.checkpoint), a.hf_dir, a.llm_dir or smollm2_hf_dir())
        print(a.hf_dir)
        return
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write(load_vision(a.checkpoint), a.out, a.type)
    print(a.out, os.path.getsize(a.out), "bytes")


if __name__ == "__main__":
    main()
