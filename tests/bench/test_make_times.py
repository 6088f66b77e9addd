"""bench.make_times: the step parser on hand-made lines, a real `make` in a scratch folder, the
refusal to time a demo whose runs are already trained, and the README / docs tables it feeds."""
from __future__ import annotations

import json
import textwrap

import pytest

from bench import make_times, readme


def test_steps_from_echoed_commands_plan_and_epoch_lines():
    pairs = [(0.0, ".venv/bin/python -m data_prep.phantom --labels x --out y"),
             (0.5, "1200 images of 397 patients -> data/phantom"),
             (20.0, "for key in a b; do .venv/bin/python -m reproduce.train --data d --model ${key%_*} || exit 1; done"),
             (23.0, "plan: vgg16 + wce, preset demo, 48² images, …"),
             (53.0, "epoch 1/3: loss 19.0, val loss 18.7, val mean AUC 0.55 (30 s)"),
             (63.0, "epoch 2/3: loss 18.5, val loss 18.4, val mean AUC 0.51 (10 s)"),
             (75.0, "epoch 3/3: loss 18.4, val loss 18.7, val mean AUC 0.56 (12 s)"),
             (75.5, "results/demo/runs/vgg16_wce: 3 epochs, last val mean AUC 0.56, best 0.56"),
             (78.0, "plan: densenet121 + ewl, preset demo, …"),
             (90.0, "epoch 1/1: loss 0.05, val loss 0.16, val mean AUC 0.43 (12 s)"),
             (91.0, ".venv/bin/python -m reproduce.report all --runs a=b --out c --synthetic"),
             (95.0, "| run | …"),
             (96.5, None)]
    steps = make_times.steps_of(pairs)
    assert [s["step"] for s in steps] == ["data_prep.phantom", "reproduce.train vgg16 + wce",
                                          "reproduce.train densenet121 + ewl", "reproduce.report all"]
    assert [s["seconds"] for s in steps] == [20.0, 58.0, 13.0, 5.5]
    assert [s["start_s"] for s in steps] == [0.0, 20.0, 78.0, 91.0]
    assert make_times.steps_of([]) == []
    assert steps[1]["epoch_s"] == [30.0, 10.0, 12.0]
    assert steps[1]["first_epoch_extra_s"] == 19.0  # 30 − median(10, 12)
    assert steps[2]["epoch_s"] == [12.0] and "first_epoch_extra_s" not in steps[2]
    assert "epoch_s" not in steps[0] and "epoch_s" not in steps[3]


@pytest.mark.parametrize(("cpu", "isa", "cap", "kind"), [
    ("AMD EPYC", ["avx2", "fma", "avx512f"], None, "amd-epyc-avx512"),
    ("AMD EPYC", ["avx2", "fma", "avx512f"], "AVX2", "amd-epyc-avx512-capped-avx2"),
    ("Intel(R) Xeon(R) CPU @ 2.20GHz", ["avx2", "fma"], None, "intel-xeon-2-20ghz-avx2"),
])
def test_machine_kind_names_the_cpu_its_vector_width_and_a_cap(cpu, isa, cap, kind):
    facts = {"cpu": cpu, "instruction_sets": isa, **({"onednn_max_cpu_isa": cap} if cap else {})}
    assert make_times.machine_kind(facts) == kind


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """A folder with a Makefile shaped like ours: setup, a demo of a phantom step, a loop of two
    training runs and a report (modules that do not exist: each falls back to sleeping and
    printing what ours print), and a target that fails."""
    (tmp_path / "Makefile").write_text(textwrap.dedent("""\
        setup:
        \t@true
        demo:
        \tpython3 -m fake.phantom --out x 2>/dev/null || sleep 0.3
        \tfor k in a b; do python3 -m fake.train --key $$k 2>/dev/null || (echo "plan: m$$k + wce, preset demo"; sleep 0.2; echo "epoch 1/1: loss 1, val loss 1, val mean AUC 0.5 (0 s)"); done
        \tpython3 -m fake.report all --runs x=y 2>/dev/null || echo "| run |"
        broken:
        \tfalse
        """))
    monkeypatch.setattr(make_times, "ROOT", tmp_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    return tmp_path


def test_a_real_make_is_timed_step_by_step_and_rendered(scratch, capsys):
    out = scratch / "times.json"
    assert make_times.main(["demo", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["machine"]["onednn_max_cpu_isa"] == "AVX2" and record["provenance"]["code"]
    (demo,) = record["targets"]
    steps = demo["steps"]
    assert [s["step"] for s in steps] == ["fake.phantom", "fake.train ma + wce",
                                          "fake.train mb + wce", "fake.report all"]
    assert steps[0]["seconds"] >= 0.3 and steps[1]["seconds"] >= 0.2 and steps[2]["seconds"] >= 0.2
    assert demo["seconds"] >= sum(s["seconds"] for s in steps) - 0.5 and demo["last_line"] == "| run |"
    printed = capsys.readouterr().out
    assert "plan: ma + wce" in printed and f"make demo: {demo['seconds'] / 60:.1f} min; wrote" in printed

    results = {"times": [record]}
    label = make_times._cpu_label(record)
    assert label.endswith(f"oneDNN capped at AVX2, {record['machine']['cpu_count']} cores")
    table = make_times.times_section(results).splitlines()
    assert table[0] == "| CPU | `make demo` | `make rehearse` | `make test` | measured |"
    assert table[2].startswith(f"| {label} | {demo['seconds'] / 60:.1f} min | — | — | {record['date']}, code ")
    profile = make_times.demo_profile(results).splitlines()
    assert profile[2] == f"| `fake.phantom` | {steps[0]['seconds']:.0f} |"
    assert profile[6] == f"| **all of `make demo`** | **{demo['seconds']:.0f}** |"
    empty = {"times": []}
    assert "make bench-times" in make_times.times_section(empty) and "make bench-times" in make_times.demo_profile(empty)


def test_a_demo_with_trained_runs_is_refused_and_a_failed_target_is_one_line(scratch, capsys):
    (scratch / "results" / "demo" / "runs").mkdir(parents=True)
    assert make_times.main(["demo", "--out", str(scratch / "t.json")]) == 1
    assert capsys.readouterr().err == ("error: results/demo/runs exists: make demo would not train its "
                                       "finished runs again, so its time is not a new user's; move it "
                                       "away first\n")
    assert make_times.main(["broken", "--out", str(scratch / "t.json")]) == 1
    assert capsys.readouterr().err.startswith("error: make broken failed (exit 2) after ")
    assert not (scratch / "t.json").exists()


def test_the_readme_and_demo_doc_hold_the_generated_time_sections():
    assert readme.FILES["times"].as_posix() == "README.md"
    assert readme.FILES["demo-profile"].as_posix() == "docs/demo.md"
