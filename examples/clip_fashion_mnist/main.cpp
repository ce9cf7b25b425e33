// Trains a small CLIP from scratch on Fashion-MNIST (Xiao et al. 2017) and evaluates it
// zero-shot: images are paired with captions drawn from templates over their class name, the
// model learns only from the InfoNCE objective, and classification at test time prompts each
// class name through the template ensemble, as CLIP's zero-shot evaluation does.
//
//   clip_fashion_mnist [--data DIR] [--out DIR] [--quick] [--epochs E] [--batch B] [--threads T]
//                      [--seed S] [--lr X] [--steps N] [--stop-after N] [--resume CKPT] [--tensorboard DIR]
//                      [--skip-nonfinite-steps] [--allow-nonfinite-checkpoint]
//
// One run writes OUT at a time (OUT/.lock, train/run_directory.hpp: a second run exits naming the
// holder's pid), and temporary files of writers killed mid-save are removed at start. A resumed
// run drops the metrics records the interrupted one logged past the checkpoint, so every step is
// logged once. A step whose loss or gradient is not finite stops the run naming the step and the
// parameter (or is skipped and counted with --skip-nonfinite-steps); a checkpoint holding NaN or
// an infinity is refused unless --allow-nonfinite-checkpoint.
//
// Data: the Debian package dataset-fashion-mnist (IDX gzip under /usr/share/datasets/fashion-mnist).
// Writes OUT/checkpoint.safetensors, OUT/metrics.jsonl, TensorBoard events of the same numbers
// under OUT/tb (or --tensorboard DIR) and the training curves as OUT/curves.svg and .png, and prints
//   zero-shot top1=… i2t_R@1=… t2i_R@1=… train_seconds=…
// Same-class pairs in a batch share their captions' meaning, so the contrastive targets spread
// over every same-class pair (soft targets, as BLIP's retrieval fine-tuning does with image ids)
// instead of treating them as negatives.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/idx.hpp>
#include <mmalign/models/clip.hpp>
#include <mmalign/models/clip_contrastive.hpp>
#include <mmalign/train/adamw.hpp>
#include <mmalign/train/checkpoint.hpp>
#include <mmalign/train/nonfinite.hpp>
#include <mmalign/train/plot.hpp>
#include <mmalign/train/progress.hpp>
#include <mmalign/train/run_directory.hpp>
#include <mmalign/train/schedule.hpp>
#include <mmalign/train/train_step.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../common/cli_options.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

