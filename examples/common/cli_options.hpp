// examples/common/cli_options.hpp — the command-line conventions mmalign-blip and mmalign-blip2
// share: the flags both take, option values parsed with errors that name the option, the
// generation options mapped onto generation::GenerationConfig (transformers' names and defaults),
// and the exit codes (bad usage 2 with the usage text; bad input — a file, a field, an option's
// value — 1 with one line on stderr).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <mmalign/generation/config_json.hpp>
#include <mmalign/io/json_fields.hpp>

namespace mmalign::cli {

/// A command line that does not fit the usage: exit 2 with the usage text.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// An option given a value it cannot take: bad input, one line, exit 1.
struct OptionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// An option's value as the messages quote it: in single quotes, control characters and bytes
/// outside printable ASCII as \xNN, cut after 64 characters (a value can be anything a shell passes).
inline std::string quoted(const std::string& v) {
    constexpr std::size_t max_chars = 64;
    std::string out = "'";
    for (std::size_t i = 0; i < v.size() && i < max_chars; ++i) {
        const auto c = static_cast<unsigned char>(v[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += char(c);
        } else {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (v.size() > max_chars) out += "...";
    return out + "'";
}

/// A whole-number option value in [min, max]. Decimal digits with an optional sign and nothing
/// else (no spaces, no "1e3", no "0x"), as strtol would take them less its silent wrap-around:
///   "--batch: expected an integer, found 'abc'"
///   "--threads: 3000000000 is outside the allowed range [1, 4096]"
/// A value too large for any integer type is out of range, not malformed.
inline long long integer(const std::string& flag, const std::string& v, long long min, long long max) {
    const char* first = v.data();
    const char* last = v.data() + v.size();
    if (first != last && *first == '+' && last - first > 1 && first[1] != '-') ++first;  // "+5", as strtol takes it
    long long x = 0;
    const auto [end, ec] = std::from_chars(first, last, x);
    if (first == last || end != last || (ec != std::errc() && ec != std::errc::result_out_of_range))
        throw OptionError(flag + ": expected an integer, found " + quoted(v));
    if (ec == std::errc::result_out_of_range || x < min || x > max)
        throw OptionError(flag + ": " + v +  // digits only here
                          " is outside the allowed range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return x;
}

/// A finite real option value; `ok` says whether it is in range, `range` names that range in the
/// message ("a positive number"). NaN and infinities are refused whatever `ok` says:
///   "--learning-rate: expected a number, found 'fast'"
///   "--learning-rate: expected a positive number, found '-1'" (or 'nan', 'inf')
template <class Ok>
double real(const std::string& flag, const std::string& v, Ok ok, const char* range) {
    const char* first = v.data();
    const char* last = v.data() + v.size();
    if (first != last && *first == '+' && last - first > 1 && first[1] != '-') ++first;
    double x = 0;
    const auto [end, ec] = std::from_chars(first, last, x);
    if (first == last || end != last || (ec != std::errc() && ec != std::errc::result_out_of_range))
        throw OptionError(flag + ": expected a number, found " + quoted(v));
    if (ec == std::errc::result_out_of_range || !std::isfinite(x) || !ok(x))
        throw OptionError(flag + ": expected " + range + ", found " + quoted(v));
    return x;
}

/// What this process may allocate, in bytes, and where the bound comes from: the machine's
/// physical memory, or a smaller address-space or data limit (ulimit -v / -d). 0 when unknown.
struct MemoryBound {
    double bytes = 0;
    const char* source = "of memory here";
};
inline MemoryBound memory_bound() {
    MemoryBound m;
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) m.bytes = double(pages) * double(page);
    for (const int resource : {RLIMIT_AS, RLIMIT_DATA}) {
        rlimit r{};
        if (::getrlimit(resource, &r) == 0 && r.rlim_cur != RLIM_INFINITY && (m.bytes <= 0 || double(r.rlim_cur) < m.bytes)) {
            m.bytes = double(r.rlim_cur);
            m.source = resource == RLIMIT_AS ? "this process may map (ulimit -v)" : "this process may allocate (ulimit -d)";
        }
    }
    return m;
}

/// Refuses an option whose value would make the command allocate more than memory_bound(),
/// before anything is allocated: `bytes` is the command's estimate of what `value` costs (a lower
/// bound, so a refusal is certain), `what` says what it is for. A command that could only swap or
/// end in std::bad_alloc is better stopped with the option named.
inline void check_memory(const std::string& flag, long long value, double bytes, const std::string& what) {
    const MemoryBound have = memory_bound();
    if (have.bytes <= 0 || bytes <= have.bytes) return;
    char msg[256];
    std::snprintf(msg, sizeof msg, "%lld needs at least %.2f GiB for %s, more than the %.2f GiB %s", value,
                  bytes / double(1ULL << 30), what.c_str(), have.bytes / double(1ULL << 30), have.source);
    throw OptionError(flag + ": " + msg + "; give a smaller value");
}

/// The generation options' lines of a usage text (each tool says above them where its defaults
/// come from and below them how its generation ends).
inline constexpr const char* generation_options_help =
    "  --beams N                 num_beams; 1 is greedy search                            default 1\n"
    "  --max-new-tokens N        max_new_tokens                                           default 20, the row\n"
    "                            then capped at text_config.max_position_embeddings (prompt included)\n"
    "  --min-new-tokens N        min_new_tokens: the end token is suppressed until N are new  default 0\n"
    "  --repetition-penalty X    repetition_penalty; 1 is none                            default 1.0\n"
    "  --length-penalty X        length_penalty: beam scores are sum(log p) / length^X    default 1.0\n"
    "  --sample                  do_sample: multinomial sampling (beam sampling with --beams)  default off\n"
    "  --top-k K                 top_k, with --sample; 0 is no top-k filter               default 50\n"
    "  --top-p P                 top_p in (0, 1], with --sample                           default 1.0\n"
    "  --temperature T           temperature > 0, with --sample                           default 1.0\n"
    "  --seed S                  the sampler's seed (std::mt19937_64), with --sample      default 0\n"
    "  --generation-config FILE  start from a generation_config.json's fields (the options above win)\n"
    "  Fixed unless FILE sets them: early_stopping false, num_return_sequences 1.\n";

/// The generation options given on the command line; unset ones keep the defaults.
struct GenerationFlags {
    std::optional<index_t> beams, max_new_tokens, min_new_tokens, top_k;
    std::optional<double> repetition_penalty, length_penalty, top_p, temperature;
    std::optional<std::uint64_t> seed;
    bool sample = false;
    std::string config_file;

    bool any() const {
        return beams || max_new_tokens || min_new_tokens || top_k || repetition_penalty || length_penalty || top_p ||
               temperature || seed || sample || !config_file.empty();
    }

    /// Takes `flag` when it is a generation option (reading its value through `value()`); false otherwise.
    template <class Value>
    bool take(const std::string& flag, Value&& value) {
        const auto positive = [](double x) { return x > 0; };
        const auto fraction = [](double x) { return x > 0 && x <= 1; };
        const auto any_real = [](double) { return true; };
        if (flag == "--beams") beams = integer(flag, value(), 1, 1024);
        else if (flag == "--max-new-tokens") max_new_tokens = integer(flag, value(), 1, io::max_config_size);
        else if (flag == "--min-new-tokens") min_new_tokens = integer(flag, value(), 0, io::max_config_size);
        else if (flag == "--top-k") top_k = integer(flag, value(), 0, io::max_config_size);
        else if (flag == "--seed") seed = std::uint64_t(integer(flag, value(), 0, (1LL << 62)));
        else if (flag == "--repetition-penalty") repetition_penalty = real(flag, value(), positive, "a positive number");
        else if (flag == "--length-penalty") length_penalty = real(flag, value(), any_real, "a finite number");
        else if (flag == "--top-p") top_p = real(flag, value(), fraction, "a number in (0, 1]");
        else if (flag == "--temperature") temperature = real(flag, value(), positive, "a positive number");
        else if (flag == "--sample") sample = true;
        else if (flag == "--generation-config") config_file = value();
        else return false;
        return true;
    }

    /// The sampling options are refused without --sample (unless a file may turn sampling on).
    void check_usage() const {
        if (!sample && config_file.empty() && (top_k || top_p || temperature || seed))
            throw UsageError("--top-k, --top-p, --temperature and --seed need --sample");
    }

    /// The GenerationConfig: transformers' defaults, then the file's fields, then the options.
    generation::GenerationConfig config() const {
        generation::GenerationConfig c;
        if (!config_file.empty()) c = generation::load_generation_config(config_file);
        if (beams) c.num_beams = *beams;
        if (max_new_tokens) c.max_new_tokens = *max_new_tokens;
        if (min_new_tokens) c.min_new_tokens = *min_new_tokens;
        if (repetition_penalty) c.repetition_penalty = *repetition_penalty;
        if (length_penalty) c.length_penalty = *length_penalty;
        if (sample) c.do_sample = true;
        if (top_k) c.top_k = *top_k;
        if (top_p) c.top_p = *top_p;
        if (temperature) c.temperature = *temperature;
        if (seed) c.seed = *seed;
        const std::string problem = c.problem();
        if (!problem.empty())
            throw OptionError((config_file.empty() ? "generation options" : config_file) + ": " + problem);
        return c;
    }
};

/// What the BLIP tools' command lines hold; each tool adds its own flags before these.
struct Args {
    std::string command, model, prompt, task;
    bool has_prompt = false;
    std::vector<std::string> images, texts, questions;
    GenerationFlags gen;
    bool json = false;
    int threads = 0;
    long batch = 1, iters = 10;

    /// Takes `flag` when it is one of the shared flags; false otherwise.
    template <class Value>
    bool take(const std::string& flag, Value&& value) {
        if (flag == "--model") model = value();
        else if (flag == "--image") images.push_back(value());
        else if (flag == "--text") texts.push_back(value());
        else if (flag == "--question") questions.push_back(value());
        else if (flag == "--prompt") prompt = value(), has_prompt = true;
        else if (flag == "--task") task = value();
        else if (flag == "--json") json = true;
        else if (flag == "--threads") threads = int(integer(flag, value(), 1, 4096));
        else if (flag == "--batch") batch = long(integer(flag, value(), 1, 1 << 16));
        else if (flag == "--iters") iters = long(integer(flag, value(), 1, 1 << 20));
        else return gen.take(flag, value);
        return true;
    }
};

/// Parses argv[1] (the command, one of `commands`) and the flags after it: `extra(flag, value)`
/// takes a tool's own flags first (returning whether it did), then the shared ones. `--help`
/// prints `usage` and exits 0.
template <class Tool, class Extra>
void parse_command_line(int argc, char** argv, const char* usage, const std::vector<std::string>& commands, Tool& a,
                        Extra&& extra) {
    if (argc < 2) throw UsageError("missing command");
    a.command = argv[1];
    if (a.command == "--help" || a.command == "-h") {
        std::fputs(usage, stdout);
        std::exit(0);
    }
    bool known = false;
    for (const auto& c : commands) known = known || c == a.command;
    if (!known) throw UsageError("unknown command \"" + a.command + "\"");
    for (int i = 2; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(f + " needs a value");
            return argv[++i];
        };
        if (!extra(f, value) && !a.take(f, value)) throw UsageError("unknown option \"" + f + "\"");
    }
    if (a.model.empty()) throw UsageError("--model DIR is required");
    a.gen.check_usage();
}

/// main()'s body with the tools' exit codes: 0, 1 for bad input (one line), 2 for bad usage.
template <class Body>
int run_main(const char* tool, const char* usage, Body&& body) {
    try {
        return body();
    } catch (const UsageError& e) {
        std::fprintf(stderr, "%s: %s\n%s", tool, e.what(), usage);
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: out of memory (an allocation failed; smaller inputs or --batch may fit)\n", tool);
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", tool, e.what());
        return 1;
    }
}

}  // namespace mmalign::cli
