#!/usr/bin/env python3
"""Fixtures for tests/eval/test_vqa_accuracy.cpp: VQAv2 accuracy as the official evaluation
computes it.

Run by hand from the repository root (not part of the build), with the official evaluation code
(https://github.com/GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, Python 2)
checked out somewhere:

    python3 tools/make_vqa_eval_fixtures.py PATH/TO/VQA/PythonEvaluationTools/vqaEvaluation/vqaEval.py

The module is loaded with its Python 2 print statements turned into calls (nothing else changes)
and run on a small VQAv2-format set. Writes tests/fixtures/vqa_eval/
  questions.json     {"questions": [{"question_id", "image_id", "question"}]}
  annotations.json   {"annotations": [{"question_id", "image_id", "question_type", "answer_type",
                     "answers": [{"answer", "answer_confidence", "answer_id"} x10], "multiple_choice_answer"}]}
  results.json       [{"question_id", "answer"}]
  accuracy.json      VQAEval(...).accuracy: {"overall", "perQuestionType", "perAnswerType"}
  normalize.json     [{"answer", "normalized"}]: processDigitArticle(processPunctuation(answer))
"""

import copy
import json
import os
import random
import re
import sys

OUT = os.path.join("tests", "fixtures", "vqa_eval")


def load_vqa_eval(path):
    src = open(path).read()
    src = re.sub(r'print (".*?"|\'.*?\')\s*$', r"print(\1)", src, flags=re.M)
    ns = {"__name__": "vqaEval"}
    exec(compile(src, path, "exec"), ns)
    return ns["VQAEval"]


class Index:
    """The parts of vqa.py's VQA object vqaEval reads: qa (question_id → annotation), getQuesIds()."""

    def __init__(self, annotations):
        self.anns = annotations
        self.qa = {a["question_id"]: a for a in annotations}

    def getQuesIds(self):
        return [a["question_id"] for a in self.anns]


# Answers exercising each normalisation rule: number words, articles, contractions without the
# apostrophe, punctuation next to spaces or not, commas inside numbers, periods before digits or
# not, upper case, surrounding white space, tabs and newlines.
ANSWERS = ["two", "2", "the dog", "a dog", "dog", "an apple", "dont", "don't", "yes!", "yes", "Yes", "no.",
           "no", "1,000", "1000", "3.5", "3.5.", "red-white", "red white", "red, white", " blue ", "blue\t",
           "thats ok", "that's ok", "none", "0", "ten", "10", "(left)", "left", "t-shirt", "tshirt",
           "it's", "its", "hot dog", "hot-dog", "hot_dog", "a/b", "a / b", "mr. smith", "mr smith", "one.",
           "five dogs", "5 dogs", "@home", "home", "wont", "won't", "cant", "can't", "U.S.A.", "usa",
           "2 , 3", "2,3", "youre", "you're", "the", "oclock", "o'clock", "café", "CAFÉ"]
Q_TYPES = ["how many", "what color is the", "is the", "what is", "where is the", "none of the above"]
A_TYPES = {"how many": "number", "what color is the": "other", "is the": "yes/no", "what is": "other",
           "where is the": "other", "none of the above": "other"}


def main():
    VQAEval = load_vqa_eval(sys.argv[1])
    rng = random.Random(17)
    questions, annotations, results, normalize = [], [], [], []
    for i in range(56):
        qid = 5000 + 3 * i
        qtype = Q_TYPES[i % len(Q_TYPES)]
        pool = rng.sample(ANSWERS, 4)
        if i % 7 == 0:
            answers = [pool[0]] * 10  # all ten the same: the official code normalises nothing
        else:
            weights = [rng.randint(0, 6) for _ in pool]
            answers = [rng.choices(pool, weights=[w + 1 for w in weights])[0] for _ in range(10)]
        pred = rng.choice(pool + [rng.choice(ANSWERS)])
        if i % 11 == 3:
            pred = "  " + pred.upper() + "\n"
        questions.append({"question_id": qid, "image_id": 100 + i, "question": f"question {i}?"})
        annotations.append({"question_id": qid, "image_id": 100 + i, "question_type": qtype,
                            "answer_type": A_TYPES[qtype], "multiple_choice_answer": answers[0],
                            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                        for k, a in enumerate(answers)]})
        results.append({"question_id": qid, "answer": pred})
    rng.shuffle(results)

    os.makedirs(OUT, exist_ok=True)
    for name, obj in (("questions.json", {"questions": questions}),
                      ("annotations.json", {"annotations": annotations}), ("results.json", results)):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(obj, f, ensure_ascii=False, indent=0)

    gts = Index(copy.deepcopy(annotations))
    res = Index([dict(r, question_type=gts.qa[r["question_id"]]["question_type"],
                      answer_type=gts.qa[r["question_id"]]["answer_type"]) for r in results])
    ev = VQAEval(gts, res, n=2)
    ev.evaluate()
    with open(os.path.join(OUT, "accuracy.json"), "w") as f:
        json.dump(ev.accuracy, f, indent=1)
    norm = VQAEval(gts, res, n=2)
    for a in ANSWERS + ["a.b.c " * 12, "the an a", "(a) [b] {c} <d> \"e\" =f+ \\g `h` ?!;"]:
        normalize.append({"answer": a, "normalized": norm.processDigitArticle(norm.processPunctuation(a))})
    with open(os.path.join(OUT, "normalize.json"), "w") as f:
        json.dump(normalize, f, ensure_ascii=False, indent=0)
    print(json.dumps(ev.accuracy, indent=1))


if __name__ == "__main__":
    main()