const char* const kClasses[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                  "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
const char* const kTemplates[] = {"a photo of a {}.",          "a black and white photo of a {}.",
                                  "a {} on a plain background.", "a low resolution photo of a {}.",
                                  "a picture of a {}.",        "an image of a {}.",
                                  "a small photo of a {}.",    "a grayscale image of a {}."};
constexpr int kNumTemplates = int(sizeof kTemplates / sizeof *kTemplates);

struct Options {
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::string out = "clip_fashion_mnist_out";
    std::string resume;
    std::string tensorboard;  // default: OUT/tb
    bool quick = false;
    int epochs = 12;
    int batch = 256;
    int threads = 2;
    unsigned seed = 0;
    double lr = 2e-3;
    long steps = -1;       // overrides epochs
    long stop_after = -1;  // stop (with a checkpoint) after this many steps
    bool skip_nonfinite = false, allow_nonfinite_checkpoint = false;
};

const char* const kUsage =
    "usage: clip_fashion_mnist [--data DIR] [--out DIR] [--quick] [--epochs E] [--batch B] [--threads T]\n"
    "                          [--seed S] [--lr X] [--steps N] [--stop-after N] [--resume CKPT]\n"
    "                          [--tensorboard DIR] [--skip-nonfinite-steps] [--allow-nonfinite-checkpoint]\n"
    "writes OUT/metrics.jsonl, TensorBoard events in OUT/tb (or DIR), OUT/curves.svg and\n"
    "OUT/curves.png, and OUT/checkpoint.safetensors (default OUT: clip_fashion_mnist_out); one run\n"
    "per OUT at a time (OUT/.lock)\n"
    "numbers:\n"
    "  --epochs E      [1, 10000], default 12 (at most 4 with --quick)\n"
    "  --batch B       [1, 60000] and at most the training images (12,000 with --quick) and memory; default 256\n"
    "  --threads T     [1, 4096], default 2\n"
    "  --seed S        [0, 4294967295], default 0\n"
    "  --lr X          AdamW's peak learning rate, a finite number > 0, default 0.002\n"
    "  --steps N       [1, 2^40], replaces the epochs; not below a resumed checkpoint's step\n"
    "  --stop-after N  [1, 2^40]: save the checkpoint and stop after step N (past a resumed step)\n"
    "non-finite values:\n"
    "  a step whose loss or gradient is NaN/inf stops the run naming the step and the parameter;\n"
    "  --skip-nonfinite-steps skips it instead (no update), counted as \"skipped_steps\" in metrics.jsonl.\n"
    "  --allow-nonfinite-checkpoint resumes from a checkpoint holding NaN/inf (refused by default).\n";

// ---- data ---------------------------------------------------------------------------------
struct Split {
    index_t n = 0;
    std::vector<std::uint8_t> images;  // [n, 28, 28]
    std::vector<std::uint8_t> labels;  // [n]
};

Split load_split(const std::string& dir, const std::string& prefix) {
    const std::string img = dir + "/" + prefix + "-images-idx3-ubyte.gz", lab = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
    if (!std::filesystem::exists(img) || !std::filesystem::exists(lab))
        throw IoError(img + ": not found. Install the Debian package dataset-fashion-mnist "
                            "(apt-get install dataset-fashion-mnist) or pass --data DIR");
    io::IdxArray a = io::load_idx(img), b = io::load_idx(lab);
    if (a.shape.rank() != 3 || a.shape[1] != 28 || a.shape[2] != 28)
        throw IoError(img + ": expected images [N, 28, 28], found " + a.shape.str());
    if (b.shape.rank() != 1 || b.shape[0] != a.shape[0])
        throw IoError(lab + ": expected " + std::to_string(a.shape[0]) + " labels, found " + b.shape.str());
    for (std::uint8_t y : b.data)
        if (y > 9) throw IoError(lab + ": label " + std::to_string(y) + " is outside 0..9");
    return {a.shape[0], std::move(a.data), std::move(b.data)};
}

// ---- captions and a word-level tokenizer built from them --------------------------------------
std::string caption(int cls, int tmpl) {
    std::string t = kTemplates[tmpl];
    return t.replace(t.find("{}"), 2, kClasses[cls]);
}

struct WordTokenizer {
    std::map<std::string, std::int32_t> vocab;  // 0 pad, 1 bos, words, last id eos
    std::int32_t bos = 1, eos = 0;
    index_t length = 0;  // bos + longest caption + eos

    static std::vector<std::string> words(const std::string& s) {
        std::vector<std::string> w;
        std::string cur;
        for (char c : s) {
            if (std::isalnum(static_cast<unsigned char>(c))) cur += char(std::tolower(static_cast<unsigned char>(c)));
            else if (!cur.empty()) w.push_back(cur), cur.clear();
        }
        if (!cur.empty()) w.push_back(cur);
        return w;
    }
    WordTokenizer() {
        std::int32_t next = 2;
        index_t longest = 0;
        for (int c = 0; c < 10; ++c)
            for (int t = 0; t < kNumTemplates; ++t) {
                auto w = words(caption(c, t));
                longest = std::max<index_t>(longest, index_t(w.size()));
                for (auto& x : w)
                    if (!vocab.count(x)) vocab[x] = next++;
            }
        eos = next;  // the largest id, as in CLIP
        length = longest + 2;
    }
    index_t vocab_size() const { return eos + 1; }
    /// Writes [bos, words…, eos, pad…] and the attention mask into row `r` of [N, length].
    void encode(const std::string& s, std::int32_t* ids, std::int32_t* mask) const {
        std::fill(ids, ids + length, 0);
        std::fill(mask, mask + length, 0);
        index_t t = 0;
        ids[t++] = bos;
        for (auto& w : words(s)) ids[t++] = vocab.at(w);
        ids[t++] = eos;
        std::fill(mask, mask + t, 1);
    }
};

// Fashion-MNIST's training-set mean and standard deviation of pixel/255.
constexpr float kMean = 0.2860f, kStd = 0.3530f;

void fill_pixels(const Split& s, const index_t* idx, index_t n, float* out) {
    for (index_t i = 0; i < n; ++i) {
        const std::uint8_t* src = s.images.data() + idx[i] * 784;
        for (int p = 0; p < 784; ++p) out[i * 784 + p] = (src[p] / 255.f - kMean) / kStd;
    }
}

// ---- evaluation ----------------------------------------------------------------------------
struct Eval {
    double top1 = 0, i2t_r1 = 0, i2t_r5 = 0, t2i_r1 = 0, t2i_r5 = 0;
};

void normalize_rows(Tensor<float>& t) {
    for (index_t r = 0; r < t.dim(0); ++r) {
        float* x = t.data() + r * t.dim(1);
        double s = 0;
        for (index_t i = 0; i < t.dim(1); ++i) s += double(x[i]) * x[i];
        const float inv = float(1 / std::sqrt(std::max(s, 1e-24)));
        for (index_t i = 0; i < t.dim(1); ++i) x[i] *= inv;
    }
}

Tensor<float> embed_images(Be& be, const Clip<Be>& model, const Split& s, index_t n) {
    const index_t E = model.config.projection_dim, chunk = 500;
    Tensor<float> out(Shape{n, E}), px(Shape{chunk, 1, 28, 28});
    std::vector<index_t> idx(static_cast<std::size_t>(chunk));
    for (index_t start = 0; start < n; start += chunk) {
        const index_t m = std::min(chunk, n - start);
        std::iota(idx.begin(), idx.end(), start);
        fill_pixels(s, idx.data(), m, px.data());
        model.image_features(be, px.view().slice(0, m), out.view().slice(start, start + m));
    }
    normalize_rows(out);
    return out;
}

Tensor<float> embed_texts(Be& be, const Clip<Be>& model, const WordTokenizer& tok, const std::vector<std::string>& texts) {
    const index_t n = index_t(texts.size()), L = tok.length;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n * L)), mask(static_cast<std::size_t>(n * L));
    for (index_t i = 0; i < n; ++i) tok.encode(texts[std::size_t(i)], &ids[std::size_t(i * L)], &mask[std::size_t(i * L)]);
    Tensor<float> out(Shape{n, model.config.projection_dim});
    model.text_features(be, ids, mask, n, out.view());
    normalize_rows(out);
    return out;
}

