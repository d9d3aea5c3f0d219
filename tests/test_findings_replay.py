"""Reliability findings of issue 9 that lived in the replay and the analysis
(inputs copied from the fuzzing campaign into tests/corpus/): each must end in
one clear error line, a small non-zero exit, no signal, no hang, no
sanitizer report, and no output file.

usage: test_findings_replay.py CASE"""
import os
import subprocess

from helpers import KVTRACE, expect_clean_failure, main, workdir

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def fails(finding, name, *args, mention):
    out = os.path.join(workdir(), "out.h5")
    path = os.path.join(CORPUS, finding, name)
    p = subprocess.run([KVTRACE, *args[:1], path, *args[1:], "-o", out], capture_output=True, timeout=60)
    line = expect_clean_failure(p, name)
    for word in mention:
        assert word in line, (word, line)
    assert not os.path.exists(out), "an output file was left behind"


def f17_zero_sequences():
    """A trace whose /sequences group is empty: analyze read sequence 0's length."""
    fails("F17-analyze-zero-sequences", "zero_seq.h5", "analyze", mention=["no sequences"])


def f18_worker_thread_errors():
    """Stored attention of the wrong type, read in a worker thread: HDF5 printed
    its 33-line error stack there (its automatic printing is per thread)."""
    fails("F18-hdf5-diag-from-worker-threads", "attention_str.h5", "simulate", "--policy", "h2o", "--budget", "2",
          "--threads", "2", mention=["sequence 0 layer 0", "attention"])


def f22_nan_scores():
    """q = 3e38 in one row: q·k overflows, the softmax gave NaN; analyze's
    ranks looped forever and simulate dropped the sequence from its means.
    Both now refuse the trace, naming the sequence, layer and row."""
    for command in (["analyze", "--bootstrap", "10", "--threads", "2"],
                    ["simulate", "--policy", "h2o", "--budget", "4", "--threads", "2"]):
        fails("F22-analyze-infinite-loop-nan", "bigq.h5", *command, mention=["sequence 0 layer 0", "row 3", "not finite"])


main({f.__name__: f for f in (f17_zero_sequences, f18_worker_thread_errors, f22_nan_scores)})
