#!/usr/bin/env python3
"""Parity fixtures for tests/generation/test_generate.cpp: the ids (and beam scores) that
transformers' own `GenerationMixin.generate` returns for a tiny deterministic causal LM, over a
matrix of settings (greedy, beam search, length limits, repetition penalty, n-gram blocking, eos
and pad handling, batched prompts padded on either side), plus the filtered first-token
distributions of sampling settings.

Run by hand from the repository root (not part of the build or of CI):

    pip install torch transformers safetensors
    python3 tools/make_generation_fixtures.py
    # writes tests/fixtures/generation/{toy.safetensors, cases.json, generation_config.json, blip_config.json}

Versions used for the committed fixture: torch 2.15.0+cu132 (CPU), transformers 5.25.0,
safetensors 0.8.0, Python 3.11.7 (also recorded in cases.json's "meta").

The toy model (ToyLM below; the C++ test implements the same function against the Decoder concept
of include/mmalign/generation/decoder.hpp). For a row of ids x[0..T) with attention mask m (all
ones when absent; generate appends ones for generated tokens):
    before_t = sum_{s<t} m_s                       kept tokens before position t
    ctx_t    = sum_{s<t} m_s F[x_s] / max(1, before_t)   mean context embedding of the kept prefix
    h_t      = tanh(E[x_t] + P[min(before_t, 63)] + ctx_t)
    logits_t = W h_t + b                            computed in float64, returned as float32
so every logit depends on the whole kept prefix, and a right-padded row's last (padding) position
still yields logits, as in any decoder-only model fed right padding. The model takes no
position_ids, so generate does not build any; it runs with use_cache=False (every step refeeds the
whole sequence), which changes nothing in what generate computes.

Robustness: the C++ side computes the same float64 function and float32 log-softmax, but a
different summation order could move a value by an ulp. Every case is therefore also run three
times with logits perturbed by uniform noise of +-2e-5 (far above float32 rounding of values of
this size); the script fails if any perturbed run returns other ids, so no committed case hinges
on a near tie.

cases.json: "model" (sizes and special ids), "prompts" (ids and attention masks; null: no mask
passed), "cases" (name, prompt, the generate() keyword arguments as "config" under transformers'
names, the returned "sequences", beam search's "sequences_scores" (else null), and "steps", the
forward passes generate made: its decoding steps), "sampling" (settings, prompt, and the first
step's token probabilities after transformers' processors and warpers; 0 for removed tokens),
"config_files" (the values transformers reads from generation_config.json and blip_config.json).
"""

import json
import os
import platform
import sys
import warnings

import safetensors
import torch
import transformers
from safetensors.torch import save
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "fixtures", "generation")

VOCAB, HIDDEN, POSITIONS, MAX_POSITION_EMBEDDINGS = 24, 8, 64, 32
PAD, BOS, EOS, EOS2 = 0, 1, 2, 5
NOISE = 2e-5


