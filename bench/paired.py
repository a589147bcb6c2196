#!/usr/bin/env python3
"""Paired comparison of two targets of one bench/compare.sh run, round by round.

    bench/paired.py OUT/rounds.tsv nginx pgo [nginx pgo-hmac cs pgo ...]

For each pair A B: A's CPU time per request divided by B's in every round both ran (the figure
"A ÷ B", so above 1 means B is cheaper), then the median of those ratios, for all CPU time and for
user space alone. Within a round the targets run one after another, so a drift of the machine
between rounds cancels out of each ratio; the median of the ratios is steadier than the ratio of
the medians on a noisy VM.
"""

import statistics
import sys
from collections import defaultdict

USAGE = "usage: bench/paired.py OUT/rounds.tsv A B [A B ...]"


def main(argv):
    if len(argv) < 4 or len(argv) % 2 != 0:
        print(USAGE, file=sys.stderr)
        return 2
    rounds = defaultdict(dict)
    with open(argv[1], encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4:
                print(f"{argv[1]}:{n}: want round, target, cpu, user", file=sys.stderr)
                return 2
            rnd, target, cpu, user = fields
            rounds[int(rnd)][target] = (float(cpu), float(user))
    pairs = list(zip(argv[2::2], argv[3::2]))
    for a, b in pairs:
        both = [r for r in sorted(rounds) if a in rounds[r] and b in rounds[r]]
        if not both:
            print(f"{a} ÷ {b}: no round has both", file=sys.stderr)
            return 1
        cpu = [rounds[r][a][0] / rounds[r][b][0] for r in both if rounds[r][b][0] > 0]
        user = [rounds[r][a][1] / rounds[r][b][1] for r in both if rounds[r][b][1] > 0]
        if not cpu or not user:
            print(f"{a} ÷ {b}: {b} took no measurable CPU time in any round", file=sys.stderr)
            return 1
        print(
            f"{a} ÷ {b}: {len(both)} rounds; CPU median {statistics.median(cpu):.2f} "
            f"(rounds {min(cpu):.2f}–{max(cpu):.2f}: {' '.join(f'{x:.2f}' for x in cpu)}); "
            f"user space median {statistics.median(user):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
