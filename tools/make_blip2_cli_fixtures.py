"""Tiny inputs for the BLIP-2 training commands' tests (tests/fixtures/blip2_train/).

  stage1_init/  a Blip2ForImageTextRetrieval folder (transformers' random init, seeded) with a
                Q-Former text path, a WordPiece tokenizer whose bos_token is [DEC] (as LAVIS adds it)
                and a BlipImageProcessor config: what `mmalign-blip2 pretrain-stage1 --model` reads.
  opt_lm/       an OPTForCausalLM folder (random init, seeded) with the small byte-level BPE tokenizer
                of tests/fixtures/blip2/opt_prenorm (which has an <image> token): `--language-model`.
  data/         12 Fashion-MNIST test images (28x28 padded to 32x32 RGB PNGs) with coco_karpathy
                annotations (train.json: one caption per entry; test.json: caption lists) and VQAv2
                questions/annotations for the test images.

Run by hand: python tools/make_blip2_cli_fixtures.py (needs torch, transformers, pillow and the
Debian dataset-fashion-mnist package). The models are random: the tests check that the commands
run, resume, save folders transformers loads and score with the reference metrics, not quality.
"""

import gzip
import json
import os
import shutil
import struct

import numpy as np
import torch
from PIL import Image
from transformers import Blip2Config, Blip2ForImageTextRetrieval, OPTConfig, OPTForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "blip2_train")
FASHION = "/usr/share/datasets/fashion-mnist"
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def images_and_labels():
    imgs = idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))
    labels = idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"))
    picked, seen = [], {}
    for i, y in enumerate(labels):  # the first images of each class, 12 in all
        if seen.get(int(y), 0) < 2 and len(picked) < 12:
            seen[int(y)] = seen.get(int(y), 0) + 1
            picked.append(i)
    return [(imgs[i], int(labels[i])) for i in picked]


def write_data(words):
    d = os.path.join(OUT, "data")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    train, test, questions, answers = [], [], [], []
    for k, (img, y) in enumerate(images_and_labels()):
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[2:30, 2:30, :] = 255 - img[:, :, None]
        name = f"images/item_{k:02d}.png"
        Image.fromarray(rgb).save(os.path.join(d, name))
        item = NAMES[y]
        caps = [f"a picture of a {item}.", f"A {item} on a white background!", f"one {item}"]
        words.update(w for c in caps for w in c.lower().replace(".", " ").replace("!", " ").split())
        if k < 8:
            for c in caps[:2]:
                train.append({"caption": c, "image": name, "image_id": f"fashion_{k}"})
        else:
            test.append({"image": name, "caption": caps, "image_id": k})
            qid = 1000 + k
            questions.append({"question_id": qid, "image_id": k, "question": "what is in the picture?", "image": name})
            answers.append({"question_id": qid, "image_id": k, "question_type": "what is", "answer_type": "other",
                            "multiple_choice_answer": item,
                            "answers": [{"answer": item if j < 8 else "a " + item, "answer_confidence": "yes",
                                         "answer_id": j + 1} for j in range(10)]})
    json.dump(train, open(os.path.join(d, "train.json"), "w"), indent=1)
    json.dump(test, open(os.path.join(d, "test.json"), "w"), indent=1)
    json.dump({"questions": questions}, open(os.path.join(d, "vqa_questions.json"), "w"), indent=1)
    json.dump({"annotations": answers}, open(os.path.join(d, "vqa_annotations.json"), "w"), indent=1)


def processor_config(size):
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "BlipImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
            "size": {"height": size, "width": size}}


def write_stage1(words):
    d = os.path.join(OUT, "stage1_init")
    os.makedirs(d, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + [".", "!", "[DEC]"]
    open(os.path.join(d, "vocab.txt"), "w").write("\n".join(vocab) + "\n")
    json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "bos_token": "[DEC]",
               "model_max_length": 512}, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    json.dump(processor_config(32), open(os.path.join(d, "preprocessor_config.json"), "w"), indent=2)
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, qkv_bias=True),
        qformer_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=40, cross_attention_frequency=1,
                            use_qformer_text_input=True, pad_token_id=0),
        text_config=dict(model_type="opt", vocab_size=401, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                         num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64),
        num_query_tokens=4, image_text_hidden_size=16)
    cfg.architectures = ["Blip2ForImageTextRetrieval"]
    torch.manual_seed(0)
    model = Blip2ForImageTextRetrieval(cfg)
    # transformers starts the query tokens at zero; LAVIS's init_Qformer draws them from
    # N(0, initializer_range²). All-zero rows would meet the Q-Former's first LayerNorm with zero
    # variance (gradients of 1/sqrt(eps)), so the fixture starts as LAVIS does.
    # Blip2VisionConfig's initializer_range is 1e-10 (a tower meant to be loaded, never trained
    # from its init), which makes every image look the same; the fixture's frozen tower gets
    # N(0, 0.02²) weights so that images differ, as a pretrained one's would.
    with torch.no_grad():
        model.query_tokens.normal_(0.0, cfg.qformer_config.initializer_range)
        for name, p in model.vision_model.named_parameters():
            if p.dim() >= 2 or "embedding" in name:
                p.normal_(0.0, 0.02)
    model.save_pretrained(d)


def write_lm():
    d = os.path.join(OUT, "opt_lm")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(ROOT, "tests", "fixtures", "blip2", "opt_prenorm")
    for f in ["merges.txt", "vocab.json", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(src, f), os.path.join(d, f))
    newline = json.load(open(os.path.join(src, "vocab.json")))["\u010a"]  # "\n" in GPT-2's byte alphabet
    cfg = OPTConfig(vocab_size=401, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    word_embed_proj_dim=32, max_position_embeddings=64, bos_token_id=2, eos_token_id=newline,
                    pad_token_id=1, do_layer_norm_before=True)
    torch.manual_seed(1)
    OPTForCausalLM(cfg).save_pretrained(d)


if __name__ == "__main__":
    words = set()
    write_data(words)
    write_stage1(words)
    write_lm()
    print("wrote", OUT)