class ToyConfig(PreTrainedConfig):
    model_type = "mmalign_toy_lm"

    def __init__(self, vocab_size=VOCAB, hidden_size=HIDDEN, position_table=POSITIONS,
                 max_position_embeddings=MAX_POSITION_EMBEDDINGS, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.position_table = position_table
        # generate caps its default max_length (prompt + 20) at this, as for any model.
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class ToyLM(PreTrainedModel, GenerationMixin):
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        V, D, P = config.vocab_size, config.hidden_size, config.position_table
        self.token = nn.Parameter(torch.zeros(V, D, dtype=torch.float64))
        self.context = nn.Parameter(torch.zeros(V, D, dtype=torch.float64))
        self.position = nn.Parameter(torch.zeros(P, D, dtype=torch.float64))
        self.out_weight = nn.Parameter(torch.zeros(V, D, dtype=torch.float64))
        self.out_bias = nn.Parameter(torch.zeros(V, dtype=torch.float64))
        self.noise = 0.0
        self.noise_generator = torch.Generator()
        self.calls = 0  # forward passes: generate's decoding steps (use_cache=False: one per step)
        self.post_init()

    def _init_weights(self, module):
        pass  # weights are set by make_model()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        self.calls += 1
        B, T = input_ids.shape
        m = torch.ones(B, T, dtype=torch.float64) if attention_mask is None else attention_mask.to(torch.float64)
        before = torch.cumsum(m, 1) - m
        pos = before.long().clamp(max=self.config.position_table - 1)
        fx = self.context[input_ids] * m[..., None]
        ctx = (torch.cumsum(fx, 1) - fx) / before.clamp(min=1)[..., None]
        h = torch.tanh(self.token[input_ids] + self.position[pos] + ctx)
        logits = h @ self.out_weight.T + self.out_bias
        if self.noise:
            u = torch.rand(logits.shape, generator=self.noise_generator, dtype=torch.float64)
            logits = logits + self.noise * (2 * u - 1)
        return CausalLMOutput(logits=logits.float())


def make_model() -> ToyLM:
    model = ToyLM(ToyConfig()).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.token.copy_(torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64))
        model.context.copy_(1.5 * torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64))
        model.position.copy_(0.7 * torch.randn(POSITIONS, HIDDEN, generator=g, dtype=torch.float64))
        model.out_weight.copy_(1.2 * torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64))
        model.out_bias.copy_(0.3 * torch.randn(VOCAB, generator=g, dtype=torch.float64))
    return model


def padded(rows, side):
    """ids and attention mask of `rows` padded with PAD on `side` ("left" or "right")."""
    T = max(len(r) for r in rows)
    ids, mask = [], []
    for r in rows:
        pad = [PAD] * (T - len(r))
        ids.append(pad + r if side == "left" else r + pad)
        mask.append([0] * len(pad) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(pad))
    return {"ids": ids, "mask": mask}


TEXTS = [[5, 7, 9, 11, 3], [4, 8, 6], [13, 3, 15, 4, 9, 10, 21]]
LONG = [[6, 9, 4, 11, 3, 7, 15, 8, 19, 13, 10, 4, 22, 9, 17], [12, 4, 9, 20, 3, 8, 11, 6, 14, 21, 7, 16]]
PROMPTS = {
    "left": padded(TEXTS, "left"),
    "right": padded(TEXTS, "right"),
    "long_left": padded(LONG, "left"),
    "single": {"ids": [[BOS, 6, 9, 4]], "mask": None},          # no attention_mask passed
    "even": {"ids": [[3, 8, 14, 6, 9, 20], [17, 4, 4, 12, 7, 3]], "mask": [[1] * 6, [1] * 6]},  # all ones
}

IDS = {"eos_token_id": EOS, "pad_token_id": PAD}


