#!/usr/bin/env python3
"""PyTorch side of benchmarks/blip2_train: the BLIP-2 stage-1 and stage-2 training steps on the CPU.

    python3 benchmarks/torch/blip2_train.py make --dir DIR [--steps N] [--batch B] [--vision-layers N]
    python3 benchmarks/torch/blip2_train.py run  --dir DIR --stage 1|2 [--threads T] [--expect FILE]
                                                              (pip install torch transformers safetensors numpy)

make: random-weight models in the layout of transformers' BLIP-2 classes, sized for a CPU: a
ViT-B/16-shaped vision tower (224 px, 12 × 768, --vision-layers to shorten it), a BERT-base-shaped
Q-Former (12 × 768, 32 queries, cross-attention every second layer), image_text_hidden_size 256;
every dropout probability 0 (both sides compute the same deterministic step).
  DIR/stage1/   Blip2ForImageTextRetrieval (config.json + model.safetensors) with the Q-Former's text
                path (use_qformer_text_input, WordPiece vocabulary 30523 with [DEC] = 30522) and, in
                the same file, LAVIS's ITG head `cls.predictions.*` (transformers' BertOnlyMLMHead
                with its decoder tied to embeddings.word_embeddings) and the temperature `temp` (0.07)
  DIR/stage2/   Blip2ForConditionalGeneration with an OPT-125m-shaped language model (12 × 768,
                vocabulary 50272, image_token_index 50265)
  DIR/batches.safetensors  N batches of B: pixel_values [N·B, 3, 224, 224] (seeded normal);
                stage-1 text s1_ids / s1_mask [N, B, 32] ([CLS] words [SEP], then [PAD] 0) and the
                fixed ITM negatives s1_neg_image_for_text / s1_neg_text_for_image [N, B] (j ≠ i);
                stage-2 captions s2_ids / s2_mask [N, B, 32] (</s>, words, then OPT's pad 1, as
                LAVIS's OPT tokenizer gives them) and s2_labels (-100 on the padding)
Weights: torch.manual_seed(0), transformers' own initialisation (normal 0.02, zero biases, unit
LayerNorm scales), then query_tokens drawn normal 0.02 as LAVIS initialises them (transformers
starts them at zero: 32 equal queries would make ITC's max over queries a tie).

run: one process, one stage, torch.set_num_threads(T); the model loaded from DIR, the batches in
order; each step is zero_grad, forward, backward, torch.optim.AdamW.step (lr 1e-4, betas 0.9/0.999,
eps 1e-8, weight decay 0.05 on the parameters the C++ default rule decays: rank ≥ 2 and not a
token/position embedding table; no gradient clipping):
  stage 1  LAVIS blip2_qformer.py's loss from transformers' modules: image embeddings of the frozen
           Blip2VisionModel under no_grad; ITC (max over queries of the cosine of the normalised
           vision_projection of the query outputs with the normalised text_projection of the text
           [CLS], / temp, symmetric cross-entropy with label smoothing 0.1); ITM (texts [pos, pos,
           neg], images [pos, neg, pos] with the given negatives, itm_head averaged over the query
           outputs, cross-entropy); ITG (text with [DEC] first, one Q-Former pass with the
           multimodal-causal mask, the LM head, shifted cross-entropy with label smoothing 0.1);
           the sum; temp not clamped (LAVIS's BLIP-2 never clamps it)
  stage 2  Blip2ForConditionalGeneration(pixel_values, input_ids, attention_mask, labels).loss with
           requires_grad False on vision_model and language_model; input_ids are the caption after
           32 <image> tokens (attention 1), as Blip2Processor writes them, and labels -100 on those
           rows then the caption's: every logit is read, the </s> is a target of the last soft row
           (LAVIS blip2_opt.py's loss; caption-only labels would drop that term)
Step 1 is the warm-up; steps 2…N are timed. Prints one JSON line: steps_per_s, the losses of every
step (stage 1 also its three terms), peak_rss_mb (VmHWM), the trainable and decayed parameter
counts. --expect FILE (the C++ side's JSON line of the same stage) compares the first step's losses
before any timed step and exits 1 when one differs by more than 1e-4 relative.
"""
import argparse
import json
import os
import time

import numpy as np

Q = 32            # query tokens
T1 = 32           # stage-1 text length (LAVIS max_txt_len)
T2 = 32           # stage-2 caption length (after the 32 soft-prompt rows)
DEC, CLS, SEP, BERT_PAD = 30522, 101, 102, 0
IMAGE_TOKEN, OPT_BOS, OPT_PAD, NEWLINE = 50265, 2, 1, 50118  # NEWLINE: "\n", which LAVIS appends
LR, BETAS, EPS, WEIGHT_DECAY = 1e-4, (0.9, 0.999), 1e-8, 0.05
TOLERANCE = 1e-4


