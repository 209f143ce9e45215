#!/usr/bin/env python3
"""Copies the CUDA sources into OUT with every kernel launch rewritten for the emulator:

    name<<<grid, block, shared, stream>>>(args);  ->  emu::launch(grid, block, COOP, [&] { name(args); });

COOP is true for kernels whose body synchronises threads (__syncthreads, warp shuffles), so
that only they pay for fibers. usage: translate.py OUT file.cu file.cuh ...
"""
import os
import re
import sys

SYNC = re.compile(r"__syncthreads|__shfl|warp_sum|warp_max")


def balanced(text, start, open_ch, close_ch):
    """Index just past the bracket that closes the one at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
    raise SystemExit(f"translate.py: unbalanced {open_ch}{close_ch}")


def split_args(text):
    """Splits on top-level commas only: ceil_div(n, 256), 256 -> two parts."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def cooperative_kernels(sources):
    names = set()
    for text in sources.values():
        for m in re.finditer(r"__global__\s+void\s+(\w+)\s*\(", text):
            body = text.index("{", m.end())
            if SYNC.search(text[body:balanced(text, body, "{", "}")]):
                names.add(m.group(1))
    return names


def rewrite(text, coop):
    out, pos = [], 0
    for m in re.finditer(r"(\w+)<<<", text):
        if m.start() < pos:
            continue
        config_end = text.index(">>>", m.end())
        config = split_args(text[m.end():config_end])
        args_start = text.index("(", config_end)
        args_end = balanced(text, args_start, "(", ")")
        name = m.group(1)
        out.append(text[pos:m.start()])
        flag = "true" if name in coop else "false"
        stream = config[3] if len(config) > 3 else "nullptr"
        call = f"{name}{text[args_start:args_end]}"
        out.append(f"emu::launch({config[0]}, {config[1]}, {flag}, [&] {{ {call}; }}, {stream})")
        pos = args_end
    out.append(text[pos:])
    return "".join(out)


def main():
    out_dir, files = sys.argv[1], sys.argv[2:]
    sources = {f: open(f).read() for f in files}
    coop = cooperative_kernels(sources)
    os.makedirs(out_dir, exist_ok=True)
    for f, text in sources.items():
        with open(os.path.join(out_dir, os.path.basename(f)), "w") as fh:
            fh.write(rewrite(text, coop))
    print("emulated launches; cooperative kernels:", " ".join(sorted(coop)))


main()
