"""Fuzz campaign: mutate the specs in specs/ and run `mmmic check` and `mmmic mi` on each.

Every outcome must be exit 0, or exit 1 with a `file:line:col` position and no
traceback; never an internal error (exit 3), a usage error (exit 2), a hang, or
NaN in the output. Failures are grouped by symptom and written to a JSON report.

    python benchmarks/fuzz_campaign.py --n 100000 --jobs 2 -o fuzz_report.json

The mutators are shared with tests/lang/test_fuzz.py (which drives them with hypothesis).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.mmi"))
COMMANDS = ("check", "mi")
FILE_NAME = "fuzz.mmi"

# ---------------------------------------------------------------- mutators

TOKEN = re.compile(rb"[A-Za-z_][A-Za-z_0-9]*|\d+(?:x\d+)+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?|\"[^\"\n]*\"|"
                   rb"\.\.|:=|[<>]=?|\s+|#[^\n]*|.", re.S)
NUMBER = re.compile(rb"^(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?$")

EXTREME_NUMBERS = [b"0", b"0.0", b"1e309", b"1e-400", b"1e300", b"1e-300", b"1e308", b"1e-320", b"1e999999",
                   b"10" + b"0" * 400, b"9" * 30, b"2147483648", b"9223372036854775808", b"1e18", b"1e9",
                   b"1000000", b"100000", b"-1", b"0.5", b"3x0x5", b"1x1", b"99999x99999", b"1e-12", b"1e15",
                   b"4294967296", b".0", b"00", b"1" + b"0" * 20]
RANDOM_BYTES = [b"\x00", b"\xff", b"\xfe", b"\xc3\x28", b"\xe2\x28\xa1", b"\xed\xa0\x80", b"\xef\xbb\xbf",
                b"\r", b"\r\n", b"\t", b"\x0b", b"\x0c", b"\\\n", b"\\", b"\xe2\x80\xa8", b"\xc3\xa9", b"\x7f",
                b"\"", b"#", b"(", b")", b"[", b"]", b"{", b"}", b"|", b";", b":", b",", b"..", b"@", b"^",
                b"'", b"\xf0\x9f\x98\x80", b"\xce\xb8", b"\x1b[31m", b"\n", b"   "]
KEYWORDS = [b"model", b"param", b"dim", b"proto", b"template", b"matrix", b"target", b"latent", b"flow",
            b"label", b"report", b"solve", b"sweep", b"for", b"in", b"such", b"that", b"bits", b"nats", b"I(",
            b"TC(", b"II(", b"sum(", b"dot(", b"concat(", b"ones(", b"scalar", b"vector", b"image", b"size(",
            b"identity(", b"1..N", b"n[1]", b"n[0]", b"n[1..0]", b"x[11]", b":=", b"u", b"d", b"N", b"theta"]
SNIPPETS = [b"\nfor i in 1..100000: proto q[i] : scalar\n", b"\ndim big = 1000000000\n",
            b"\nproto big : vector[1000000000]\n", b"\nmatrix Mbig = uniform(100000, 100000, seed = 1)\n",
            b"\nproto fam[1..1000000] : scalar\n", b"\nparam p = 1e-300\n", b"\nparam p = 1e300\n",
            b"\nreport I(u; u)\n", b"\nreport II(x1; x2; x1)\n", b"\nreport TC(x1)\n", b"\nlatent z1 = 0 * u\n",
            b"\nsweep rho in linspace(0, 1, 100000000): report I(x1; x2)\n", b"\nfor i in 1..3 { for j in 1..3 {\n",
            b"\nlabel y = theta > 1e300\n", b"\nsolve eta in (0, 1) such that I(theta; x1) = 1e300\n"]


def tokens(data: bytes) -> list[bytes]:
    return TOKEN.findall(data)


def _pick_index(rnd: random.Random, toks: list[bytes], want=None) -> int | None:
    idx = [i for i, t in enumerate(toks) if (want is None and not t.isspace()) or (want is not None and want(t))]
    return rnd.choice(idx) if idx else None


def deep_nesting(rnd: random.Random, toks: list[bytes]) -> list[bytes]:
    """Wrap a token in thousands of parentheses, unary minuses or a long chain."""
    i = _pick_index(rnd, toks, lambda t: t[:1].isalnum() or t[:1] == b".")
    if i is None:
        return toks
    t = toks[i]
    depth = rnd.choice([50, 300, 1000, 3000, 10000])
    style = rnd.randrange(7)
    if style == 0:
        new = b"(" * depth + t + b")" * depth
    elif style == 1:
        new = b"-" * depth + t
    elif style == 2:
        new = b"+".join([t] * depth)
    elif style == 3:
        new = b"^".join([t] * depth)
    elif style == 4:
        new = b"abs(" * depth + t + b")" * depth
    elif style == 5:
        new = b"*".join([t] * depth)
    else:
        new = b"-".join([t] * depth)
    return toks[:i] + [new] + toks[i + 1:]


def mutate_once(data: bytes, rnd: random.Random) -> bytes:
    """One random mutation of spec bytes."""
    toks = tokens(data)
    op = rnd.randrange(16)
    if op == 0 and toks:  # delete a token
        i = _pick_index(rnd, toks)
        if i is not None:
            del toks[i]
    elif op == 1 and toks:  # duplicate a token
        i = _pick_index(rnd, toks)
        if i is not None:
            toks.insert(i, toks[i])
    elif op == 2 and len(toks) > 1:  # swap two tokens
        i, j = _pick_index(rnd, toks), _pick_index(rnd, toks)
        if i is not None and j is not None:
            toks[i], toks[j] = toks[j], toks[i]
    elif op == 3 and toks:  # replace a token by another one of the spec
        i, j = _pick_index(rnd, toks), _pick_index(rnd, toks)
        if i is not None and j is not None:
            toks[i] = toks[j]
    elif op in (4, 5):  # an extreme number in place of a number
        i = _pick_index(rnd, toks, lambda t: bool(NUMBER.match(t)))
        if i is not None:
            toks[i] = rnd.choice(EXTREME_NUMBERS)
    elif op == 6:  # random bytes at a random place
        pos = rnd.randrange(len(data) + 1)
        blob = rnd.choice(RANDOM_BYTES) if rnd.random() < 0.7 else bytes(rnd.randrange(256)
                                                                         for _ in range(rnd.randrange(1, 8)))
        return data[:pos] + blob + data[pos:]
    elif op == 7 and data:  # flip a byte
        pos = rnd.randrange(len(data))
        return data[:pos] + bytes([rnd.randrange(256)]) + data[pos + 1:]
    elif op == 8:  # a keyword or reference inserted
        pos = rnd.randrange(len(toks) + 1)
        toks.insert(pos, rnd.choice(KEYWORDS) + (b" " if rnd.random() < 0.5 else b""))
    elif op == 9:  # line edits: delete, duplicate, swap
        lines = data.split(b"\n")
        i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
        kind = rnd.randrange(3)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[j])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    elif op == 10:
        toks = deep_nesting(rnd, toks)
    elif op == 11:  # truncate
        return data[:rnd.randrange(len(data) + 1)]
    elif op == 12:  # a statement that asks for too much, or an edge case
        pos = rnd.randrange(len(data) + 1)
        return data[:pos] + rnd.choice(SNIPPETS) + data[pos:]
    elif op == 13:  # whole-file edge cases
        return rnd.choice([b"", b"\n", b"# only a comment\n", b"#" * 100_000, b" " * 1000, b"\xef\xbb\xbf",
                           b"\x00" * 10, b"model m\n", b"x" * 100_000, b"\n" * 10_000, b"proto u : scalar",
                           data + b"\n" + b"#" + b"a" * 200_000, b"\\", b"(" * 100_000, data * 20])
    elif op == 14 and toks:  # a very long name
        i = _pick_index(rnd, toks, lambda t: t[:1].isalpha())
        if i is not None:
            toks[i] = toks[i] * rnd.choice([100, 10_000])
    elif op == 15:  # a name index made odd
        i = _pick_index(rnd, toks, lambda t: t == b"[")
        if i is not None:
            toks.insert(i + 1, rnd.choice([b"0", b"-1", b"1.5", b"1e300", b"N+1", b"i*i*i", b"1..2"]))
    return b"".join(toks)


def mutate(data: bytes, rnd: random.Random, max_ops: int = 4) -> bytes:
    """1 to ``max_ops`` random mutations."""
    for _ in range(rnd.randint(1, max_ops)):
        new = mutate_once(data, rnd)
        if len(new) <= MAX_INPUT:
            data = new
    return data


#: Largest fuzzed input (bytes): repeated blow-ups (a 100,000-character line, then that name x 10,000)
#: would otherwise reach gigabytes.
MAX_INPUT = 1_000_000


# ---------------------------------------------------------------- running one case

POSITION = re.compile(r"--> .*:\d+:\d+")


class Hang(BaseException):
    """Raised by the alarm: the command ran past its time limit."""


def _on_alarm(signum, frame):
    raise Hang()


def workdir() -> Path:
    """A temp folder with the specs' data (templates/) beside the fuzzed spec."""
    d = Path(tempfile.mkdtemp(prefix="mmmic-fuzz-"))
    shutil.copytree(ROOT / "specs" / "templates", d / "templates")  # a copy: links out of the folder are refused
    return d