def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def blip2_config(stage, vision_layers):
    from transformers import Blip2Config
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=vision_layers, num_attention_heads=12,
                  image_size=224, patch_size=16, attention_dropout=0.0)
    qformer = dict(vocab_size=30523, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   intermediate_size=3072, cross_attention_frequency=2, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, use_qformer_text_input=stage == 1)
    fields = dict(vision_config=vision, qformer_config=qformer, num_query_tokens=Q, image_text_hidden_size=256)
    if stage == 2:
        fields["text_config"] = dict(model_type="opt", vocab_size=50272, hidden_size=768, word_embed_proj_dim=768,
                                     num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072,
                                     max_position_embeddings=2048, do_layer_norm_before=True, activation_function="relu",
                                     dropout=0.0, attention_dropout=0.0, layerdrop=0.0, bos_token_id=OPT_BOS,
                                     pad_token_id=OPT_PAD, eos_token_id=50118)
        fields["image_token_index"] = IMAGE_TOKEN
    cfg = Blip2Config(**fields)
    cfg.architectures = ["Blip2ForImageTextRetrieval" if stage == 1 else "Blip2ForConditionalGeneration"]
    return cfg


def stage1_module(cfg):
    """LAVIS's stage-1 model (blip2_qformer.py) assembled from transformers' modules, its parameters
    named as Blip2ForImageTextRetrieval's plus cls.predictions.* and temp."""
    import torch
    from torch import nn
    import torch.nn.functional as F
    from transformers import Blip2ForImageTextRetrieval
    from transformers.models.bert.modeling_bert import BertOnlyMLMHead

    class Stage1(nn.Module):
        def __init__(self):
            super().__init__()
            r = Blip2ForImageTextRetrieval(cfg)
            self.vision_model, self.query_tokens, self.embeddings = r.vision_model, r.query_tokens, r.embeddings
            self.qformer, self.vision_projection, self.text_projection = r.qformer, r.vision_projection, r.text_projection
            self.itm_head = r.itm_head
            self.cls = BertOnlyMLMHead(cfg.qformer_config)
            head = self.cls.predictions
            head.decoder.weight = self.embeddings.word_embeddings.weight  # tied as in LAVIS's BertLMHeadModel
            head.decoder.bias = head.bias
            self.temp = nn.Parameter(0.07 * torch.ones([]))

        def forward(self, px, ids, mask, neg_image_for_text, neg_text_for_image):
            B = px.shape[0]
            with torch.no_grad():
                img = self.vision_model(pixel_values=px).last_hidden_state  # [B, N+1, Dv]
            img_mask = torch.ones(img.shape[:-1], dtype=torch.long)
            queries = self.query_tokens.expand(B, -1, -1)  # [B, Q, D]
            # ITC: the query pass over the image, the text pass alone (unimodal masks).
            q_out = self.qformer(query_embeds=queries, encoder_hidden_states=img,
                                 encoder_attention_mask=img_mask).last_hidden_state  # [B, Q, D]
            img_feat = F.normalize(self.vision_projection(q_out), dim=-1)  # [B, Q, E]
            t_out = self.qformer(query_embeds=self.embeddings(input_ids=ids), query_length=0,
                                 attention_mask=mask).last_hidden_state  # [B, T, D]
            txt_feat = F.normalize(self.text_projection(t_out[:, 0]), dim=-1)  # [B, E]
            sim = torch.einsum("iqe,te->itq", img_feat, txt_feat).max(-1).values  # [B_img, B_txt]
            target = torch.arange(B)
            itc = 0.5 * (F.cross_entropy(sim / self.temp, target, label_smoothing=0.1) +
                         F.cross_entropy(sim.t() / self.temp, target, label_smoothing=0.1))
            # ITM: [pos, pos, neg] texts against [pos, neg, pos] images, bidirectional mask.
            ids3 = torch.cat([ids, ids, ids[neg_text_for_image]])  # [3B, T]
            mask3 = torch.cat([mask, mask, mask[neg_text_for_image]])
            img3 = torch.cat([img, img[neg_image_for_text], img])  # [3B, N+1, Dv]
            att3 = torch.cat([torch.ones(3 * B, Q, dtype=mask.dtype), mask3], 1)  # [3B, Q+T]
            m_out = self.qformer(query_embeds=self.embeddings(input_ids=ids3, query_embeds=self.query_tokens.expand(3 * B, -1, -1)),
                                 query_length=Q, attention_mask=att3, encoder_hidden_states=img3,
                                 encoder_attention_mask=torch.ones(img3.shape[:-1], dtype=torch.long)).last_hidden_state
            itm_logits = self.itm_head(m_out[:, :Q]).mean(1)  # [3B, 2]
            itm = F.cross_entropy(itm_logits, torch.cat([torch.ones(B), torch.zeros(2 * B)]).long())
            # ITG: [DEC] first; queries see queries, text row i sees every query and text j ≤ i not padded.
            dec = ids.clone()
            dec[:, 0] = DEC
            labels = dec.masked_fill(dec == BERT_PAD, -100)
            T = ids.shape[1]
            allowed = torch.zeros(B, Q + T, Q + T, dtype=torch.bool)
            allowed[:, :, :Q] = True
            allowed[:, Q:, Q:] = torch.tril(torch.ones(T, T, dtype=torch.bool)) & mask.bool()[:, None, :]
            bias = torch.zeros(B, 1, Q + T, Q + T).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
            g_out = self.qformer(query_embeds=self.embeddings(input_ids=dec, query_embeds=queries), query_length=Q,
                                 attention_mask=bias, encoder_hidden_states=img,
                                 encoder_attention_mask=img_mask).last_hidden_state  # [B, Q+T, D]
            scores = self.cls(g_out[:, Q:])  # [B, T, V]
            itg = F.cross_entropy(scores[:, :-1].reshape(-1, scores.shape[-1]), labels[:, 1:].reshape(-1),
                                  label_smoothing=0.1)
            return itc + itm + itg, {"itc": itc.item(), "itm": itm.item(), "itg": itg.item()}

    return Stage1()