/// Zero-shot top-1 over the first n test images (class embedding = the normalised mean of its
/// normalised template embeddings), and class-level retrieval R@1/5 over the first min(n, 1000):
/// a retrieved caption (or image) counts when it describes (shows) the query's class.
Eval evaluate(Be& be, const Clip<Be>& model, const WordTokenizer& tok, const Split& test, index_t n) {
    Eval ev;
    const index_t E = model.config.projection_dim;
    Tensor<float> img = embed_images(be, model, test, n);
    Tensor<float> cls(Shape{10, E}, 0.f);
    for (int c = 0; c < 10; ++c) {
        std::vector<std::string> prompts;
        for (int t = 0; t < kNumTemplates; ++t) prompts.push_back(caption(c, t));
        Tensor<float> e = embed_texts(be, model, tok, prompts);
        for (index_t t = 0; t < e.dim(0); ++t)
            for (index_t i = 0; i < E; ++i) cls(c, i) += e(t, i);
    }
    normalize_rows(cls);
    index_t hits = 0;
    for (index_t r = 0; r < n; ++r) {
        int best = 0;
        float best_s = -2;
        for (int c = 0; c < 10; ++c) {
            float s = 0;
            for (index_t i = 0; i < E; ++i) s += img(r, i) * cls(c, i);
            if (s > best_s) best_s = s, best = c;
        }
        hits += best == test.labels[std::size_t(r)];
    }
    ev.top1 = double(hits) / double(n);

    const index_t m = std::min<index_t>(n, 1000);
    std::vector<std::string> caps;
    for (index_t r = 0; r < m; ++r) caps.push_back(caption(test.labels[std::size_t(r)], int(r % kNumTemplates)));
    Tensor<float> txt = embed_texts(be, model, tok, caps);
    Tensor<float> sim(Shape{m, m});
    be.gemm(Trans::N, Trans::T, m, m, E, 1.f, img.data(), E, txt.data(), E, 0.f, sim.data(), m);
    auto recall = [&](bool by_row, index_t k) {
        index_t found = 0;
        std::vector<index_t> order(static_cast<std::size_t>(m));
        for (index_t q = 0; q < m; ++q) {
            std::iota(order.begin(), order.end(), 0);
            auto score = [&](index_t j) { return by_row ? sim(q, j) : sim(j, q); };
            std::partial_sort(order.begin(), order.begin() + k, order.end(),
                              [&](index_t a, index_t b) { return score(a) > score(b); });
            for (index_t j = 0; j < k; ++j)
                if (test.labels[std::size_t(order[std::size_t(j)])] == test.labels[std::size_t(q)]) {
                    ++found;
                    break;
                }
        }
        return double(found) / double(m);
    };
    ev.i2t_r1 = recall(true, 1), ev.i2t_r5 = recall(true, 5), ev.t2i_r1 = recall(false, 1), ev.t2i_r5 = recall(false, 5);
    return ev;
}

