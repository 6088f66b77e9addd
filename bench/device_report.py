"""What bench/device.py measured, in words: the progress line after each task, the table printed at
the end, and the generated `gpu-jax` section of docs/gpus.md (python -m bench.readme)."""
from __future__ import annotations

JAX_NOT_RUN = ("Not yet run on a GPU: `bash bench/device.sh` there (the command: "
               "[bench/README.md](../bench/README.md)) puts the first table here.")


def rate(value: float) -> str:
    return f"{value:,.1f} img/s" if value < 1000 else f"{value:,.0f} img/s"


def brief(e: dict) -> str:
    """A task's entry in a few words (the progress line after it)."""
    if "img_s" in e:
        text = f"train {e['img_s']:,.0f} img/s, first step {e['first_step_s']:.1f} s"
        v = e.get("validation", {})
        if "img_s" in v:
            text += f"; validation {v['img_s']:,.0f} img/s, first pass {v['first_pass_s']:.1f} s"
        return text + "".join(f"; validation {k}: {v[k]}" for k in ("skipped", "error") if k in v)
    for key in ("error", "skipped", "task_error"):
        if key in e:
            return f"{key}: {e[key]}" + (" (out of memory)" if e.get("out_of_memory") else "")
    return "no result"


def _cell(e: dict) -> str:
    if "img_s" in e:
        return f"{e['img_s']:,.0f}"
    if "skipped" in e:
        return "skipped"
    return "out of memory" if e.get("out_of_memory") else "failed" if e else "-"


def report(result: dict) -> list[str]:
    """The table printed at the end (every skip and failure is named in the JSON)."""
    lines = ["dry check (--tiny): the tiny CNN on a CPU; these numbers say nothing about a GPU"] \
        if result["dry_check"] else []
    lines.append(f"{result['device']} (JAX {result['machine'].get('jax')}, Keras {result['machine'].get('keras')}), "
                 f"{result['settings']['image_size']}², training batch {result['settings']['batch_size']}, "
                 f"validation batch {result['settings']['val_batch_size']}; img/s:")
    lines.append(f"{'backbone':<12} {'precision':<9} {'train':>9} {'first step s':>12} {'validation':>10} "
                 f"{'first pass s':>12}")
    for b, entries in result["backbones"].items():
        for p, e in entries.items():
            v = e.get("validation", {})
            first = f"{e['first_step_s']:.1f}" if "first_step_s" in e else ""
            vfirst = f"{v['first_pass_s']:.1f}" if "first_pass_s" in v else ""
            lines.append(f"{b:<12} {p:<9} {_cell(e):>9} {first:>12} {_cell(v):>10} {vfirst:>12}")
    mb = result["max_batch"]
    tried = ", ".join(f"{t['batch_size']}: {_cell(t)}" for t in mb["tries"])
    lines.append(f"largest training batch, {mb['backbone']} {mb.get('precision')}: {mb.get('largest_fitting')}"
                 f"{' (the cap)' if mb.get('at_cap') else ''}" + (f" (tried {tried})" if tried else "")
                 + (f" ({mb['skipped']})" if "skipped" in mb else ""))
    ewl = result["ewl"]
    lines.append(f"Eq. (2) {ewl.get('backbone', '')} {ewl.get('precision', '')}: {_cell(ewl)} img/s training")
    p = result["table1_projection"]
    if p["sequential_hours"] is None:
        lines.append(f"Table I projection: incomplete (not measured: {', '.join(p['missing'])})")
    else:
        lines.append(f"Table I (4 runs x {p['epochs']} epochs x ({p['train_images']:,} train + {p['val_images']:,} "
                     f"val images)), each backbone in its fastest precision: sequential {p['sequential_hours']:.2f} h, "
                     f"one run per GPU ({p['gpus_for_one_per_gpu']} GPUs) {p['one_per_gpu_hours']:.2f} h")
    return lines


def _jax_cell(e: dict, first: str) -> tuple[str, str]:
    """(img/s, first step or pass seconds) of one measurement, or why there is none."""
    if "img_s" in e:
        return rate(e["img_s"]), f"{e[first]:.1f} s"
    if "skipped" in e:
        return f"skipped ({e['skipped']})", ""
    if e.get("out_of_memory"):
        return "out of memory", ""
    return ("failed" if e.get("error") or e.get("task_error") else "not measured"), ""


def _jax_lines(g: dict) -> list[str]:
    """A device's max batch, Eq. (2) and Table I hours, under its table."""
    mb, ewl, p = g["max_batch"], g["ewl"], g["table1_projection"]
    tried = ", ".join(f"{t['batch_size']} {_jax_cell(t, 'first_step_s')[0]}" for t in mb["tries"])
    lines = [f"- largest training batch, {mb['backbone']} {mb.get('precision') or ''}: "
             f"{mb.get('largest_fitting') or 'not found'}{' (the cap tried)' if mb.get('at_cap') else ''}"
             + (f" (tried: {tried})" if tried else "") + (f" ({mb['skipped']})" if "skipped" in mb else ""),
             f"- Eq. (2), {ewl.get('backbone', 'densenet121')} {ewl.get('precision', '')}: training "
             f"{_jax_cell(ewl, 'first_step_s')[0]} (Table I prices it at Eq. (1)'s speed)"]
    if p.get("sequential_hours") is None:
        lines.append(f"- whole Table I: incomplete (not measured: {', '.join(p['missing'])})")
    else:
        used = ", ".join(f"{b} {q}" for b, q in p["precision_per_backbone"].items())
        lines.append(f"- whole Table I (4 runs × {p['epochs']} epochs × ({p['train_images']:,} + {p['val_images']:,} "
                     f"images)), each backbone in its fastest precision ({used}): **{p['sequential_hours']:.1f} h** "
                     f"one after another, **{p['one_per_gpu_hours']:.1f} h** with one run per GPU "
                     f"({p['gpus_for_one_per_gpu']} GPUs)")
    return lines


def gpu_jax(r: dict) -> str:
    """One table per device benchmarked by bench/device.py: per backbone and precision."""
    header = ["| device | backbone | precision | training | first step | validation | first pass |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    if not r.get("gpu_jax"):
        return JAX_NOT_RUN
    out = []
    for g in r["gpu_jax"]:
        s, m = g["settings"], g["machine"]
        out += [f"{g['device']}, JAX {m['jax']}, Keras {m['keras']}, {g['started_utc'][:10]}: "
                f"{s['image_size']}², training batch {s['batch_size']}, validation batch {s['val_batch_size']}, "
                "synthetic uint8 images in memory", "", *header]
        for b, entries in g["backbones"].items():
            for precision, e in entries.items():
                train, first = _jax_cell(e, "first_step_s")
                val, vfirst = _jax_cell(e.get("validation", {}), "first_pass_s") if "img_s" in e else ("", "")
                out.append(f"| {g['device']} | {b} | {precision} | {train} | {first} | {val} | {vfirst} |")
        out += ["", *_jax_lines(g), ""]
    return "\n".join(out).rstrip("\n")
