// mmalign/eval/vqa_accuracy.hpp — VQA accuracy as the official VQAv2 evaluation computes it
// (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, its latest version):
//  * every answer has "\n" and "\t" replaced by a space and is stripped;
//  * only when the ten human answers are not all the same are they and the predicted answer
//    normalised (processPunctuation then processDigitArticle, normalize_vqa_answer below);
//  * for each human answer, acc = min(1, #(other human answers equal to the prediction) / 3),
//    "other" meaning every answer entry not equal to this one as a whole (answer text, id and
//    confidence); the question's accuracy is the mean of the ten;
//  * overall, per question type and per answer type: the mean over questions ×100, rounded to two
//    decimals (Python's round: the exact binary value, ties to even).
// LAVIS's port (lavis/common/vqa_tools/vqa_eval.py) differs: it always normalises the prediction
// and only punctuation-processes the human answers; this header follows the official code.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/io/detail/unicode_properties.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::eval {

namespace detail {

/// Python's str.isspace() set for str.split()/strip(): Unicode white space plus U+001C..U+001F.
inline bool py_space(char32_t c) { return io::detail::is_space(c) || (c >= 0x1C && c <= 0x1F); }

inline std::u32string py_strip(std::u32string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && py_space(s[b])) ++b;
    while (e > b && py_space(s[e - 1])) --e;
    return std::u32string(s.substr(b, e - b));
}

inline void replace_all(std::u32string& s, std::u32string_view from, std::u32string_view to) {
    std::u32string out;
    std::size_t i = 0;
    while (true) {
        const std::size_t at = s.find(from, i);
        if (at == std::u32string::npos) break;
        out.append(s, i, at - i);
        out.append(to);
        i = at + from.size();
    }
    out.append(s, i);
    s = std::move(out);
}

inline bool ascii_digit(char32_t c) { return c >= U'0' && c <= U'9'; }

/// vqaEval.py's processPunctuation.
inline std::u32string vqa_process_punctuation(const std::u32string& in) {
    static constexpr char32_t punct[] = {U';', U'/', U'[', U']', U'"', U'{', U'}', U'(', U')', U'=', U'+',
                                         U'\\', U'_', U'-', U'>', U'<', U'@', U'`', U',', U'?', U'!'};
    bool comma_in_number = false;  // re.search("(\d)(,)(\d)", inText)
    for (std::size_t i = 1; i + 1 < in.size(); ++i)
        comma_in_number = comma_in_number || (in[i] == U',' && ascii_digit(in[i - 1]) && ascii_digit(in[i + 1]));
    std::u32string out = in;
    for (char32_t p : punct) {
        const char32_t p_space_text[] = {p, U' ', 0}, space_p_text[] = {U' ', p, 0};
        const std::u32string_view p_space(p_space_text, 2), space_p(space_p_text, 2);
        const bool drop = in.find(p_space) != std::u32string::npos || in.find(space_p) != std::u32string::npos ||
                          comma_in_number;
        replace_all(out, std::u32string(1, p), drop ? U"" : U" ");
    }
    // periodStrip.sub("", outText, re.UNICODE): re.UNICODE lands in sub's `count` argument, so at
    // most 32 (its value) periods not followed by a digit are removed, the leftmost ones.
    std::u32string stripped;
    int removed = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out[i] == U'.' && removed < 32 && !(i + 1 < out.size() && ascii_digit(out[i + 1]))) {
            ++removed;
            continue;
        }
        stripped.push_back(out[i]);
    }
    return stripped;
}