def cases():
    out = []

    def add(name, prompts, **config):
        for p in prompts:
            out.append({"name": f"{name}/{p}", "prompt": p, "config": config})

    both = ["left", "right"]
    every = ["left", "right", "single", "even"]
    # Greedy.
    add("greedy max_new_tokens", every, max_new_tokens=12, **IDS)
    add("greedy default lengths", every + ["long_left"], **IDS)  # 20 new tokens, capped at 32 positions
    add("greedy default lengths no eos", ["long_left"])  # runs into the cap
    add("greedy max_length", every, max_length=15, **IDS)
    add("greedy min_new_tokens", every, min_new_tokens=6, max_new_tokens=12, **IDS)
    add("greedy min_length", both, min_length=13, max_new_tokens=12, **IDS)
    # On "left", greedy rows emit eos at generated steps 11, 10 and 9: a minimum of exactly 10 lets
    # the second row end where it would anyway and holds the third back (the bound is exclusive).
    add("greedy min_new_tokens at an eos step", ["left"], min_new_tokens=10, max_new_tokens=14, **IDS)
    add("greedy min_length at an eos step", ["left"], min_length=17, max_new_tokens=14, **IDS)
    add("greedy repetition_penalty", every, repetition_penalty=1.3, max_new_tokens=12, **IDS)
    add("greedy no_repeat_ngram_size", both, no_repeat_ngram_size=2, max_new_tokens=12, **IDS)
    add("greedy two eos ids", both, eos_token_id=[EOS, EOS2], pad_token_id=PAD, max_new_tokens=12)
    add("greedy pad 3", both, eos_token_id=EOS, pad_token_id=3, max_new_tokens=12)
    add("greedy pad unset", both, eos_token_id=EOS, max_new_tokens=12)
    add("greedy no eos", ["left"], max_new_tokens=8)
    # Beam search: every num_beams x length_penalty x early_stopping. 16 new tokens leave room for
    # the three early_stopping rules to end at different hypotheses (checked in main()).
    returns = {2: 1, 3: 3, 4: 2}
    for nb in (2, 3, 4):
        for lp in (0.6, 1.0, 2.0):
            for es in (True, False, "never"):
                add(f"beam {nb} lp {lp} early_stopping {es}", both + ["even"], num_beams=nb, length_penalty=lp,
                    early_stopping=es, num_return_sequences=returns[nb], max_new_tokens=16, **IDS)
    add("beam single prompt", ["single", "even"], num_beams=3, num_return_sequences=2, max_new_tokens=10, **IDS)
    add("beam repetition_penalty min_new_tokens", both, num_beams=3, repetition_penalty=1.3, min_new_tokens=4,
        max_new_tokens=10, **IDS)
    add("beam min_length", ["left"], num_beams=2, min_length=12, max_new_tokens=10, **IDS)
    add("beam two eos ids", both, num_beams=3, num_return_sequences=3, eos_token_id=[EOS, EOS2], pad_token_id=PAD,
        max_new_tokens=10)
    add("beam pad 3", both, num_beams=3, num_return_sequences=3, eos_token_id=[EOS, EOS2], pad_token_id=3,
        max_new_tokens=10)
    add("beam max_length", both, num_beams=2, max_length=14, **IDS)
    add("beam no_repeat_ngram_size", both, num_beams=3, no_repeat_ngram_size=2, max_new_tokens=10, **IDS)
    add("beam negative length_penalty never", both, num_beams=3, length_penalty=-1.0, early_stopping="never",
        num_return_sequences=3, max_new_tokens=10, **IDS)
    add("beam zero length_penalty", both, num_beams=3, length_penalty=0.0, num_return_sequences=2,
        max_new_tokens=10, **IDS)
    add("beam default lengths", ["left", "long_left"], num_beams=3, **IDS)
    add("beam no eos", ["left"], num_beams=2, max_new_tokens=6)
    return out


SAMPLING = [
    {"name": "temperature 0.7 top_k 6", "config": {"do_sample": True, "temperature": 0.7, "top_k": 6}},
    {"name": "top_p 0.8", "config": {"do_sample": True, "top_p": 0.8}},
    {"name": "temperature 1.3 top_k 12 top_p 0.9",
     "config": {"do_sample": True, "temperature": 1.3, "top_k": 12, "top_p": 0.9}},
    {"name": "no filter", "config": {"do_sample": True, "top_k": 0}},
    {"name": "repetition_penalty min_new_tokens top_k 8",
     "config": {"do_sample": True, "repetition_penalty": 1.3, "min_new_tokens": 3, "temperature": 0.9, "top_k": 8}},
]
SAMPLING_PROMPT = [BOS, 6, 9, 4, 6]


def run(model, case, noise=0.0, seed=0):
    p = PROMPTS[case["prompt"]]
    ids = torch.tensor(p["ids"])
    kwargs = dict(case["config"])
    if p["mask"] is not None:
        kwargs["attention_mask"] = torch.tensor(p["mask"])
    model.noise = noise
    model.noise_generator.manual_seed(seed)
    model.calls = 0
    out = model.generate(ids, use_cache=False, return_dict_in_generate=True, output_scores=True, **kwargs)
    model.noise = 0.0
    scores = getattr(out, "sequences_scores", None)
    return out.sequences.tolist(), (scores.tolist() if scores is not None else None), model.calls