Options parse(int argc, char** argv) {
    Options o;
    constexpr long long big = 1LL << 40;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw cli::UsageError(a + " needs a value");
            return argv[++i];
        };
        if (a == "--data") o.data = next();
        else if (a == "--out") o.out = next();
        else if (a == "--resume") o.resume = next();
        else if (a == "--tensorboard") o.tensorboard = next();
        else if (a == "--quick") o.quick = true;
        else if (a == "--epochs") o.epochs = int(cli::integer(a, next(), 1, 10000));
        else if (a == "--batch") o.batch = int(cli::integer(a, next(), 1, 60000));
        else if (a == "--threads") o.threads = int(cli::integer(a, next(), 1, 4096));
        else if (a == "--seed") o.seed = unsigned(cli::integer(a, next(), 0, 4294967295LL));
        else if (a == "--lr") o.lr = cli::real(a, next(), [](double x) { return x > 0; }, "a positive number");
        else if (a == "--steps") o.steps = long(cli::integer(a, next(), 1, big));
        else if (a == "--stop-after") o.stop_after = long(cli::integer(a, next(), 1, big));
        else if (a == "--skip-nonfinite-steps") o.skip_nonfinite = true;
        else if (a == "--allow-nonfinite-checkpoint") o.allow_nonfinite_checkpoint = true;
        else if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else throw cli::UsageError("unknown option \"" + a + "\"");
    }
    return o;
}

/// A lower bound on what training with batch B allocates, in bytes: the [B, B] soft targets, logits
/// and their gradients (six such matrices), the pixels and token rows, and the activations each
/// layer keeps for the backward pass ([N, 4D + M] and the attention scores [H, N, N] per example).
double training_bytes(const Clip<Be>::Config& c, index_t B) {
    const double n_v = double(c.vision.tokens()), n_t = double(c.text.max_positions);
    const double vision = double(c.vision.layers) *
                          (n_v * double(4 * c.vision.hidden + c.vision.mlp_hidden) + double(c.vision.heads) * n_v * n_v);
    const double text =
        double(c.text.layers) * (n_t * double(4 * c.text.hidden + c.text.mlp_hidden) + double(c.text.heads) * n_t * n_t);
    const double b = double(B);
    return 4.0 * (6.0 * b * b + b * (784.0 + 2.0 * n_t + vision + text));
}