def tied_keys(model):
    """Every state-dict name of a parameter that another, earlier name already holds."""
    seen, tied = set(), []
    for k, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.append(k)
        seen.add(id(p))
    return tied


def save_model(model, cfg, d):
    from safetensors.torch import save_file
    os.makedirs(d, exist_ok=True)
    tied = set(tied_keys(model))
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    cfg.to_json_file(os.path.join(d, "config.json"))
    return sum(v.numel() for v in state.values())


def random_text(rng, n, length, first, words, tail, pad):
    """[n, length] rows: `first` tokens, then a random number (≥ 4) of words from range `words`,
    then `tail` (may be empty) and `pad`; with their masks."""
    ids = np.full((n, length), pad, dtype=np.int64)
    mask = np.zeros((n, length), dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(4, length - len(first) - len(tail) + 1))
        row = list(first) + list(rng.integers(words[0], words[1], size=k)) + list(tail)
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


def derangement(rng, n):
    """A permutation of range(n) with no fixed point (n ≥ 2)."""
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def cmd_make(a):
    import torch
    from safetensors.numpy import save_file
    from transformers import Blip2ForConditionalGeneration
    torch.manual_seed(0)
    cfg1 = blip2_config(1, a.vision_layers)
    m1 = stage1_module(cfg1)
    with torch.no_grad():
        # BertOnlyMLMHead is built outside a PreTrainedModel: give it transformers' BERT initialisation.
        m1.cls.predictions.transform.dense.weight.normal_(0.0, cfg1.qformer_config.initializer_range)
        m1.cls.predictions.transform.dense.bias.zero_()
        m1.cls.predictions.bias.zero_()
        m1.query_tokens.normal_(0.0, cfg1.qformer_config.initializer_range)
    n1 = save_model(m1, cfg1, os.path.join(a.dir, "stage1"))
    del m1
    torch.manual_seed(1)
    cfg2 = blip2_config(2, a.vision_layers)
    m2 = Blip2ForConditionalGeneration(cfg2)
    with torch.no_grad():
        m2.query_tokens.normal_(0.0, cfg2.qformer_config.initializer_range)
    n2 = save_model(m2, cfg2, os.path.join(a.dir, "stage2"))
    del m2

    rng = np.random.default_rng(0)
    N, B = a.steps, a.batch
    px = rng.standard_normal((N * B, 3, 224, 224), dtype=np.float32)  # rank 4: mmalign's tensors stop there
    s1 = [random_text(rng, B, T1, [CLS], (1996, 29612), [SEP], BERT_PAD) for _ in range(N)]
    s2 = [random_text(rng, B, T2, [OPT_BOS], (4, 50000), [NEWLINE], OPT_PAD) for _ in range(N)]
    s2_ids = np.stack([i for i, _ in s2])
    s2_mask = np.stack([m for _, m in s2])
    s2_labels = np.where(s2_mask == 0, -100, s2_ids)
    save_file({"pixel_values": px,
               "s1_ids": np.stack([i for i, _ in s1]).astype(np.int32), "s1_mask": np.stack([m for _, m in s1]).astype(np.int32),
               "s1_neg_image_for_text": np.stack([derangement(rng, B) for _ in range(N)]).astype(np.int64),
               "s1_neg_text_for_image": np.stack([derangement(rng, B) for _ in range(N)]).astype(np.int64),
               "s2_ids": s2_ids.astype(np.int32), "s2_mask": s2_mask.astype(np.int32), "s2_labels": s2_labels.astype(np.int32)},
              os.path.join(a.dir, "batches.safetensors"))
    print(f"made {a.dir}: stage 1 {n1 / 1e6:.1f} M parameters, stage 2 {n2 / 1e6:.1f} M, {N} batches of {B}")