def finish_steps(sequences, prompt_len, eos):
    """For each row, the generated step at which it emitted an eos id (None if it never did)."""
    eos = set(eos if isinstance(eos, list) else [eos])
    steps = []
    for row in sequences:
        gen = row[prompt_len:]
        steps.append(next((i for i, t in enumerate(gen) if t in eos), None))
    return steps


def main() -> None:
    torch.manual_seed(0)  # nothing should draw from the global generator; belt and braces
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")  # generate's advice about max_length / right padding
    model = make_model()

    records = []
    fragile = []
    for case in cases():
        seqs, scores, steps = run(model, case)
        for trial in range(3):
            noisy = run(model, case, noise=NOISE, seed=100 + trial)
            if noisy[0] != seqs or noisy[2] != steps:
                fragile.append(case["name"])
                break
        records.append({**case, "sequences": seqs, "sequences_scores": scores, "steps": steps})
    if fragile:
        sys.exit("cases whose ids change under +-%g logit noise (near ties): %s" % (NOISE, fragile))

    # The properties the matrix is meant to exercise must actually occur.
    greedy = next(r for r in records if r["name"] == "greedy max_new_tokens/left")
    steps = finish_steps(greedy["sequences"], 7, EOS)
    assert steps == [11, 10, 9], f"greedy rows should finish apart, at the steps the min cases assume: {steps}"
    for name in ("greedy min_new_tokens at an eos step/left", "greedy min_length at an eos step/left"):
        held = finish_steps(next(r for r in records if r["name"] == name)["sequences"], 7, EOS)
        assert held[1] == 10 and held[2] != 9, f"{name}: {held}"
    capped = next(r for r in records if r["name"] == "greedy default lengths no eos/long_left")
    assert len(capped["sequences"][0]) == MAX_POSITION_EMBEDDINGS, "the default max_length cap did not bind"
    beam_finish = [r for r in records if r["config"].get("num_beams", 1) > 1 and "eos_token_id" in r["config"]]
    some_early = sum(any(s is not None for s in finish_steps(r["sequences"], len(PROMPTS[r["prompt"]]["ids"][0]),
                                                              r["config"]["eos_token_id"])) for r in beam_finish)
    assert some_early > len(beam_finish) // 2, "too few beam cases return finished (eos) hypotheses"
    # The early_stopping rules must lead to different results somewhere in the matrix.
    by_name = {r["name"]: r["sequences"] for r in records}
    def differs(a, b):
        return any(by_name[f"beam {nb} lp {lp} early_stopping {a}/{p}"] != by_name[f"beam {nb} lp {lp} early_stopping {b}/{p}"]
                   for nb in (2, 3, 4) for lp in (0.6, 1.0, 2.0) for p in ("left", "right", "even"))
    assert differs(True, False) and differs(False, "never") and differs(True, "never"), "early_stopping never matters"
    # transformers' beam search fills finished hypotheses with `pad_token_id or eos_token_id[0]`: eos
    # when pad is 0 (falsy), pad otherwise. Both fills must show up in the returned ids.
    fill_eos = next(r for r in records if r["name"] == "beam two eos ids/right")
    fill_pad = next(r for r in records if r["name"] == "beam pad 3/right")
    assert any(row[-2:] == [EOS, EOS] and EOS2 in row[7:] for row in fill_eos["sequences"]), "no eos fill seen"
    assert any(row[-2:] == [3, 3] for row in fill_pad["sequences"]), "no pad fill seen"

    sampling = []
    for s in SAMPLING:
        out = model.generate(torch.tensor([SAMPLING_PROMPT]), use_cache=False, max_new_tokens=1,
                             return_dict_in_generate=True, output_scores=True, eos_token_id=EOS, pad_token_id=PAD,
                             **s["config"])
        processed = out.scores[0][0].double()  # after every processor and warper, before the softmax
        probs = torch.softmax(processed, -1)
        probs[torch.isinf(processed)] = 0.0
        sampling.append({**s, "prompt": SAMPLING_PROMPT, "probs": probs.tolist()})

    config_files = write_config_files()

    tensors = {
        "token": model.token.detach().clone(),
        "context": model.context.detach().clone(),
        "position": model.position.detach().clone(),
        "out_weight": model.out_weight.detach().clone(),
        "out_bias": model.out_bias.detach().clone(),
    }
    meta = {
        "generator": "tools/make_generation_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }
    doc = {
        "meta": meta,
        "model": {"vocab_size": VOCAB, "hidden_size": HIDDEN, "position_table": POSITIONS,
                  "max_position_embeddings": MAX_POSITION_EMBEDDINGS, "pad": PAD, "bos": BOS, "eos": EOS},
        "prompts": PROMPTS,
        "cases": records,
        "sampling": sampling,
        "config_files": config_files,
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "toy.safetensors"), "wb") as f:
        f.write(deterministic(save(tensors, metadata=meta)))
    with open(os.path.join(OUT_DIR, "cases.json"), "w") as f:
        f.write(compact_json(doc) + "\n")
    n_beam = sum(1 for r in records if r["config"].get("num_beams", 1) > 1)
    print(f"wrote {len(records)} cases ({n_beam} beam search, {len(records) - n_beam} greedy) and "
          f"{len(sampling)} sampling distributions to {os.path.normpath(OUT_DIR)}")


