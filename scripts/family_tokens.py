#!/usr/bin/env python3
"""Image tokens each vision family's own tiling rule and relaxed tiling give on spec section 2's
24 image sizes, at the family's tile size (docs/models.md). Standard library only; runs the
`edgevl` binary given as the first argument (default target/release/edgevl):

    python3 scripts/family_tokens.py [path/to/edgevl]

Prints a markdown table per family: the family's rule at its own default budget, relaxed at the
same budget (`--max-tiles`), and the mean of each.
"""
import json
import subprocess
import sys

SIZES = ["640x480", "480x640", "640x427", "500x375", "1024x768", "1920x1080", "1080x1920",
         "4032x3024", "3024x4032", "800x600", "1280x720", "720x1280", "2480x3508", "1654x2339",
         "300x300", "224x224", "1200x630", "1000x200", "200x1000", "3000x1000", "394x390",
         "380x76", "380x393", "500x102"]
# (family, its own rule, the budget both rules get: the family rule's own default)
FAMILIES = [("edgevl", "relaxed", 16), ("internvl", "internvl", 12), ("idefics3", "idefics3", 16)]


def plan(edgevl, family, strategy, size, max_tiles):
    out = subprocess.run([edgevl, "tiles", "--json", "--family", family, "--strategy", strategy,
                          "--size", size, "--max-tiles", str(max_tiles)],
                         check=True, capture_output=True, text=True).stdout
    p = json.loads(out)[0]
    return "x".join(map(str, p["grid"])), p["tokens"]


def main():
    edgevl = sys.argv[1] if len(sys.argv) > 1 else "target/release/edgevl"
    for family, own, budget in FAMILIES:
        rules = [own] if own == "relaxed" else [own, "relaxed"]
        print(f"\n{family} (budget {budget} tiles)\n")
        print("| size | " + " | ".join(rules) + " |")
        print("|---|" + "---:|" * len(rules))
        totals = [0] * len(rules)
        for size in SIZES:
            cells = []
            for i, rule in enumerate(rules):
                grid, tokens = plan(edgevl, family, rule, size, budget)
                totals[i] += tokens
                cells.append(f"{grid} {tokens}")
            print(f"| {size} | " + " | ".join(cells) + " |")
        means = [t / len(SIZES) for t in totals]
        print("| **mean** | " + " | ".join(f"**{m:.0f}**" for m in means) + " |")
        if len(means) == 2:
            print(f"\nrelaxed: {100 * (1 - means[1] / means[0]):.1f}% fewer image tokens than {own}")


if __name__ == "__main__":
    main()