def decays(name, p):
    """mmalign's default_weight_decay_filter (train/adamw.hpp): matrices only, no embedding tables."""
    if p.ndim < 2:
        return False
    return not any(e in name for e in ("token_embedding", "position_embedding", "embed_tokens", "embed_positions",
                                       "word_embeddings", "position_embeddings"))


def load_tensorwise(model, path):
    """Copies each tensor of the file into the model's parameter of that name, one tensor in memory
    at a time (as from_pretrained loads), checking that every untied parameter is in the file."""
    import torch
    from safetensors import safe_open
    params = dict(model.state_dict(keep_vars=True))
    with safe_open(path, framework="pt") as f, torch.no_grad():
        keys = set(f.keys())
        missing = set(params) - keys - set(tied_keys(model))
        unexpected = keys - set(params)
        assert not missing and not unexpected, (sorted(missing), sorted(unexpected))
        for k in keys:
            params[k].copy_(f.get_tensor(k))


def cmd_run(a):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(a.threads)
    b = load_file(os.path.join(a.dir, "batches.safetensors"))
    d = os.path.join(a.dir, f"stage{a.stage}")
    if a.stage == 1:
        from transformers import Blip2Config
        model = stage1_module(Blip2Config.from_json_file(os.path.join(d, "config.json")))
        load_tensorwise(model, os.path.join(d, "model.safetensors"))
        frozen = ("vision_model.",)
    else:
        from transformers import Blip2ForConditionalGeneration
        model = Blip2ForConditionalGeneration.from_pretrained(d, dtype=torch.float32)
        frozen = ("vision_model.", "language_model.")
    model.train()
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith(frozen))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if decays(n, p)], "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in trainable if not decays(n, p)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)
    expect = json.loads(open(a.expect).readline()) if a.expect else None

    steps, B = b["s1_ids"].shape[:2]
    px = b["pixel_values"].reshape(steps, B, *b["pixel_values"].shape[1:])
    losses, terms, times = [], [], []
    for s in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        if a.stage == 1:
            loss, parts = model(px[s], b["s1_ids"][s].long(), b["s1_mask"][s].long(), b["s1_neg_image_for_text"][s],
                                b["s1_neg_text_for_image"][s])
            terms.append(parts)
        else:
            ids, mask = b["s2_ids"][s].long(), b["s2_mask"][s].long()
            ids = torch.cat([torch.full((ids.shape[0], Q), IMAGE_TOKEN), ids], 1)  # [B, Q+T]
            mask = torch.cat([torch.ones(mask.shape[0], Q, dtype=mask.dtype), mask], 1)
            labels = torch.cat([torch.full((ids.shape[0], Q), -100), b["s2_labels"][s].long()], 1)  # [B, Q+T]
            loss = model(pixel_values=px[s], input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)
        if s == 0 and expect is not None:
            mine = {"loss": losses[0], **(terms[0] if terms else {})}
            theirs = {"loss": expect["losses"][0], **(expect["terms"][0] if expect.get("terms") else {})}
            bad = {k: (v, theirs[k]) for k, v in mine.items() if k in theirs and
                   not abs(v - theirs[k]) <= TOLERANCE * max(abs(theirs[k]), 1e-12)}
            if bad:
                raise SystemExit(f"stage {a.stage} step 1: PyTorch and mmalign losses differ by more than "
                                 f"{TOLERANCE} relative: " + ", ".join(f"{k} {v[0]:.7g} vs {v[1]:.7g}" for k, v in bad.items()))
    timed = times[1:] or times
    print(json.dumps({"impl": "pytorch", "stage": a.stage, "threads": a.threads, "steps": steps, "batch": B,
                      "steps_per_s": len(timed) / sum(timed), "step_times_s": times, "losses": losses, "terms": terms, "peak_rss_mb": peak_rss_mb(),
                      "trainable": sum(p.numel() for _, p in trainable),
                      "decayed": sum(p.numel() for n, p in trainable if decays(n, p)), "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--steps", type=int, default=4, help="make: batches (the first is the warm-up step)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vision-layers", type=int, default=12)
    ap.add_argument("--stage", type=int, choices=[1, 2], default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--expect", default="")
    a = ap.parse_args()
    if a.batch < 2:
        ap.error("--batch must be at least 2 (ITM needs a negative for every example)")
    {"make": cmd_make, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    main()