def write_config_files():
    """A generation_config.json written by transformers' GenerationConfig.save_pretrained, and a BLIP
    config.json written by BlipConfig (its text_config holds the special ids), each with the values
    transformers reads back from it (GenerationConfig.from_pretrained; GenerationConfig.from_model_config
    over the file's JSON, the path for folders without a generation_config.json)."""
    from transformers import BlipConfig, GenerationConfig

    fields = ["max_length", "max_new_tokens", "min_length", "min_new_tokens", "do_sample", "num_beams",
              "num_return_sequences", "early_stopping", "length_penalty", "repetition_penalty",
              "no_repeat_ngram_size", "temperature", "top_k", "top_p", "bos_token_id", "eos_token_id", "pad_token_id"]
    GenerationConfig(max_new_tokens=30, min_new_tokens=2, do_sample=True, num_beams=4, num_return_sequences=2,
                     early_stopping="never", length_penalty=0.6, repetition_penalty=1.2, no_repeat_ngram_size=3,
                     temperature=0.8, top_k=10, top_p=0.9, bos_token_id=1, eos_token_id=[2, 5],
                     pad_token_id=0).save_pretrained(OUT_DIR)
    loaded = GenerationConfig.from_pretrained(OUT_DIR)
    blip = BlipConfig(text_config={"max_position_embeddings": 40})
    blip_path = os.path.join(OUT_DIR, "blip_config.json")
    blip.to_json_file(blip_path)
    with open(blip_path) as f:
        from_model = GenerationConfig.from_model_config(json.load(f))
    return {
        "generation_config.json": {k: getattr(loaded, k) for k in fields},
        "blip_config.json": {**{k: getattr(from_model, k) for k in fields},
                             "max_position_embeddings": blip.text_config.max_position_embeddings},
    }


def compact_json(doc) -> str:
    """Indented JSON whose innermost lists (id rows, probabilities) stay on one line each."""
    def enc(v, indent):
        pad = "  " * indent
        if isinstance(v, dict):
            items = [f'{pad}  {json.dumps(k)}: {enc(x, indent + 1)}' for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
        if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            return "[\n" + ",\n".join(f"{pad}  {enc(x, indent + 1)}" for x in v) + "\n" + pad + "]"
        return json.dumps(v)
    return enc(doc, 0)


def deterministic(blob: bytes) -> bytes:
    """safetensors writes __metadata__ in hash-map order; rewrite the JSON header with sorted keys
    (same offsets, padded with spaces to 8 bytes) so that regenerating leaves git clean."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


if __name__ == "__main__":
    sys.exit(main())
