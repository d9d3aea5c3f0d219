"""Every command in README.md runs as written.

The shell commands of README.md's ```sh blocks are run in order (a block may
use what an earlier one wrote), each with bash from the root of a scratch copy
of the repository that has the committed traces, `../shared` (the model) and
`build/` (this test's kvtrace build).  A command fails the test when it exits
non-zero.  Blocks fenced as ```sh illustration hold commands with placeholders
(MODEL.gguf) and are checked only for carrying one.  `scripts/test` is the one
command not run here: this test is part of what it runs.

Case `commands` runs the README; case `detects_breakage` breaks one command in
the scratch copy's README and checks that the same runner reports it."""
import os
import re
import shutil
import subprocess
import sys
import time

from helpers import KVTRACE, SHARED, main

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]*(\.(gguf|h5|txt|bin|csv)|/)|\bMODEL\b|\bFILE\b|\bDIR\b")
COMMAND_LIMIT_S = 600


def readme_blocks(path):
    """[(info, [command, ...])] of every ```sh block; backslash-continued lines joined."""
    blocks, info, lines = [], None, []
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        fence = re.match(r"^```(.*)$", line.strip())
        if fence and info is None:
            info, lines = fence.group(1).strip(), []
            continue
        if fence and info is not None:
            if info.split()[:1] == ["sh"]:
                blocks.append((info, join_continuations(lines)))
            info = None
            continue
        if info is not None:
            lines.append(line)
    return blocks


def join_continuations(lines):
    commands, current = [], ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += (" " if current else "") + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            commands.append(current)
            current = ""
    if current:
        commands.append(current)
    return commands


def scratch_copy():
    """The tracked files of the repository, ../shared and build/ beside them."""
    root = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kvtrace-readme-{os.getpid()}-{int(time.time())}")
    repo = os.path.join(root, "kvtrace")
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src, dst = os.path.join(REPO, rel), os.path.join(repo, rel)
        if not os.path.exists(src):  # deleted in the work tree, not yet committed
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    for rel in subprocess.run(["git", "-C", REPO, "ls-files", "-o", "--exclude-standard", "-z"], capture_output=True,
                              check=True).stdout.decode().split("\0"):
        if rel and os.path.isfile(os.path.join(REPO, rel)):  # new files not yet committed
            os.makedirs(os.path.dirname(os.path.join(repo, rel)) or repo, exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(repo, rel))
    os.symlink(SHARED, os.path.join(root, "shared"))
    os.symlink(os.path.dirname(KVTRACE), os.path.join(repo, "build"))
    return repo


def run_readme(repo, readme):
    """Runs every command; returns the first failure as text, or None."""
    for info, commands in readme_blocks(readme):
        for command in commands:
            if "illustration" in info.split():
                if not PLACEHOLDER.search(command):
                    return f"an illustration without a placeholder (run it for real instead): {command}"
                continue
            if command.split()[0] == "scripts/test":
                continue
            t0 = time.monotonic()
            p = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=repo, capture_output=True,
                               timeout=COMMAND_LIMIT_S)
            print(f"{p.returncode}  {time.monotonic() - t0:6.1f} s  {command[:150]}", flush=True)
            if p.returncode != 0:
                return (f"README command failed ({p.returncode}): {command}\n"
                        f"{p.stderr.decode(errors='replace')[-2000:]}")
    return None


def commands():
    repo = scratch_copy()
    blocks = readme_blocks(os.path.join(repo, "README.md"))
    assert sum(len(c) for _, c in blocks) >= 10, "the README should show how to run kvtrace"
    failure = run_readme(repo, os.path.join(repo, "README.md"))
    assert failure is None, failure
    shutil.rmtree(os.path.dirname(repo))


def detects_breakage():
    """A README whose command is broken must fail: break its first runnable command."""
    repo = scratch_copy()
    readme = os.path.join(repo, "README.md")
    text = open(readme, encoding="utf-8").read()
    target = next((c for info, cmds in readme_blocks(readme) if "illustration" not in info.split() for c in cmds
                   if c.split()[0] != "scripts/test"), None)
    assert target, "no runnable command in the README"
    first_word = target.split()[0]
    at = text.index(first_word, text.index("```sh"))
    broken = text[:at] + first_word + " --no-such-option" + text[at + len(first_word):]
    open(readme, "w", encoding="utf-8").write(broken)
    failure = run_readme(repo, readme)
    assert failure is not None and "--no-such-option" in failure, failure
    print("broken README detected:", failure.splitlines()[0])
    shutil.rmtree(os.path.dirname(repo))


main({f.__name__: f for f in (commands, detects_breakage)})
