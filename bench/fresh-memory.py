#!/usr/bin/env python3
"""What memory touched for the first time costs on this machine, per GiB: the price tail sampling pays for
every byte it holds while its store fills (bench/run's `fresh memory (kernel page faults)` part).

Maps anonymous memory and writes one byte into each 4 KiB page, timing the first pass (every write a page
fault: the kernel finds and zeroes a page, and under a hypervisor the host may back it first) and a second
pass over the same pages (no faults: the loop's own cost, subtracted). Repeats in fresh mappings.
    python3 bench/fresh-memory.py [--gib 3] [--rounds 3]
"""
import argparse
import mmap
import time

PAGE = 4096


def touch(memory, size):
    started = time.perf_counter()
    for offset in range(0, size, PAGE):
        memory[offset] = 1
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = int(args.gib * (1 << 30)) // PAGE * PAGE
    for round_number in range(1, args.rounds + 1):
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        first = touch(memory, size)
        again = touch(memory, size)
        memory.close()
        per_gib = (first - again) / (size / (1 << 30))
        print(f"round {round_number}: {per_gib:.2f} s per GiB touched for the first time "
              f"({first:.2f} s first pass, {again:.2f} s again, {size >> 20} MiB)")


if __name__ == "__main__":
    main()
