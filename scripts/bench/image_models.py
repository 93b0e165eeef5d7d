#!/usr/bin/env python3
"""Full-size picture models with pseudo-random weights, for `mosaic bench image` on machines
that cannot download the trained ones: speed depends on the shapes, not on the values, and
random weights (N(0, 0.02), norms at 1, biases at 0, as the models' initialisers) keep the
activations alive so the bf16 paths' cosine to f32 means something.

    python3 scripts/bench/image_models.py OUT_DIR
    mosaic bench image --images PHOTOS --model OUT_DIR/resnet-50 --model OUT_DIR/clip-vit-base-patch32 \
        --model OUT_DIR/siglip-base-patch16-224

Writes microsoft/resnet-50, openai/clip-vit-base-patch32 (vision tower only: no tokenizer) and
google/siglip-base-patch16-224 (vision tower only) in the Hugging Face layouts, with their
preprocessor_config.json. Standard library only.
"""
import json
import os
import struct
import sys


# A pool of N(0, 0.02) float32 values (a length prime to every tensor row), read with a moving
# offset: deterministic, and fast enough without numpy.
POOL_LEN = 1_000_003


def pool():
    import random

    rng = random.Random(13)
    return struct.pack(f"<{POOL_LEN}f", *(rng.gauss(0.0, 0.02) for _ in range(POOL_LEN)))


def constant(name):
    """1.0 for norm scales and variances, 0.0 for biases and means, None for random."""
    last = name.rsplit(".", 1)[-1]
    if last == "running_var" or (last == "weight" and ("norm" in name or "layrnorm" in name)):
        return 1.0
    if last in ("bias", "running_mean") or name.endswith("in_proj_bias"):
        return 0.0
    return None


def write_safetensors(path, tensors, values):
    """tensors: list of (name, shape), float32, values from `constant` or the random pool."""
    header = {}
    offset = 0
    for name, shape in tensors:
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    at = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape in tensors:
            count = 1
            for d in shape:
                count *= d
            fixed = constant(name)
            if fixed is not None:
                f.write(struct.pack("<f", fixed) * count)
                continue
            while count > 0:
                take = min(count, POOL_LEN - at)
                f.write(values[4 * at: 4 * (at + take)])
                at = (at + take) % POOL_LEN
                count -= take


def bn(prefix, c):
    return [(f"{prefix}.{k}", (c,)) for k in ("weight", "bias", "running_mean", "running_var")]


def resnet50():
    t = [("resnet.embedder.embedder.convolution.weight", (64, 3, 7, 7))]
    t += bn("resnet.embedder.embedder.normalization", 64)
    c_in = 64
    for s, (out, depth) in enumerate(zip([256, 512, 1024, 2048], [3, 4, 6, 3])):
        mid = out // 4
        for i in range(depth):
            p = f"resnet.encoder.stages.{s}.layers.{i}"
            shapes = [(mid, c_in, 1, 1), (mid, mid, 3, 3), (out, mid, 1, 1)]
            for k, shape in enumerate(shapes):
                t.append((f"{p}.layer.{k}.convolution.weight", shape))
                t += bn(f"{p}.layer.{k}.normalization", shape[0])
            if i == 0:
                t.append((f"{p}.shortcut.convolution.weight", (out, c_in, 1, 1)))
                t += bn(f"{p}.shortcut.normalization", out)
            c_in = out
    t += [("classifier.1.weight", (1000, 2048)), ("classifier.1.bias", (1000,))]
    config = {
        "model_type": "resnet", "layer_type": "bottleneck", "depths": [3, 4, 6, 3],
        "hidden_sizes": [256, 512, 1024, 2048], "embedding_size": 64, "hidden_act": "relu",
        "downsample_in_first_stage": False, "downsample_in_bottleneck": False,
    }
    processor = {
        "image_processor_type": "ConvNextImageProcessor", "crop_pct": 0.875, "size": 224,
        "resample": 3, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    }
    return t, config, processor


def encoder(prefix, hidden, inter, layers):
    t = []
    for i in range(layers):
        p = f"{prefix}.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += [(f"{p}.self_attn.{name}.weight", (hidden, hidden)), (f"{p}.self_attn.{name}.bias", (hidden,))]
        t += [(f"{p}.layer_norm1.weight", (hidden,)), (f"{p}.layer_norm1.bias", (hidden,))]
        t += [(f"{p}.layer_norm2.weight", (hidden,)), (f"{p}.layer_norm2.bias", (hidden,))]
        t += [(f"{p}.mlp.fc1.weight", (inter, hidden)), (f"{p}.mlp.fc1.bias", (inter,))]
        t += [(f"{p}.mlp.fc2.weight", (hidden, inter)), (f"{p}.mlp.fc2.bias", (hidden,))]
    return t


def norm(name, hidden):
    return [(f"{name}.weight", (hidden,)), (f"{name}.bias", (hidden,))]


def clip_b32():
    h, grid = 768, 7
    t = [("vision_model.embeddings.patch_embedding.weight", (h, 3, 32, 32)),
         ("vision_model.embeddings.class_embedding", (h,)),
         ("vision_model.embeddings.position_embedding.weight", (grid * grid + 1, h))]
    t += norm("vision_model.pre_layrnorm", h) + norm("vision_model.post_layernorm", h)
    t += encoder("vision_model.encoder", h, 3072, 12)
    t += [("visual_projection.weight", (512, h))]
    config = {
        "model_type": "clip", "projection_dim": 512,
        "vision_config": {"hidden_size": h, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        "text_config": {},
    }
    processor = {
        "image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 224},
        "crop_size": {"height": 224, "width": 224}, "resample": 3,
    }
    return t, config, processor


def siglip_b16():
    h, grid = 768, 14
    t = [("vision_model.embeddings.patch_embedding.weight", (h, 3, 16, 16)),
         ("vision_model.embeddings.patch_embedding.bias", (h,)),
         ("vision_model.embeddings.position_embedding.weight", (grid * grid, h))]
    t += norm("vision_model.post_layernorm", h)
    t += encoder("vision_model.encoder", h, 3072, 12)
    t += [("vision_model.head.probe", (1, 1, h)),
          ("vision_model.head.attention.in_proj_weight", (3 * h, h)),
          ("vision_model.head.attention.in_proj_bias", (3 * h,)),
          ("vision_model.head.attention.out_proj.weight", (h, h)),
          ("vision_model.head.attention.out_proj.bias", (h,))]
    t += norm("vision_model.head.layernorm", h)
    t += [("vision_model.head.mlp.fc1.weight", (3072, h)), ("vision_model.head.mlp.fc1.bias", (3072,)),
          ("vision_model.head.mlp.fc2.weight", (h, 3072)), ("vision_model.head.mlp.fc2.bias", (h,))]
    config = {
        "model_type": "siglip",
        "vision_config": {"hidden_size": h, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
        "text_config": {},
    }
    processor = {"image_processor_type": "SiglipImageProcessor", "size": {"height": 224, "width": 224}}
    return t, config, processor


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-image-models"
    values = pool()
    for name, build in [("resnet-50", resnet50), ("clip-vit-base-patch32", clip_b32),
                        ("siglip-base-patch16-224", siglip_b16)]:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tensors, config, processor = build()
        write_safetensors(os.path.join(d, "model.safetensors"), tensors, values)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(processor, f, indent=1)
        print(d)


if __name__ == "__main__":
    main()