def run_case(data: bytes, command: str, where: Path, timeout: float = 20.0) -> dict:
    """Run `mmmic COMMAND` in-process on spec bytes; classify the outcome.

    Returns a dict with ``status``: ``ok``, ``error`` (exit 1 with a position) or a
    failure kind (``internal``, ``exception``, ``no-position``, ``traceback``,
    ``usage``, ``hang``, ``nan``), plus ``rc``, ``seconds`` and ``stderr`` (tail).
    """
    from mmmi_dsl.cli import main
    path = where / FILE_NAME
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    rc = None
    status = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([command, str(path)])
    except Hang:
        status = "hang"
    except SystemExit as exc:  # argparse
        rc = exc.code
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is a finding
        status = "exception"
        err.write(f"{type(exc).__name__}: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t0
    stderr, stdout = err.getvalue(), out.getvalue()
    if status is None:
        if "Traceback" in stderr:
            status = "traceback"
        elif rc == 0:
            status = "nan" if re.search(r"\bnan\b", stdout, re.I) else "ok"
        elif rc == 1:
            status = "error" if POSITION.search(stderr) else "no-position"
        elif rc == 2:
            status = "usage"
        else:
            status = "internal"
    return {"status": status, "rc": rc, "seconds": round(seconds, 3), "stderr": stderr[-4000:],
            "stdout": stdout[-300:] if status == "nan" else ""}


FAILURES = {"internal", "exception", "no-position", "traceback", "usage", "hang", "nan"}


def signature(result: dict) -> str:
    """A short key grouping failures by symptom (first line of the message, numbers masked)."""
    lines = [ln for ln in result["stderr"].splitlines() if ln.strip()]
    head = next((ln for ln in lines if ln.startswith(("internal error", "error"))), lines[0] if lines else "")
    head = re.sub(r"`[^`]*`", "`_`", head)
    head = re.sub(r"\d[\d,.e+-]*", "#", head)
    return f"{result['status']}: {head[:160]}"


# ---------------------------------------------------------------- the campaign

_WORK: Path | None = None
_SOURCES: list[bytes] = []


def _init(limit_gib: float) -> None:
    global _WORK, _SOURCES
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if limit_gib > 0:
        import resource
        limit = int(limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _WORK = workdir()
    _SOURCES = [p.read_bytes() for p in SPECS]
    import mmmi_dsl.mi.analysis  # noqa: F401
    from mmmi_dsl.cli import main  # noqa: F401 - import once per worker


def case_input(seed: int) -> tuple[bytes, str, str]:
    """The deterministic input of case ``seed``: (bytes, command, source spec name)."""
    rnd = random.Random(seed)
    k = rnd.randrange(len(SPECS))
    data = mutate(SPECS[k].read_bytes() if not _SOURCES else _SOURCES[k], rnd)
    return data, COMMANDS[seed % len(COMMANDS)], SPECS[k].name


def _one(args: tuple[int, float]) -> tuple[int, dict]:
    seed, timeout = args
    data, command, source = case_input(seed)
    result = run_case(data, command, _WORK, timeout)
    result.update(seed=seed, command=command, source=source, size=len(data))
    return seed, result


def campaign(n: int, jobs: int, start: int, timeout: float, limit_gib: float, report: Path | None) -> dict:
    t0 = time.time()
    counts: dict[str, int] = {}
    groups: dict[str, dict] = {}
    slow: list[tuple[float, int]] = []
    with multiprocessing.get_context("fork").Pool(jobs, initializer=_init, initargs=(limit_gib,),
                                                  maxtasksperchild=2000) as pool:
        for i, (seed, res) in enumerate(pool.imap_unordered(_one, [(s, timeout) for s in range(start, start + n)],
                                                            chunksize=16), 1):
            counts[res["status"]] = counts.get(res["status"], 0) + 1
            slow.append((res["seconds"], seed))
            if res["status"] in FAILURES:
                key = signature(res)
                g = groups.setdefault(key, {"count": 0, "seeds": [], "example": res})
                g["count"] += 1
                if len(g["seeds"]) < 10:
                    g["seeds"].append(seed)
            if i % 1000 == 0 or i == n:
                rate = i / (time.time() - t0)
                print(f"{i:,}/{n:,} cases, {rate:.0f}/s, {counts}", flush=True)
            if report and (i % 5000 == 0 or i == n):  # a partial report survives a killed run
                slow.sort(reverse=True)
                del slow[10:]
                summary = {"n": i, "start": start, "jobs": jobs, "seconds": round(time.time() - t0, 1),
                           "counts": counts, "failures": groups, "slowest": slow}
                report.write_text(json.dumps(summary, indent=1))
    slow.sort(reverse=True)
    summary = {"n": n, "start": start, "jobs": jobs, "seconds": round(time.time() - t0, 1), "counts": counts,
               "failures": groups, "slowest": slow[:10]}
    return summary


def main(argv: list[str] | None = None) -> int:
    from mmmi_dsl.cli.args import integer, positive

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=integer(1), default=10_000, help="number of inputs (default 10,000)")
    p.add_argument("--jobs", type=integer(1), default=max(1, (os.cpu_count() or 2)), help="worker processes")
    p.add_argument("--start", type=integer(0), default=0, help="first seed")
    p.add_argument("--timeout", type=positive, default=20.0, help="seconds per input before it counts as a hang")
    p.add_argument("--mem-gib", type=float, default=6.0, help="address-space limit per worker (0: none)")
    p.add_argument("--replay", type=integer(0), metavar="SEED", help="run one case and print its input and outcome")
    p.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    args = p.parse_args(argv)
    if not 0 <= args.mem_gib < float("inf"):
        p.error(f"--mem-gib {args.mem_gib}: must be 0 (no limit) or a finite positive number")
    if args.replay is not None:
        _init(0)
        data, command, source = case_input(args.replay)
        sys.stdout.write(f"# from {source}, `mmmic {command}`, {len(data)} bytes\n{data[:3000]!r}\n")
        print(json.dumps(run_case(data, command, _WORK, args.timeout), indent=1))
        return 0
    s = campaign(args.n, args.jobs, args.start, args.timeout, args.mem_gib, args.output)
    print(f"{s['n']:,} inputs in {s['seconds']:.0f} s: {s['counts']}")
    for key, g in sorted(s["failures"].items(), key=lambda kv: -kv[1]["count"]):
        print(f"  {g['count']:6d}  {key}   seeds {g['seeds'][:5]}")
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