/// vqaEval.py's processDigitArticle: lower case, split on white space, number words to digits,
/// articles dropped, contractions without their apostrophe restored.
inline std::u32string vqa_process_digit_article(const std::u32string& in) {
    static const std::map<std::u32string, std::u32string> manual = {
        {U"none", U"0"}, {U"zero", U"0"}, {U"one", U"1"}, {U"two", U"2"}, {U"three", U"3"}, {U"four", U"4"},
        {U"five", U"5"}, {U"six", U"6"}, {U"seven", U"7"}, {U"eight", U"8"}, {U"nine", U"9"}, {U"ten", U"10"}};
    // Its keys spelled with a capital (Id've, Im, Ive) can never match a lowered word and are left out.
    static const std::map<std::u32string, std::u32string> contractions = {
        {U"aint", U"ain't"}, {U"arent", U"aren't"}, {U"cant", U"can't"}, {U"couldve", U"could've"},
        {U"couldnt", U"couldn't"}, {U"couldn'tve", U"couldn't've"}, {U"couldnt've", U"couldn't've"},
        {U"didnt", U"didn't"}, {U"doesnt", U"doesn't"}, {U"dont", U"don't"}, {U"hadnt", U"hadn't"},
        {U"hadnt've", U"hadn't've"}, {U"hadn'tve", U"hadn't've"}, {U"hasnt", U"hasn't"}, {U"havent", U"haven't"},
        {U"hed", U"he'd"}, {U"hed've", U"he'd've"}, {U"he'dve", U"he'd've"}, {U"hes", U"he's"}, {U"howd", U"how'd"},
        {U"howll", U"how'll"}, {U"hows", U"how's"}, {U"i'dve", U"I'd've"}, {U"isnt", U"isn't"}, {U"itd", U"it'd"},
        {U"itd've", U"it'd've"}, {U"it'dve", U"it'd've"}, {U"itll", U"it'll"}, {U"let's", U"let's"},
        {U"maam", U"ma'am"}, {U"mightnt", U"mightn't"}, {U"mightnt've", U"mightn't've"},
        {U"mightn'tve", U"mightn't've"}, {U"mightve", U"might've"}, {U"mustnt", U"mustn't"},
        {U"mustve", U"must've"}, {U"neednt", U"needn't"}, {U"notve", U"not've"}, {U"oclock", U"o'clock"},
        {U"oughtnt", U"oughtn't"}, {U"ow's'at", U"'ow's'at"}, {U"'ows'at", U"'ow's'at"}, {U"'ow'sat", U"'ow's'at"},
        {U"shant", U"shan't"}, {U"shed've", U"she'd've"}, {U"she'dve", U"she'd've"}, {U"she's", U"she's"},
        {U"shouldve", U"should've"}, {U"shouldnt", U"shouldn't"}, {U"shouldnt've", U"shouldn't've"},
        {U"shouldn'tve", U"shouldn't've"}, {U"somebody'd", U"somebodyd"}, {U"somebodyd've", U"somebody'd've"},
        {U"somebody'dve", U"somebody'd've"}, {U"somebodyll", U"somebody'll"}, {U"somebodys", U"somebody's"},
        {U"someoned", U"someone'd"}, {U"someoned've", U"someone'd've"}, {U"someone'dve", U"someone'd've"},
        {U"someonell", U"someone'll"}, {U"someones", U"someone's"}, {U"somethingd", U"something'd"},
        {U"somethingd've", U"something'd've"}, {U"something'dve", U"something'd've"},
        {U"somethingll", U"something'll"}, {U"thats", U"that's"}, {U"thered", U"there'd"},
        {U"thered've", U"there'd've"}, {U"there'dve", U"there'd've"}, {U"therere", U"there're"},
        {U"theres", U"there's"}, {U"theyd", U"they'd"}, {U"theyd've", U"they'd've"}, {U"they'dve", U"they'd've"},
        {U"theyll", U"they'll"}, {U"theyre", U"they're"}, {U"theyve", U"they've"}, {U"twas", U"'twas"},
        {U"wasnt", U"wasn't"}, {U"wed've", U"we'd've"}, {U"we'dve", U"we'd've"}, {U"weve", U"we've"},
        {U"werent", U"weren't"}, {U"whatll", U"what'll"}, {U"whatre", U"what're"}, {U"whats", U"what's"},
        {U"whatve", U"what've"}, {U"whens", U"when's"}, {U"whered", U"where'd"}, {U"wheres", U"where's"},
        {U"whereve", U"where've"}, {U"whod", U"who'd"}, {U"whod've", U"who'd've"}, {U"who'dve", U"who'd've"},
        {U"wholl", U"who'll"}, {U"whos", U"who's"}, {U"whove", U"who've"}, {U"whyll", U"why'll"},
        {U"whyre", U"why're"}, {U"whys", U"why's"}, {U"wont", U"won't"}, {U"wouldve", U"would've"},
        {U"wouldnt", U"wouldn't"}, {U"wouldnt've", U"wouldn't've"}, {U"wouldn'tve", U"wouldn't've"},
        {U"yall", U"y'all"}, {U"yall'll", U"y'all'll"}, {U"y'allll", U"y'all'll"}, {U"yall'd've", U"y'all'd've"},
        {U"y'alld've", U"y'all'd've"}, {U"y'all'dve", U"y'all'd've"}, {U"youd", U"you'd"},
        {U"youd've", U"you'd've"}, {U"you'dve", U"you'd've"}, {U"youll", U"you'll"}, {U"youre", U"you're"},
        {U"youve", U"you've"}};
    const std::u32string lower = io::detail::to_lower(in);
    std::u32string out;
    std::size_t i = 0;
    while (i < lower.size()) {
        while (i < lower.size() && py_space(lower[i])) ++i;
        std::size_t j = i;
        while (j < lower.size() && !py_space(lower[j])) ++j;
        if (j == i) break;
        std::u32string word = lower.substr(i, j - i);
        i = j;
        if (const auto m = manual.find(word); m != manual.end()) word = m->second;
        if (word == U"a" || word == U"an" || word == U"the") continue;
        if (const auto c = contractions.find(word); c != contractions.end()) word = c->second;
        if (!out.empty()) out.push_back(U' ');
        out += word;
    }
    return out;
}

