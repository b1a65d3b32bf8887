"""The Raspberry Pi AI Camera (Sony IMX500) as an export target: ``export.target: imx500``.

``env``: the pinned venv Sony's toolchain runs in; ``export``: the finetune step (main
environment); ``child``: the half that runs in that venv. ``report_lines`` is the report's section.
Importing this package imports nothing heavy.
"""

from __future__ import annotations


def _pct(x: float) -> str:
    return f"{x:.1%}"


def summary_line(section: dict) -> str:
    """What `edgecam finetune` prints about the IMX500 export."""
    split = "test" if "test" in section["splits"] else "val"
    m = section["splits"][split]
    return (f"imx500: {section['packer']} {'fits' if section['fits'] else 'does not fit'} "
            f"({section['memory']['memory_usage']} of {section['memory']['memory_available']}); {split} accuracy "
            f"{m['quantised_accuracy']:.4f} quantised, {m['float_accuracy']:.4f} float, "
            f"{m['agreement']:.1%} the same answer")


def report_lines(section: dict | None) -> list[str]:
    """The report.md section "Raspberry Pi AI Camera (IMX500)" (nothing without the section)."""
    if not section:
        return []
    lines = ["## Raspberry Pi AI Camera (IMX500)", ""]
    if "error" in section:
        return lines + [f"**Not exported:** {section['error']}", ""]
    if "rejected" in section:
        lines += [f"**Rejected:** {section['rejected']}; kept as `{section['packer']}`.", ""]
    lines += ["| split | images | float | quantised (MCT) | same answer |", "|---|---|---|---|---|"]
    for split, m in section["splits"].items():
        lines.append(f"| {split} | {m['images']} | {_pct(m['float_accuracy'])} | {_pct(m['quantised_accuracy'])} | "
                     f"{_pct(m['agreement'])} |")
    memory, inp = section["memory"], section["input"]
    shown_input = (f"{inp['bits']}-bit {inp['format']}, scale {inp['scale']:g}, {'x'.join(map(str, inp['shape']))}"
                   if isinstance(inp, dict) else str(inp))
    lines += ["", f"`{section['packer']}`: {'fits in the chip' if section['fits'] else '**does not fit**'} "
              f"({memory['memory_usage']} of {memory['memory_available']}, {memory['memory_utilisation']}); "
              f"input {shown_input}"
              + ("" if section["uint8_pixels"] else " (**not raw 8-bit pixels**)") + ". "
              f"Quantised with MCT for `{section['target_platform']}` on {section['calibration_images']} training "
              f"images; the rebuilt float network matched the trained one within {section['float_check']:.1g}.",
              "", "No unknown score on the camera in this version: `edgecam run network.rpk` decides by the "
              "top score (`--threshold`).", "",
              "On the Pi: `imx500-package -i packerOut.zip -o out/`, then "
              "`edgecam run out/network.rpk` with `imx500.json` (or `labels.txt`) beside it.", ""]
    return lines