/// The skipped-step count a checkpoint kept (0 in one written before it was kept).
long skipped_steps_of(const std::string& path) {
    const auto meta = io::SafetensorsFile::open(path).metadata();
    const auto it = meta.find("skipped_steps");
    if (it == meta.end()) return 0;
    return long(cli::integer(path + ": metadata \"skipped_steps\"", it->second, 0, 1LL << 40));
}

int run(int argc, char** argv) {
    Options opt = parse(argc, argv);
    // One run per output folder, taken before anything is read or written; leftovers of writers
    // killed mid-save (checkpoint.safetensors.tmp.<pid>.<n>) go.
    RunDirectory out_dir(opt.out);
    out_dir.remove_stale_temporaries();
    Split train = load_split(opt.data, "train"), test = load_split(opt.data, "t10k");
    WordTokenizer tok;
    // --quick: a smaller model on a fifth of the data, for CI (asserted target below).
    const index_t train_n = opt.quick ? 12000 : train.n, eval_n = opt.quick ? 2000 : test.n;
    if (opt.quick) opt.epochs = std::min(opt.epochs, 4);

    Clip<Be>::Config cfg;
    cfg.vision = {.image_size = 28, .patch_size = 7, .channels = 1, .hidden = opt.quick ? 48 : 96,
                  .layers = opt.quick ? 2 : 3, .heads = 4, .mlp_hidden = opt.quick ? 96 : 192,
                  .activation = Activation::gelu, .eps = 1e-5};
    cfg.text = {.vocab_size = tok.vocab_size(), .max_positions = tok.length, .hidden = opt.quick ? 32 : 64, .layers = 1,
                .heads = 4, .mlp_hidden = opt.quick ? 64 : 128, .activation = Activation::gelu, .eps = 1e-5,
                .eos_token_id = tok.eos};
    cfg.projection_dim = opt.quick ? 32 : 64;
    // The batch is checked against the data and the memory before anything is sized from it: an
    // epoch holds train_n / B steps, and B = 0 or B > train_n would give none.
    if (opt.batch > train_n)
        throw cli::OptionError("--batch: " + std::to_string(opt.batch) + " is more than the " + std::to_string(train_n) +
                               " training images" + (opt.quick ? " of --quick" : "") +
                               "; an epoch would hold no step (give at most " + std::to_string(train_n) + ")");
    cli::check_memory("--batch", opt.batch, training_bytes(cfg, opt.batch), "training's batch matrices and activations");
    Clip<Be> model(cfg);
    model.init_like_hf(opt.seed + 1);

    Be be({.threads = opt.threads});
    const index_t B = opt.batch, L = tok.length;
    const long steps_per_epoch = long(train_n / B);
    const long total = opt.steps > 0 ? opt.steps : steps_per_epoch * opt.epochs;
    AdamW<Be> adamw({.lr = opt.lr, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.05});
    WarmupCosine sched{.base_lr = opt.lr, .warmup = std::min(200L, total / 10), .total = total};
    // One step: zero_grad, features, soft-target InfoNCE, backward, clip the global norm to 1,
    // AdamW at the schedule's rate, clamp the logit scale (train/train_step.hpp). A non-finite
    // loss or gradient makes no update; below, it stops the run or is counted as skipped.
    TrainStep<Be> trainer(adamw, {.max_grad_norm = 1.0, .skip_nonfinite = true});
    ClipContrastiveTask<Be> task(model);

    long step = 0, skipped = 0;
    if (!opt.resume.empty()) {
        step = long(load_checkpoint(opt.resume, model, adamw, {.allow_nonfinite = opt.allow_nonfinite_checkpoint}));
        skipped = skipped_steps_of(opt.resume);
        // A run told to end before its checkpoint would rewind it (and save a step-N checkpoint
        // whose optimizer has taken more steps).
        if (step > total)
            throw cli::OptionError(std::string(opt.steps > 0 ? "--steps" : "--epochs") + ": the run would end at step " +
                                   std::to_string(total) + ", before step " + std::to_string(step) + " where " +
                                   opt.resume + " is; give --steps " + std::to_string(step) + " or more");
        if (opt.stop_after > 0 && opt.stop_after <= step)
            throw cli::OptionError("--stop-after: " + std::to_string(opt.stop_after) + " is not past step " +
                                   std::to_string(step) + " where " + opt.resume + " is");
        // What an interrupted run logged past the checkpoint is logged again below: its loss
        // records (logged at the 0-based step index, so index `step` too) and anything later. The
        // epoch-end evaluation at `step` was logged before the checkpoint was saved and stays.
        drop_metrics_records(opt.out + "/metrics.jsonl", [&](const nlohmann::json& rec) {
            const std::int64_t at = record_step(rec);
            return at > step || (at == step && !rec.contains("zero_shot_top1_2k"));
        });
    }
    const std::string tb_dir = opt.tensorboard.empty() ? opt.out + "/tb" : opt.tensorboard;
    MetricsLog metrics(opt.out + "/metrics.jsonl", /*append=*/!opt.resume.empty(),
                       {.tensorboard_dir = tb_dir, .start_step = step});
    std::printf("clip_fashion_mnist: %lld parameters, %ld steps of batch %lld (%ld per epoch), %d threads%s\n",
                (long long)count_parameters(model), total, (long long)B, steps_per_epoch, opt.threads,
                step ? (", resuming at step " + std::to_string(step)).c_str() : "");

    Tensor<float> px(Shape{B, 1, 28, 28});  // [B, 1, 28, 28]
    Tensor<float> soft(Shape{B, B});         // [B, B] soft contrastive targets
    std::vector<std::int32_t> ids(static_cast<std::size_t>(B * L)), mask(static_cast<std::size_t>(B * L));
    std::vector<index_t> perm(static_cast<std::size_t>(train_n)), batch_idx(static_cast<std::size_t>(B));
    std::vector<std::pair<double, double>> loss_curve, acc_curve;
    Progress progress(total, "train");
    double train_seconds = 0, loss_avg = 0;
    long epoch_of_perm = -1;
    auto t0 = std::chrono::steady_clock::now();

    for (; step < total; ++step) {
        // The data order and captions are functions of (seed, step), so a resumed run sees the
        // same batches as an uninterrupted one.
        const long epoch = step / steps_per_epoch, within = step % steps_per_epoch;
        if (epoch != epoch_of_perm) {
            std::iota(perm.begin(), perm.end(), 0);
            std::mt19937_64 rng(opt.seed * 1000003ULL + std::uint64_t(epoch));
            std::shuffle(perm.begin(), perm.end(), rng);
            epoch_of_perm = epoch;
        }
        std::mt19937_64 cap_rng(opt.seed * 7919ULL + std::uint64_t(step) * 104729ULL);
        for (index_t i = 0; i < B; ++i) {
            const index_t k = perm[std::size_t(within * B + i)];
            batch_idx[std::size_t(i)] = k;
            tok.encode(caption(train.labels[std::size_t(k)], int(cap_rng() % kNumTemplates)), &ids[std::size_t(i * L)],
                       &mask[std::size_t(i * L)]);
        }
        fill_pixels(train, batch_idx.data(), B, px.data());
        for (index_t i = 0; i < B; ++i) {
            index_t same = 0;
            for (index_t j = 0; j < B; ++j) same += train.labels[std::size_t(batch_idx[std::size_t(i)])] == train.labels[std::size_t(batch_idx[std::size_t(j)])];
            for (index_t j = 0; j < B; ++j)
                soft(i, j) = train.labels[std::size_t(batch_idx[std::size_t(i)])] == train.labels[std::size_t(batch_idx[std::size_t(j)])] ? 1.f / float(same) : 0.f;
        }

        const auto record = trainer(be, task,
                                    {.pixels = px.view(), .ids = ids, .attention_mask = mask, .soft_i2t = soft.view(),
                                     .soft_t2i = soft.view()},
                                    sched(step));
        const auto& r = record.result;
        const double gnorm = record.grad_norm, lr = record.lr;
        if (record.nonfinite && !opt.skip_nonfinite) throw Error(nonfinite_step_message(be, model, step + 1, record.loss, gnorm));
        skipped += record.nonfinite ? 1 : 0;

        if (!record.nonfinite)
            loss_avg = step % steps_per_epoch == 0 && loss_curve.empty() ? r.loss : 0.95 * loss_avg + 0.05 * r.loss;
        if (step % 10 == 0 || step + 1 == total) {
            // JSON has no NaN: a skipped step's non-finite figures are written as null.
            auto figure = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
            metrics.write({{"step", step}, {"epoch", double(step) / steps_per_epoch}, {"loss", figure(r.loss)}, {"lr", lr},
                           {"grad_norm", figure(gnorm)}, {"logit_scale", model.logit_scale.value(0)},
                           {"batch_i2t_acc", r.image_to_text_accuracy}, {"skipped_steps", skipped}});
            if (!record.nonfinite) loss_curve.emplace_back(double(step) / steps_per_epoch, r.loss);
        }
        char status[96];
        std::snprintf(status, sizeof status, "epoch %ld loss %.4f", epoch + 1, loss_avg);
        progress.update(step + 1, status);
        const bool epoch_end = (step + 1) % steps_per_epoch == 0 && step + 1 < total;
        if (epoch_end) {
            train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            Eval ev = evaluate(be, model, tok, test, std::min<index_t>(eval_n, 2000));
            metrics.write({{"step", step + 1}, {"epoch", double(step + 1) / steps_per_epoch}, {"zero_shot_top1_2k", ev.top1}});
            acc_curve.emplace_back(double(step + 1) / steps_per_epoch, ev.top1);
            t0 = std::chrono::steady_clock::now();
        }
        if (opt.stop_after > 0 && step + 1 == opt.stop_after && step + 1 < total) {
            save_checkpoint(opt.out + "/checkpoint.safetensors", model, adamw, step + 1,
                            {{"skipped_steps", std::to_string(skipped)}});
            std::printf("stopped after step %ld; resume with --resume %s/checkpoint.safetensors\n", step + 1, opt.out.c_str());
            return 0;
        }
    }
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    Eval ev = evaluate(be, model, tok, test, eval_n);
    acc_curve.emplace_back(double(total) / steps_per_epoch, ev.top1);
    save_checkpoint(opt.out + "/checkpoint.safetensors", model, adamw, total, {{"skipped_steps", std::to_string(skipped)}});
    metrics.write({{"step", total}, {"skipped_steps", skipped}, {"zero_shot_top1", ev.top1}, {"i2t_R@1", ev.i2t_r1}, {"i2t_R@5", ev.i2t_r5},
                   {"t2i_R@1", ev.t2i_r1}, {"t2i_R@5", ev.t2i_r5}, {"train_seconds", train_seconds},
                   {"test_images", eval_n}});

    // The curves as OUT/curves.svg and OUT/curves.png (train/plot.hpp): the logged batch losses and
    // their centred mean on the left, zero-shot top-1 on the right, both against epochs.
    auto grouped = [](long long n) {  // 277633 → "277,633"
        const std::string d = std::to_string(n);
        std::string out;
        for (std::size_t i = 0; i < d.size(); ++i) {
            if (i > 0 && (d.size() - i) % 3 == 0) out += ',';
            out += d[i];
        }
        return out;
    };
    plot::Figure fig;
    fig.title = "A " + grouped((long long)count_parameters(model)) + "-parameter CLIP trained on Fashion-MNIST";
    plot::Panel& lp = fig.panels.emplace_back();
    lp.title = "Training loss (symmetric InfoNCE, batch " + std::to_string(B) + ")";
    lp.x = {.label = "epoch (passes over " + grouped(train_n) + " images)", .min = 0.0};
    lp.y.label = "loss (nats)";
    // The batch losses, and their centred mean over 2h + 1 logged points (fewer at the ends), which
    // follows the trend without the lag of an exponential average; h = 0 on short runs.
    const std::size_t h = loss_curve.size() / 50;
    plot::Series batch_loss{.name = "batch loss, every 10th step", .points = loss_curve,
                            .color = h ? plot::colors::pink : plot::colors::red, .line_width = h ? 1.5 : 2.5,
                            .annotate_last = h == 0, .decimals = 3};
    plot::Series smooth{.name = "mean of " + std::to_string(2 * h + 1) + " logged batches",
                        .color = plot::colors::red, .line_width = 2.5, .decimals = 3};
    for (std::size_t i = 0; i < loss_curve.size(); ++i) {
        const std::size_t a = i >= h ? i - h : 0, b = std::min(loss_curve.size(), i + h + 1);
        double sum = 0;
        for (std::size_t j = a; j < b; ++j) sum += loss_curve[j].second;
        smooth.points.emplace_back(loss_curve[i].first, sum / double(b - a));
    }
    lp.series = {batch_loss};
    if (h > 0) lp.series.push_back(smooth);
    plot::Panel& ap = fig.panels.emplace_back();
    ap.title = "Zero-shot top-1 accuracy";
    ap.x = {.label = "epoch", .min = 0.0};
    ap.y.label = "top-1 accuracy (%)";
    plot::Series per_epoch{.name = grouped(std::min<index_t>(eval_n, 2000)) + " test images, each epoch",
                           .color = plot::colors::blue, .marker_radius = 3.5, .decimals = 1, .unit = "%"};
    for (std::size_t i = 0; i + 1 < acc_curve.size(); ++i) per_epoch.points.emplace_back(acc_curve[i].first, 100 * acc_curve[i].second);
    plot::Series final_eval{.name = grouped(eval_n) + " test images, end",
                            .points = {{acc_curve.back().first, 100 * ev.top1}},
                            .color = plot::colors::green,
                            .line_width = 0,
                            .marker_radius = 5,
                            .decimals = 2,
                            .unit = "%"};
    ap.series = {per_epoch, final_eval};
    fig.save(opt.out + "/curves");

    std::printf("final loss %.4f (mean of the last %zu logged: %.4f); curves: %s/curves.svg and .png; "
                "TensorBoard: tensorboard --logdir %s\n",
                loss_curve.empty() ? 0.0 : loss_curve.back().second, h + 1, smooth.points.empty() ? 0.0 : smooth.points.back().second,
                opt.out.c_str(), tb_dir.c_str());
    std::printf("zero-shot top1=%.4f i2t_R@1=%.4f t2i_R@1=%.4f i2t_R@5=%.4f t2i_R@5=%.4f train_seconds=%.1f\n", ev.top1,
                ev.i2t_r1, ev.t2i_r1, ev.i2t_r5, ev.t2i_r5, train_seconds);
    const double target = opt.quick ? 0.75 : 0.85;
    if (opt.steps < 0 && ev.top1 < target) {
        std::fprintf(stderr, "zero-shot top-1 %.4f is below the target %.2f\n", ev.top1, target);
        return 3;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // Exit codes: 0, 1 for bad input or a failed run (one line on stderr), 2 for bad usage (with
    // the usage text), 3 when the full run misses its accuracy target.
    return cli::run_main("clip_fashion_mnist", kUsage, [&] { return run(argc, argv); });
}
