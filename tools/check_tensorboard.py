#!/usr/bin/env python3
"""TensorBoard event files of mmalign, checked with the PyPI `tensorboard` package's own code.

Run by hand (never by CI):  pip install tensorboard

  python3 tools/check_tensorboard.py make-fixture
      Writes tests/fixtures/tensorboard/scalars.tfevents: the events listed in
      tests/fixtures/tensorboard/scalars.json, written through tensorboard's EventFileWriter
      (tensorboard.summary.writer.event_file_writer) with the listed wall times (time.time is
      fixed while the writer starts, so its first event, file_version "brain.Event:2", has the
      listed wall_time too). tests/train/test_tensorboard.cpp writes the same events with
      mmalign's TensorBoardWriter and requires the same bytes.

  python3 tools/check_tensorboard.py check RUN_DIR [--tb TB_DIR]
      Loads every event file in TB_DIR (default RUN_DIR/tb) with tensorboard's EventAccumulator
      and compares each scalar with RUN_DIR/metrics.jsonl: every numeric field of a record other
      than "step" must be a scalar of that tag at the record's step, equal to the JSON value
      rounded to float32 (simple_value is a float), and TensorBoard must hold no other scalar.
      A (tag, step) written twice (a resumed run re-logging a step) is compared by its last value
      in both. Exits 1 on any difference.
"""
import argparse
import glob
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "tensorboard")


def as_float(v):
    return float(v) if not isinstance(v, str) else {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]


def make_fixture():
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    with open(os.path.join(FIXTURES, "scalars.json")) as f:
        spec = json.load(f)
    out = os.path.join(FIXTURES, "scalars.tfevents")
    with tempfile.TemporaryDirectory() as tmp:
        with mock.patch("time.time", return_value=spec["wall_time"]):
            w = EventFileWriter(tmp)
        for ev in spec["events"]:
            e = event_pb2.Event(wall_time=ev["wall_time"], step=ev["step"])
            if ev.get("session_start"):
                e.session_log.status = event_pb2.SessionLog.START
            else:
                e.summary.CopyFrom(summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=tag, simple_value=as_float(v)) for tag, v in ev["scalars"]]))
            w.add_event(e)
        w.close()
        (path,) = glob.glob(os.path.join(tmp, "events.out.tfevents.*"))
        shutil.copyfile(path, out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(spec['events']) + 1} events)")


def to_float32(v):
    """Python's float rounded to float32 as C++'s float(double) does (round to nearest, overflow to inf)."""
    if not math.isfinite(v):
        return v
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:  # beyond float32's range: the cast gives infinity
        return math.copysign(math.inf, v)


def check(run_dir, tb_dir):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tb_dir = tb_dir or os.path.join(run_dir, "tb")
    files = sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")))
    if not files:
        print(f"no event files in {tb_dir}")
        return 1
    problems = []
    for path in files:
        events = list(EventFileLoader(path).Load())
        if not events or events[0].file_version != "brain.Event:2":
            problems.append(f"{path}: the first event is not file_version brain.Event:2")

    expected = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for n, line in enumerate(f, 1):
            rec = json.loads(line)
            for key, v in rec.items():
                if key == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                expected[(key, rec["step"])] = float(v)

    # purge_orphaned_data=False: compare everything the files hold (TensorBoard's UI would drop
    # the events a resumed run's SessionLog START supersedes; metrics.jsonl keeps them too).
    acc = ea.EventAccumulator(tb_dir, size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
    acc.Reload()
    actual = {}
    for tag in acc.Tags()["scalars"]:
        for s in acc.Scalars(tag):
            actual[(tag, s.step)] = s.value

    for key in sorted(set(expected) - set(actual)):
        problems.append(f"missing in TensorBoard: {key[0]} at step {key[1]} (metrics.jsonl: {expected[key]!r})")
    for key in sorted(set(actual) - set(expected)):
        problems.append(f"not in metrics.jsonl: {key[0]} at step {key[1]} (TensorBoard: {actual[key]!r})")
    worst = 0.0
    for key in sorted(set(expected) & set(actual)):
        want, got = to_float32(expected[key]), actual[key]
        if math.isnan(want) and math.isnan(got):
            continue
        if want == got:
            continue
        rel = abs(got - want) / max(abs(want), 1e-30)
        worst = max(worst, rel)
        if rel > 2.0 ** -23:
            problems.append(f"{key[0]} at step {key[1]}: TensorBoard {got!r}, metrics.jsonl {expected[key]!r}")
    tags = sorted({k[0] for k in actual})
    print(f"{len(files)} event file(s), {len(tags)} tags, {len(actual)} scalars; metrics.jsonl: {len(expected)} values; "
          f"largest relative difference after float32 rounding: {worst:.3g}")
    print("tags: " + ", ".join(tags))
    for p in problems[:50]:
        print("DIFFERENCE: " + p)
    if problems:
        print(f"{len(problems)} difference(s)")
        return 1
    print("every scalar matches metrics.jsonl")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("make-fixture")
    c = sub.add_parser("check")
    c.add_argument("run_dir")
    c.add_argument("--tb", default=None)
    args = ap.parse_args()
    if args.mode == "make-fixture":
        make_fixture()
        return 0
    return check(args.run_dir, args.tb)


if __name__ == "__main__":
    sys.exit(main())