/// Python's round(x, 2): the two-decimal value nearest the exact binary x, ties to even (glibc's
/// printf rounds the exact value the same way).
inline double round2(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", x);
    return std::strtod(buf, nullptr);
}

}  // namespace detail

/// The official normalisation of an answer: processPunctuation then processDigitArticle.
/// Invalid UTF-8 throws InvalidUtf8Error.
inline std::string normalize_vqa_answer(std::string_view answer) {
    io::detail::validate_utf8(answer, "normalize_vqa_answer");
    const std::u32string u = io::detail::to_u32(answer);
    return io::detail::to_utf8(detail::vqa_process_digit_article(detail::vqa_process_punctuation(u)));
}

/// One annotated question: its types and its human answers as the JSON objects of the file
/// ({"answer", "answer_id", "answer_confidence"}: the whole entry counts when answers are compared).
struct VqaQuestionAnswers {
    std::string question_type, answer_type;
    std::vector<nlohmann::json> answers;
};

/// The accuracy of one prediction against one question's human answers, in [0, 1], unrounded.
inline double vqa_question_accuracy(const VqaQuestionAnswers& q, std::string_view predicted) {
    auto clean = [](std::string_view s) {
        io::detail::validate_utf8(s, "vqa accuracy");
        std::u32string u = io::detail::to_u32(s);
        detail::replace_all(u, U"\n", U" ");
        detail::replace_all(u, U"\t", U" ");
        return detail::py_strip(u);
    };
    std::vector<nlohmann::json> gts = q.answers;
    std::vector<std::u32string> texts;
    for (const auto& a : gts) texts.push_back(clean(a.at("answer").get<std::string>()));
    std::u32string res = clean(predicted);
    bool differ = false;
    for (const auto& t : texts) differ = differ || t != texts.front();
    if (differ) {
        for (auto& t : texts) t = detail::vqa_process_digit_article(detail::vqa_process_punctuation(t));
        res = detail::vqa_process_digit_article(detail::vqa_process_punctuation(res));
    }
    for (std::size_t k = 0; k < gts.size(); ++k) gts[k]["answer"] = io::detail::to_utf8(texts[k]);
    double sum = 0;
    for (std::size_t k = 0; k < gts.size(); ++k) {
        int matching = 0;
        for (std::size_t o = 0; o < gts.size(); ++o)
            if (gts[o] != gts[k] && texts[o] == res) ++matching;
        sum += std::min(1.0, matching / 3.0);
    }
    return gts.empty() ? 0.0 : sum / static_cast<double>(gts.size());
}

struct VqaScores {
    double overall = 0;
    std::map<std::string, double> per_question_type, per_answer_type;

    /// {"overall", "perQuestionType", "perAnswerType"}: the official evaluation's names, percent.
    nlohmann::json to_json() const {
        return {{"overall", overall}, {"perQuestionType", per_question_type}, {"perAnswerType", per_answer_type}};
    }
    std::string json() const { return to_json().dump(); }
};

/// The official accuracy table of predictions[i] against questions[i] (rounded percentages).
inline VqaScores vqa_accuracy(const std::vector<VqaQuestionAnswers>& questions, const std::vector<std::string>& predictions) {
    std::map<std::string, std::pair<double, int>> by_q, by_a;
    double sum = 0;
    for (std::size_t i = 0; i < questions.size(); ++i) {
        const double acc = vqa_question_accuracy(questions[i], predictions.at(i));
        sum += acc;
        auto& q = by_q[questions[i].question_type];
        q.first += acc;
        ++q.second;
        auto& a = by_a[questions[i].answer_type];
        a.first += acc;
        ++a.second;
    }
    VqaScores s;
    if (questions.empty()) return s;
    s.overall = detail::round2(100 * sum / static_cast<double>(questions.size()));
    for (const auto& [k, v] : by_q) s.per_question_type[k] = detail::round2(100 * v.first / v.second);
    for (const auto& [k, v] : by_a) s.per_answer_type[k] = detail::round2(100 * v.first / v.second);
    return s;
}

}  // namespace mmalign::eval
